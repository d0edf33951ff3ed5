"""Dev-cluster fixtures (see issue: dev cluster)."""
