"""runmesh.to_task service."""
