"""The export pipeline's steps, in the order the orchestrator runs them."""
