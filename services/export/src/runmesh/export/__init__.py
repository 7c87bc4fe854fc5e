"""runmesh.export service."""
