"""runmesh command line."""
