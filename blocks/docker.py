"""Docker host and registry credentials blocks."""
