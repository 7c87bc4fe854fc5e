"""`python -m runmesh.upload`: the upload service (its category: its built-in plugin's)."""

from runmesh.upload import service

if __name__ == "__main__":
    service.main()
