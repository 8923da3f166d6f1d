"""Typed ``health:`` and ``http.debug:`` sections (distribution's keys), read once at start."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import ConfigError, _bool, _int, _str, _warn_unknown, parse_duration, section

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
        raw = section(raw, "http.debug")
        _warn_unknown(raw, ("addr", "prometheus"), "http.debug")
        addr = _str(raw.get("addr", ""), "http.debug.addr") if raw.get("addr") is not None else ""
        if addr:
            _, sep, port = addr.rpartition(":")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ConfigError(f"http.debug.addr: expected host:port, got {addr!r}")
        prom = section(raw.get("prometheus"), "http.debug.prometheus")
        _warn_unknown(prom, ("enabled", "path"), "http.debug.prometheus")
        enabled = _bool(prom.get("enabled", False), "http.debug.prometheus.enabled")
        path = _str(prom.get("path") or "/metrics", "http.debug.prometheus.path")
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
        raw = section(raw, "health")
        _warn_unknown(raw, ("storagedriver", "file", "http", "tcp"), "health")
        checks: list[CheckConfig] = []
        sd = section(raw.get("storagedriver"), "health.storagedriver")
        _warn_unknown(sd, ("enabled", "interval", "threshold", "write"), "health.storagedriver")
        if _bool(sd.get("enabled", False), "health.storagedriver.enabled"):
            checks.append(CheckConfig(
                "storagedriver", "storagedriver",
                interval=_interval(sd, "health.storagedriver"),
                threshold=_threshold(sd, "health.storagedriver"),
                write=_bool(sd.get("write", True), "health.storagedriver.write"),
            ))
        for i, item in enumerate(_items(raw.get("file"), "health.file")):
            where = f"health.file[{i}]"
            _warn_unknown(item, ("file", "interval", "threshold"), where)
            path = _required(item, "file", where)
            checks.append(CheckConfig("file", path, _interval(item, where), _threshold(item, where), target=path))
        for i, item in enumerate(_items(raw.get("http"), "health.http")):
            where = f"health.http[{i}]"
            _warn_unknown(item, ("uri", "headers", "statuscode", "timeout", "interval", "threshold"), where)
            uri = _required(item, "uri", where)
            if not uri.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.uri: expected an http(s) URL, got {uri!r}")
            checks.append(CheckConfig(
                "http", uri, _interval(item, where), _threshold(item, where),
                timeout=parse_duration(item["timeout"], f"{where}.timeout") if item.get("timeout") else 0.0,
                target=uri, headers=_headers(item.get("headers"), f"{where}.headers"),
                statuscode=_int(item.get("statuscode", 200) or 200, f"{where}.statuscode", minimum=100),
            ))
        for i, item in enumerate(_items(raw.get("tcp"), "health.tcp")):
            where = f"health.tcp[{i}]"
            _warn_unknown(item, ("addr", "timeout", "interval", "threshold"), where)
            addr = _required(item, "addr", where)
            _, sep, port = addr.rpartition(":")
            if not sep or not port.isdigit():
                raise ConfigError(f"{where}.addr: expected host:port, got {addr!r}")
            checks.append(CheckConfig(
                "tcp", addr, _interval(item, where), _threshold(item, where),
                timeout=parse_duration(item["timeout"], f"{where}.timeout") if item.get("timeout") else 0.0,
                target=addr,
            ))
        return cls(checks)


def _items(raw: Any, key: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{key}: expected a list")
    return [section(item, f"{key}[{i}]") for i, item in enumerate(raw)]


def _required(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if value in (None, ""):
        raise ConfigError(f"{where}.{name}: required")
    return _str(value, f"{where}.{name}")


def _interval(item: dict[str, Any], where: str) -> float:
    value = item.get("interval")
    seconds = parse_duration(value, f"{where}.interval") if value not in (None, 0, "") else DEFAULT_INTERVAL
    if seconds <= 0:
        raise ConfigError(f"{where}.interval: must be positive")
    return seconds


def _threshold(item: dict[str, Any], where: str) -> int:
    value = item.get("threshold")
    return _int(value, f"{where}.threshold", minimum=1) if value not in (None, 0) else 1


def _headers(raw: Any, key: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, values in section(raw, key).items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{key}.{name}: expected a list of strings")
        out[str(name)] = values
    return out
