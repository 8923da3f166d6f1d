"""Typed ``notifications:`` section: distribution's keys, plus ours for the durable outbox."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from ..config import ConfigError, Section

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
        s = Section(raw, "notifications")
        out = cls.from_section(s)
        s.finish()
        return out

    @classmethod
    def from_section(cls, s: Section) -> "NotificationsConfig":
        events = s.section("events")
        endpoints = [_endpoint(item) for item in s.sections("endpoints")]
        keys = [e.key for e in endpoints]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ConfigError(f"notifications.endpoints: two endpoints named {sorted(dup)[0]!r}")
        return cls(events.bool("includereferences", False), endpoints)


def _endpoint(item: Section) -> EndpointConfig:
    name = item.str("name", "")
    if not name:
        raise ConfigError(f"{item.where('name')}: required")
    where = f"notifications.endpoints[{name}]"
    url = item.str("url", "")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: expected an http(s) URL, got {url!r}")
    headers: dict[str, list[str]] = {}
    for hname, values in item.mapping("headers").items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, (str, int)) for v in values):
            raise ConfigError(f"{where}.headers.{hname}: expected a list of strings")
        headers[hname] = [str(v) for v in values]
    ignore = item.section("ignore")
    mediatypes = set(item.strings("ignoredmediatypes")) | set(ignore.strings("mediatypes"))
    actions = set(ignore.strings("actions"))
    for action in actions:
        if action not in ACTIONS:
            raise ConfigError(f"{where}.ignore.actions: unknown action {action!r} (known: {', '.join(ACTIONS)})")
    fmt = item.str("format", "distribution").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{where}.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")

    def duration(key: str, default: float) -> float:
        seconds = item.duration(key) or default
        return seconds if seconds > 0 else default

    def positive(key: str, default: int) -> int:
        return item.int(key, 0, minimum=0) or default

    backoff = duration("backoff", 1.0)
    return EndpointConfig(
        name=name, url=url, disabled=item.bool("disabled", False), headers=headers,
        timeout=duration("timeout", 1.0), threshold=positive("threshold", 10), backoff=backoff,
        ignored_mediatypes=frozenset(mediatypes), ignored_actions=frozenset(actions), format=fmt,
        maxbackoff=max(duration("maxbackoff", 300.0), backoff), maxage=duration("maxage", 24 * 3600.0),
        maxevents=positive("maxevents", 100_000), maxbatch=positive("maxbatch", 100),
    )
