"""Shared pytest set-up. Fixture modules that start real processes are plugins listed here."""

import os

# Keep every cloud client away from metadata endpoints, whatever the test.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "True")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

pytest_plugins: list[str] = ["fixtures_registry", "emulators", "ui_support", "scale_support"]
