"""Typed ``notifications:`` section: distribution's keys, plus ours for the durable outbox."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from ..config import ConfigError, _bool, _int, _str, _warn_unknown, parse_duration, section

FORMATS = ("distribution", "distribution-v2", "cloudevents")
ACTIONS = ("push", "pull", "mount", "delete")
_KEY_RE = re.compile(r"[A-Za-z0-9._-]+")


@dataclasses.dataclass
class EndpointConfig:
    name: str
    url: str
    disabled: bool = False
    headers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    timeout: float = 1.0
    threshold: int = 10
    backoff: float = 1.0
    ignored_mediatypes: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()
    # ours
    format: str = "distribution"
    maxbackoff: float = 300.0
    maxage: float = 24 * 3600.0
    maxevents: int = 100_000
    maxbatch: int = 100

    @property
    def key(self) -> str:
        """The endpoint's directory name in the outbox: its name when that is a valid path
        component, else a sanitised form plus a hash (names may hold spaces)."""
        if _KEY_RE.fullmatch(self.name) and self.name not in (".", ".."):
            return self.name
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or "endpoint"
        return f"{safe[:48]}-{hashlib.sha256(self.name.encode()).hexdigest()[:8]}"

    def wants(self, action: str, media_type: str | None) -> bool:
        return action not in self.ignored_actions and (media_type or "") not in self.ignored_mediatypes


@dataclasses.dataclass
class NotificationsConfig:
    include_references: bool = False
    endpoints: list[EndpointConfig] = dataclasses.field(default_factory=list)

    @property
    def active(self) -> list[EndpointConfig]:
        return [e for e in self.endpoints if not e.disabled]

    @classmethod
    def from_raw(cls, raw: Any) -> "NotificationsConfig":
        raw = section(raw, "notifications")
        _warn_unknown(raw, ("events", "endpoints"), "notifications")
        events = section(raw.get("events"), "notifications.events")
        _warn_unknown(events, ("includereferences",), "notifications.events")
        endpoints_raw = raw.get("endpoints") or []
        if not isinstance(endpoints_raw, list):
            raise ConfigError("notifications.endpoints: expected a list of endpoints")
        endpoints = [_endpoint(item, i) for i, item in enumerate(endpoints_raw)]
        keys = [e.key for e in endpoints]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ConfigError(f"notifications.endpoints: two endpoints named {sorted(dup)[0]!r}")
        return cls(_bool(events.get("includereferences", False), "notifications.events.includereferences"),
                   endpoints)


def _endpoint(raw: Any, i: int) -> EndpointConfig:
    where = f"notifications.endpoints[{i}]"
    item = section(raw, where)
    _warn_unknown(item, ("name", "disabled", "url", "headers", "timeout", "threshold", "backoff",
                         "ignoredmediatypes", "ignore", "format", "maxbackoff", "maxage", "maxevents",
                         "maxbatch"), where)
    name = _str(item.get("name") or "", f"{where}.name")
    if not name:
        raise ConfigError(f"{where}.name: required")
    where = f"notifications.endpoints[{name}]"
    url = _str(item.get("url") or "", f"{where}.url")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: expected an http(s) URL, got {url!r}")
    headers: dict[str, list[str]] = {}
    for hname, values in section(item.get("headers"), f"{where}.headers").items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, (str, int)) for v in values):
            raise ConfigError(f"{where}.headers.{hname}: expected a list of strings")
        headers[str(hname)] = [str(v) for v in values]
    ignore = section(item.get("ignore"), f"{where}.ignore")
    _warn_unknown(ignore, ("mediatypes", "actions"), f"{where}.ignore")
    mediatypes = _strings(item.get("ignoredmediatypes"), f"{where}.ignoredmediatypes") | _strings(
        ignore.get("mediatypes"), f"{where}.ignore.mediatypes")
    actions = _strings(ignore.get("actions"), f"{where}.ignore.actions")
    for action in actions:
        if action not in ACTIONS:
            raise ConfigError(f"{where}.ignore.actions: unknown action {action!r} (known: {', '.join(ACTIONS)})")
    fmt = _str(item.get("format") or "distribution", f"{where}.format").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{where}.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")

    def duration(key: str, default: float) -> float:
        value = item.get(key)
        seconds = parse_duration(value, f"{where}.{key}") if value not in (None, 0, "") else default
        return seconds if seconds > 0 else default

    def positive(key: str, default: int) -> int:
        value = item.get(key)
        return _int(value, f"{where}.{key}", minimum=1) if value not in (None, 0) else default

    backoff = duration("backoff", 1.0)
    return EndpointConfig(
        name=name, url=url, disabled=_bool(item.get("disabled", False), f"{where}.disabled"), headers=headers,
        timeout=duration("timeout", 1.0), threshold=positive("threshold", 10), backoff=backoff,
        ignored_mediatypes=frozenset(mediatypes), ignored_actions=frozenset(actions), format=fmt,
        maxbackoff=max(duration("maxbackoff", 300.0), backoff), maxage=duration("maxage", 24 * 3600.0),
        maxevents=positive("maxevents", 100_000), maxbatch=positive("maxbatch", 100),
    )


def _strings(raw: Any, key: str) -> set[str]:
    if raw is None:
        return set()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f"{key}: expected a list of strings")
    return set(raw)
