"""runmesh.gateway service."""
