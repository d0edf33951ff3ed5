"""ansflow.engines."""
