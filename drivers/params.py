"""Typed reads of one driver's ``storage: <name>:`` config block.

Values may come from YAML (typed) or from ``REGISTRY_STORAGE_<NAME>_<KEY>`` environment
overrides (always strings), so each reader accepts both and raises
:class:`DriverConfigError` with a one-line message naming the driver and key, never echoing the
value of a secret key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import DriverConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class Params:
    """Typed access to one driver's config block; errors say ``storage.<driver>.<key>``."""

    def __init__(self, driver: str, raw: Mapping[str, Any] | None, secrets: frozenset[str] = frozenset()) -> None:
        if raw is not None and not isinstance(raw, Mapping):
            raise DriverConfigError(f"storage.{driver}: expected a mapping of parameters")
        # distribution's keys are case-insensitive (env overrides arrive lower-cased)
        self._raw = {str(k).lower(): v for k, v in (raw or {}).items()}
        self._driver = driver
        self._secrets = secrets

    def _where(self, key: str) -> str:
        return f"storage.{self._driver}.{key}"

    def _bad(self, key: str, expected: str, value: Any) -> DriverConfigError:
        shown = "<hidden>" if key in self._secrets else repr(value)
        return DriverConfigError(f"{self._where(key)}: expected {expected}, got {shown}")

    def has(self, key: str) -> bool:
        return self._raw.get(key) not in (None, "")

    def raw(self, key: str) -> Any:
        return self._raw.get(key)

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._raw.get(key)
        if value is None or value == "":
            if required:
                raise DriverConfigError(f"{self._where(key)} is required")
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self._bad(key, "a string", value)
        return str(value)

    def path(self, key: str, default: str | None = None) -> str | None:
        """A local or store path: only a YAML string (a number is a typo, not a directory)."""
        value = self._raw.get(key)
        if value is not None and value != "" and not isinstance(value, str):
            raise self._bad(key, "a string", value)
        return self.str(key, default)

    def bool(self, key: str, default: bool) -> bool:
        value = self._raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self._bad(key, "true or false", value)

    def int(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer; strings may carry a unit (``10MiB``, ``5m``) as sizes often do."""
        value = self._raw.get(key)
        if value is None or value == "":
            return default
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            m = _SIZE_RE.match(value)
            if m:
                number = int(m.group(1)) * _UNITS[(m.group(2) or "")[:1].lower()]
        if number is None:
            raise self._bad(key, "an integer", value)
        if minimum is not None and number < minimum:
            raise DriverConfigError(f"{self._where(key)}: must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise DriverConfigError(f"{self._where(key)}: must be at most {maximum}, got {number}")
        return number

    def choice(self, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = self.str(key, default)
        if value is not None and value not in choices:
            raise DriverConfigError(f"{self._where(key)}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def root(self, key: str = "rootdirectory") -> str:
        """The key prefix inside the bucket: no leading or trailing slash, valid components."""
        value = (self.str(key, "") or "").strip("/")
        if value and any(part in ("", ".", "..") for part in value.split("/")):
            raise DriverConfigError(f"{self._where(key)}: not a clean path: {value!r}")
        return value
