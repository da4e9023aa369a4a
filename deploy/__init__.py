"""Deployment tooling: start and stop a TLS SuperLink and per-hospital SuperNodes."""
