"""The storage driver a configuration names (kept apart from the app factory, so the operator
commands open their storage without importing the web application)."""

from __future__ import annotations

from drivers.base import StorageDriver

from .config import Config


def open_driver(config: Config) -> StorageDriver:
    """The storage driver named by the config's ``storage:`` block."""
    from drivers.factory import create_driver

    driver = create_driver(config.storage.driver, config.storage.params,
                           check_keys=not config.storage.params_checked)
    config.storage.params_checked = True  # warn about its keys once per process
    return driver
