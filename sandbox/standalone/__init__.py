"""Clients for code outside services: scripts, notebook cells, tests, other threads."""
