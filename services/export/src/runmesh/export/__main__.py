"""`python -m runmesh.export`: the export service (its category: its built-in plugin's)."""

from runmesh.export import service

if __name__ == "__main__":
    service.main()
