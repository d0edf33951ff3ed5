"""Kubernetes cluster credentials block."""
