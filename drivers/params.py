"""Typed reads of one driver's ``storage: <name>:`` config block.

:class:`Params` is the configuration's one key reader (:class:`registry.config.Section`) for a
driver block: every key a driver reads is declared, so a key no driver reads is warned about with
a "did you mean"; values may come from YAML (typed) or from ``REGISTRY_STORAGE_<NAME>_<KEY>``
environment overrides (strings), and errors are :class:`DriverConfigError` with one line naming
``storage.<driver>.<key>``, never echoing the value of a secret key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.config import Section

from .base import DriverConfigError


class Params(Section):
    """One driver's parameters; keys are case-insensitive (environment overrides arrive lower-cased)."""

    def __init__(self, driver: str, raw: Mapping[str, Any] | None, secrets: frozenset[str] = frozenset()) -> None:
        if raw is not None and not isinstance(raw, Mapping):
            raise DriverConfigError(f"storage.{driver}: expected a mapping of parameters")
        super().__init__({str(k).lower(): v for k, v in (raw or {}).items()}, f"storage.{driver}",
                         error=DriverConfigError, secrets=secrets)
        self.driver = driver

    @classmethod
    def of(cls, driver: str, raw: "Mapping[str, Any] | Params | None",
           secrets: frozenset[str] = frozenset()) -> "Params":
        """``raw`` itself when it already is a Params (the factory made it), else a new one."""
        if isinstance(raw, cls):
            return raw
        if isinstance(raw, Section):
            raw = raw.data
        return cls(driver, raw, secrets)

    def int(self, key: str, default: Any = None, *, minimum: int | None = None,
            maximum: int | None = None) -> Any:
        """An integer; strings may carry a unit (``10MiB``, ``5m``) as driver sizes often do."""
        return self.size(key, default, minimum=minimum, maximum=maximum)

    def path(self, key: str, default: str | None = None) -> str | None:
        """A local or store path: only a YAML string (a number is a typo, not a directory)."""
        value = self.raw(key)
        if value is not None and value != "" and not isinstance(value, str):
            raise self.bad(key, "a string", value)
        return self.str(key, default)

    def root(self, key: str = "rootdirectory") -> str:
        """The key prefix inside the bucket: no leading or trailing slash, valid components."""
        value = (self.str(key, "") or "").strip("/")
        if value and any(part in ("", ".", "..") for part in value.split("/")):
            raise DriverConfigError(f"{self.where(key)}: not a clean path: {value!r}")
        return value
