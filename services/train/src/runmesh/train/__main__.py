"""`python -m runmesh.train`: the train service (its category: its built-in plugin's)."""

from runmesh.train import service

if __name__ == "__main__":
    service.main()
