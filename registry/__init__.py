"""An OCI distribution registry (spec v1.1) with Docker compatibility."""

__version__ = "0.1.0"
