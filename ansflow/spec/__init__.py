"""ansflow.spec."""
