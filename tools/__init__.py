"""Developer tools of the runmesh workspace, run from the repository root; no runtime
distribution contains them."""
