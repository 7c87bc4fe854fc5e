"""The upload pipeline's steps, in the order the orchestrator runs them."""
