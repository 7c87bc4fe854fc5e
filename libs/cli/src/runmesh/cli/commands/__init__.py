"""The `runmesh` subcommands, one module per group."""
