"""ansflow.devcluster."""
