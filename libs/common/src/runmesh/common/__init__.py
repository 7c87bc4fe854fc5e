"""runmesh.common: the library every runmesh process shares."""
