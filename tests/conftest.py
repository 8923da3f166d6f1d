"""Shared pytest set-up. Fixture modules that start real processes are plugins listed here."""

import os

import pytest

from helpers import require_tool

# Keep every cloud client away from metadata endpoints, whatever the test.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "True")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

pytest_plugins: list[str] = ["fixtures_registry", "emulators", "ui_support", "scale_support"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_tool(*tools, hint=...): tools (names on PATH or absolute paths) the test runs; "
        "missing: a skip here, a failure under CI (helpers.require_tool)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires_tool"):
        require_tool(*mark.args, **mark.kwargs)
