"""The steps of the to_task pipeline, one module each."""
