"""Observability: what the registry tells operators (logs first; metrics and health join later)."""
