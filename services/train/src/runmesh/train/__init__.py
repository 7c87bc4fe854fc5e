"""runmesh.train service."""
