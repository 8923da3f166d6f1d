"""Typed ``health:`` and ``http.debug:`` sections (distribution's keys), read once at start."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import ConfigError, Section

DEFAULT_INTERVAL = 10.0


@dataclasses.dataclass
class DebugConfig:
    """``http.debug``: the debug server (metrics, ``/debug/health``) on its own address."""

    addr: str = ""
    prometheus_enabled: bool = False
    prometheus_path: str = "/metrics"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.addr.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    @classmethod
    def from_raw(cls, raw: Any) -> "DebugConfig":
        s = Section(raw, "http.debug")
        out = cls.from_section(s)
        s.finish()
        return out

    @classmethod
    def from_section(cls, s: Section) -> "DebugConfig":
        addr = s.str("addr", "")
        if addr:
            _, sep, port = addr.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ConfigError(f"http.debug.addr: expected host:port, got {addr!r}")
        prom = s.section("prometheus")
        enabled = prom.bool("enabled", False)
        path = prom.str("path", "/metrics")
        if not path.startswith("/"):
            raise ConfigError(f"http.debug.prometheus.path: must start with '/', got {path!r}")
        if enabled and not addr:
            raise ConfigError("http.debug.prometheus.enabled needs http.debug.addr (the address metrics are served on)")
        return cls(addr, enabled, path)


@dataclasses.dataclass
class CheckConfig:
    """One periodic check: ``kind`` is storagedriver, file, http or tcp."""

    kind: str
    name: str
    interval: float = DEFAULT_INTERVAL
    #: consecutive failures before the check counts as failing (1: the first failure)
    threshold: int = 1
    timeout: float = 0.0
    #: the file path, URI or host:port checked
    target: str = ""
    headers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    statuscode: int = 200
    #: storagedriver only (ours): also write and delete a small file
    write: bool = True


@dataclasses.dataclass
class HealthConfig:
    checks: list[CheckConfig] = dataclasses.field(default_factory=list)

    @classmethod
    def from_raw(cls, raw: Any) -> "HealthConfig":
        s = Section(raw, "health")
        out = cls.from_section(s)
        s.finish()
        return out

    @classmethod
    def from_section(cls, s: Section) -> "HealthConfig":
        checks: list[CheckConfig] = []
        sd = s.section("storagedriver")
        if sd.bool("enabled", False):
            checks.append(CheckConfig(
                "storagedriver", "storagedriver",
                interval=_interval(sd), threshold=_threshold(sd), write=sd.bool("write", True),
            ))
        else:
            for key in ("interval", "threshold", "write"):
                sd.raw(key)  # read, but the check is off
        for item in s.sections("file"):
            path = item.str("file", required=True)
            checks.append(CheckConfig("file", path, _interval(item), _threshold(item), target=path))
        for item in s.sections("http"):
            uri = item.str("uri", required=True)
            if not uri.startswith(("http://", "https://")):
                raise ConfigError(f"{item.where('uri')}: expected an http(s) URL, got {uri!r}")
            checks.append(CheckConfig(
                "http", uri, _interval(item), _threshold(item),
                timeout=item.duration("timeout", 0.0), target=uri, headers=_headers(item),
                statuscode=item.int("statuscode", 200, minimum=100) or 200,
            ))
        for item in s.sections("tcp"):
            addr = item.str("addr", required=True)
            _, sep, port = addr.rpartition(":")
            if not sep or not port.isdigit():
                raise ConfigError(f"{item.where('addr')}: expected host:port, got {addr!r}")
            checks.append(CheckConfig(
                "tcp", addr, _interval(item), _threshold(item), timeout=item.duration("timeout", 0.0), target=addr,
            ))
        return cls(checks)


def _interval(item: Section) -> float:
    seconds = item.duration("interval") or DEFAULT_INTERVAL
    if seconds <= 0:
        raise ConfigError(f"{item.where('interval')}: must be positive")
    return seconds


def _threshold(item: Section) -> int:
    value = item.int("threshold", 0)
    if value < 0:
        raise ConfigError(f"{item.where('threshold')}: must be at least 1, got {value}")
    return value or 1


def _headers(item: Section) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, values in item.mapping("headers").items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{item.where('headers')}.{name}: expected a list of strings")
        out[name] = values
    return out
