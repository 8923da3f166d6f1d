"""Observability: what the registry tells operators (logs and their redaction, metrics, health, traces)."""
