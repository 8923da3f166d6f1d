"""Driver name and ``storage:`` config block → a :class:`~drivers.base.StorageDriver`.

Backends are imported lazily, so a registry on local disk never imports a cloud SDK. To add
a backend, add its ``"name": "module:Class"`` line to :data:`DRIVERS`; the class declares
``from_params``, reading its keys through ``cls.params(raw)`` (:class:`drivers.params.Params`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

from .base import DriverConfigError, StorageDriver

__all__ = ["DRIVERS", "DriverConfigError", "create_driver", "driver_class"]

log = logging.getLogger(__name__)

DRIVERS: dict[str, str] = {
    "filesystem": "drivers.filesystem:FilesystemDriver",
    "inmemory": "drivers.inmemory:InMemoryDriver",
    "s3": "drivers.s3:S3Driver",
    "gcs": "drivers.gcs:GCSDriver",
    "azure": "drivers.azure:AzureDriver",
    "oss": "drivers.oss:OSSDriver",
    "swift": "drivers.swift:SwiftDriver",
}


def driver_class(name: str) -> type[StorageDriver]:
    """The driver class registered as ``name``; DriverConfigError if there is none."""
    target = DRIVERS.get(name)
    if target is None:
        known = ", ".join(sorted(DRIVERS))
        raise DriverConfigError(f"unknown storage driver {name!r} (known: {known})")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverConfigError(
            f"storage driver {name!r} needs a package that is not installed: {exc.name or exc}"
        ) from exc
    return getattr(module, class_name)


def create_driver(name: str, params: Mapping[str, Any] | None = None, *, check_keys: bool = True) -> StorageDriver:
    """Build the driver ``name`` from its config block. Keys no driver read are warned about
    (with a "did you mean"), not fatal; ``check_keys=False`` skips that (already done once)."""
    cls = driver_class(name)
    if params is not None and not isinstance(params, Mapping):
        raise DriverConfigError(f"storage.{name}: expected a mapping of parameters, got {params!r}")
    p = cls.params(params)
    try:
        driver = cls.from_params(p)
        if check_keys:
            p.finish()
        return driver
    except DriverConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise DriverConfigError(f"storage.{name}: {exc}") from exc
