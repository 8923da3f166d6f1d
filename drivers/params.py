"""Typed reads of one driver's ``storage: <name>:`` config block.

Values may come from YAML (typed) or from ``REGISTRY_STORAGE_<NAME>_<KEY>`` environment
overrides (always strings), so each reader accepts both and raises
:class:`DriverConfigError` with a one-line message naming the driver and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import DriverConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def get_str(driver: str, params: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise DriverConfigError(f"storage.{driver}.{key}: expected a string, got {value!r}")
    return value


def get_int(
    driver: str, params: Mapping[str, Any], key: str, default: int, minimum: int | None = None
) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise DriverConfigError(f"storage.{driver}.{key}: expected an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DriverConfigError(f"storage.{driver}.{key}: expected an integer, got {value!r}") from None
    if isinstance(value, float) and value != number:
        raise DriverConfigError(f"storage.{driver}.{key}: expected an integer, got {value!r}")
    if minimum is not None and number < minimum:
        raise DriverConfigError(f"storage.{driver}.{key}: must be at least {minimum}, got {number}")
    return number


def get_bool(driver: str, params: Mapping[str, Any], key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise DriverConfigError(f"storage.{driver}.{key}: expected true or false, got {value!r}")
