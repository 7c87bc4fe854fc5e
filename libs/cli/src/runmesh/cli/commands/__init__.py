"""The `runmesh` subcommands: each module holds its commands in its own `typer.Typer` named
`app`, which the root (`runmesh.cli.__main__`) or its group (`plugin`) adds; none imports the
root."""
