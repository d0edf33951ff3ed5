"""Docker engine and registry fixtures (see issue: Docker)."""
