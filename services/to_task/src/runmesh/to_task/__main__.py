"""`python -m runmesh.to_task`: the to_task service (its category: its built-in plugin's)."""

from runmesh.to_task import service

if __name__ == "__main__":
    service.main()
