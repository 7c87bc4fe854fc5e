"""runmesh.upload service."""
