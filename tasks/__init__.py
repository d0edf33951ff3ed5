"""Step types: one module per step type (or small family), each a Prefect task."""
