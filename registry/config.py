"""Typed configuration from distribution's ``config.yml`` shape plus ``REGISTRY_*`` overrides.

The schema lives here once, as dataclasses. A distribution user's file loads unchanged: keys we
do not implement produce a warning naming the key, never an error. Bad values, two storage
drivers, or an unreadable file raise :class:`ConfigError` with one clear line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

ENV_PREFIX = "REGISTRY_"
#: keys of the ``storage:`` block that are options, not driver names
STORAGE_OPTION_KEYS = ("delete", "redirect", "maintenance", "cache", "tag")
#: top-level sections distribution knows that we accept and ignore (with a warning)
IGNORED_SECTIONS = ("redis", "proxy", "reporting", "middleware", "loglevel")


class ConfigError(ValueError):
    """A configuration problem, worded for the operator (one line)."""


# --------------------------------------------------------------------------- value parsing

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a Go duration (``168h``, ``1m30s``) or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like '10s' or '168h', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{key}: duration must not be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        pos, total = 0, 0.0
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            return total
    raise ConfigError(f"{key}: expected a duration like '10s' or '168h', got {value!r}")


def _expect(value: Any, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{key}: expected {what}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {what}, got {value!r}")
    return value


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _str(value: Any, key: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{key}: expected a string, got {value!r}")


def _int(value: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    _expect(value, int, key, "an integer")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    return value


def section(raw: Any, key: str) -> dict[str, Any]:
    """The mapping at ``key`` (empty when absent), or a ConfigError naming the key."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {raw!r}")
    return dict(raw)


def _warn_unknown(raw: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for name in raw:
        if name not in known:
            log.warning("config: unknown key %s.%s ignored", where, name)


# --------------------------------------------------------------------------- sections


@dataclasses.dataclass
class LogConfig:
    level: str = "info"
    formatter: str = "text"
    accesslog_disabled: bool = False
    #: ``log.fields``: added to every log line
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: Any) -> "LogConfig":
        raw = section(raw, "log")
        _warn_unknown(raw, ("level", "formatter", "accesslog", "fields", "hooks", "reportcaller"), "log")
        level = _str(raw.get("level", "info"), "log.level").lower()
        if level not in ("error", "warn", "warning", "info", "debug"):
            raise ConfigError(f"log.level: expected error, warn, info or debug, got {level!r}")
        formatter = _str(raw.get("formatter", "text"), "log.formatter").lower()
        if formatter not in ("text", "json", "logstash"):
            raise ConfigError(f"log.formatter: expected text, json or logstash, got {formatter!r}")
        access = section(raw.get("accesslog"), "log.accesslog")
        _warn_unknown(access, ("disabled",), "log.accesslog")
        fields = section(raw.get("fields"), "log.fields")
        for key, value in fields.items():
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"log.fields.{key}: expected a plain value, got {value!r}")
        return cls(level, formatter, _bool(access.get("disabled", False), "log.accesslog.disabled"),
                   {str(k): v for k, v in fields.items()})


@dataclasses.dataclass
class TLSConfig:
    certificate: str
    key: str
    clientcas: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class HTTPConfig:
    addr: str = "127.0.0.1:5000"
    net: str = "tcp"
    prefix: str = "/"
    host: str = ""
    secret: str = ""
    relativeurls: bool = False
    draintimeout: float = 0.0
    headers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    tls: TLSConfig | None = None
    #: worker processes sharing the port (SO_REUSEPORT); ours, not distribution's
    workers: int = 1
    secret_generated: bool = False
    #: ``http.debug``: the debug server (metrics, /debug/health)
    debug: Any = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.addr.rpartition(":")
        if not sep:
            host, port = "", self.addr
        return host.strip("[]") or "0.0.0.0", int(port)

    @classmethod
    def from_raw(cls, raw: Any) -> "HTTPConfig":
        raw = section(raw, "http")
        _warn_unknown(
            raw,
            ("addr", "net", "prefix", "host", "secret", "relativeurls", "draintimeout", "headers", "tls",
             "debug", "http2", "workers"),
            "http",
        )
        addr = _str(raw.get("addr", cls.addr), "http.addr")
        host, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"http.addr: expected host:port, got {addr!r}")
        net = _str(raw.get("net", "tcp"), "http.net")
        if net != "tcp":
            raise ConfigError(f"http.net: only 'tcp' is supported, got {net!r}")
        prefix = _str(raw.get("prefix", "/"), "http.prefix")
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        headers_raw = section(raw.get("headers"), "http.headers")
        headers: dict[str, list[str]] = {}
        for name, values in headers_raw.items():
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ConfigError(f"http.headers.{name}: expected a list of strings")
            headers[str(name)] = values
        tls = None
        tls_raw = section(raw.get("tls"), "http.tls")
        if tls_raw.get("certificate") or tls_raw.get("key"):
            cert = _str(tls_raw.get("certificate", ""), "http.tls.certificate")
            key = _str(tls_raw.get("key", ""), "http.tls.key")
            if not cert or not key:
                raise ConfigError("http.tls: both certificate and key are required")
            cas = tls_raw.get("clientcas") or []
            if not isinstance(cas, list):
                raise ConfigError("http.tls.clientcas: expected a list of file paths")
            tls = TLSConfig(cert, key, [str(c) for c in cas])
        secret = _str(raw.get("secret", ""), "http.secret") if raw.get("secret") is not None else ""
        generated = False
        if not secret:
            # Like distribution: a random secret works for one instance; several instances behind
            # a load balancer must share one, or uploads cannot move between them.
            secret = secrets.token_urlsafe(32)
            generated = True
        return cls(
            addr=addr,
            net=net,
            prefix=prefix.rstrip("/") + "/",
            host=_str(raw.get("host", ""), "http.host"),
            secret=secret,
            relativeurls=_bool(raw.get("relativeurls", False), "http.relativeurls"),
            draintimeout=parse_duration(raw.get("draintimeout", 0), "http.draintimeout"),
            headers=headers,
            tls=tls,
            workers=_int(raw.get("workers", 1), "http.workers", minimum=1),
            secret_generated=generated,
            debug=_debug_config(raw.get("debug")),
        )


def _debug_config(raw: Any) -> Any:
    from .observe.config import DebugConfig

    return DebugConfig.from_raw(raw)


@dataclasses.dataclass
class UploadPurgingConfig:
    enabled: bool = True
    age: float = 168 * 3600.0
    interval: float = 24 * 3600.0
    dryrun: bool = False


@dataclasses.dataclass
class StorageConfig:
    driver: str = "filesystem"
    params: dict[str, Any] = dataclasses.field(default_factory=lambda: {"rootdirectory": "./data"})
    delete_enabled: bool = False
    redirect_disable: bool = False
    readonly: bool = False
    uploadpurging: UploadPurgingConfig = dataclasses.field(default_factory=UploadPurgingConfig)

    @classmethod
    def from_raw(cls, raw: Any) -> "StorageConfig":
        raw = section(raw, "storage")
        drivers = [k for k in raw if k not in STORAGE_OPTION_KEYS]
        if len(drivers) > 1:
            raise ConfigError(f"storage: more than one storage driver configured: {', '.join(sorted(drivers))}")
        if not drivers:
            raise ConfigError("storage: no storage driver configured (for example storage.filesystem.rootdirectory)")
        driver = drivers[0]
        params = section(raw[driver], f"storage.{driver}")
        delete = section(raw.get("delete"), "storage.delete")
        redirect = section(raw.get("redirect"), "storage.redirect")
        maintenance = section(raw.get("maintenance"), "storage.maintenance")
        _warn_unknown(maintenance, ("uploadpurging", "readonly"), "storage.maintenance")
        purging_raw = section(maintenance.get("uploadpurging"), "storage.maintenance.uploadpurging")
        purging = UploadPurgingConfig(
            enabled=_bool(purging_raw.get("enabled", True), "storage.maintenance.uploadpurging.enabled"),
            age=parse_duration(purging_raw.get("age", "168h"), "storage.maintenance.uploadpurging.age"),
            interval=parse_duration(
                purging_raw.get("interval", "24h"), "storage.maintenance.uploadpurging.interval"
            ),
            dryrun=_bool(purging_raw.get("dryrun", False), "storage.maintenance.uploadpurging.dryrun"),
        )
        readonly_raw = section(maintenance.get("readonly"), "storage.maintenance.readonly")
        return cls(
            driver=driver,
            params=params,
            delete_enabled=_bool(delete.get("enabled", False), "storage.delete.enabled"),
            redirect_disable=_bool(redirect.get("disable", False), "storage.redirect.disable"),
            readonly=_bool(readonly_raw.get("enabled", False), "storage.maintenance.readonly.enabled"),
            uploadpurging=purging,
        )


@dataclasses.dataclass
class CompatibilityConfig:
    schema1_enabled: bool = False

    @classmethod
    def from_raw(cls, raw: Any) -> "CompatibilityConfig":
        raw = section(raw, "compatibility")
        schema1 = section(raw.get("schema1"), "compatibility.schema1")
        _warn_unknown(schema1, ("enabled", "signingkeyfile"), "compatibility.schema1")
        return cls(_bool(schema1.get("enabled", False), "compatibility.schema1.enabled"))


@dataclasses.dataclass
class ValidationConfig:
    #: largest manifest accepted on PUT, in bytes (ours; distribution hard-codes 4 MiB)
    manifests_maxsize: int = 4 * 1024 * 1024
    urls_allow: list[str] = dataclasses.field(default_factory=list)
    urls_deny: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_raw(cls, raw: Any) -> "ValidationConfig":
        raw = section(raw, "validation")
        manifests = section(raw.get("manifests"), "validation.manifests")
        urls = section(manifests.get("urls"), "validation.manifests.urls")

        def patterns(key: str) -> list[str]:
            values = urls.get(key) or []
            if not isinstance(values, list):
                raise ConfigError(f"validation.manifests.urls.{key}: expected a list of regular expressions")
            for v in values:
                try:
                    re.compile(str(v))
                except re.error as exc:
                    raise ConfigError(f"validation.manifests.urls.{key}: bad regular expression {v!r}: {exc}")
            return [str(v) for v in values]

        return cls(
            manifests_maxsize=_int(
                manifests.get("maxsize", cls.manifests_maxsize), "validation.manifests.maxsize", minimum=1024
            ),
            urls_allow=patterns("allow"),
            urls_deny=patterns("deny"),
        )


@dataclasses.dataclass
class Config:
    version: str = "0.1"
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    http: HTTPConfig = dataclasses.field(default_factory=HTTPConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    compatibility: CompatibilityConfig = dataclasses.field(default_factory=CompatibilityConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    #: the raw ``auth:`` block, typed by :mod:`registry.auth` (kept raw here so config has no auth deps)
    auth: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the raw ``tokenserver:`` block (our built-in token server), typed by :mod:`registry.auth`
    tokenserver: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: ``health:`` (registry.observe.config.HealthConfig) and ``notifications:``
    #: (registry.events.config.NotificationsConfig), typed by their packages
    health: Any = None
    notifications: Any = None

    def __post_init__(self) -> None:
        from .events.config import NotificationsConfig
        from .observe.config import DebugConfig, HealthConfig

        if self.health is None:
            self.health = HealthConfig()
        if self.notifications is None:
            self.notifications = NotificationsConfig()
        if self.http.debug is None:
            self.http.debug = DebugConfig()

    @classmethod
    def from_dict(cls, raw: Any) -> "Config":
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError("the configuration must be a YAML mapping")
        known = ("version", "log", "http", "storage", "auth", "compatibility", "validation", "tokenserver",
                 "health", "notifications")
        for name in raw:
            if name in IGNORED_SECTIONS:
                log.warning("config: section %s is not supported and is ignored", name)
            elif name not in known:
                log.warning("config: unknown key %s ignored", name)
        storage_raw = raw.get("storage")
        config = cls(
            version=_str(raw.get("version", "0.1"), "version"),
            log=LogConfig.from_raw(raw.get("log")),
            http=HTTPConfig.from_raw(raw.get("http")),
            storage=StorageConfig.from_raw(storage_raw) if storage_raw is not None else StorageConfig(),
            compatibility=CompatibilityConfig.from_raw(raw.get("compatibility")),
            validation=ValidationConfig.from_raw(raw.get("validation")),
            auth=section(raw.get("auth"), "auth"),
            tokenserver=section(raw.get("tokenserver"), "tokenserver"),
            health=_health_config(raw.get("health")),
            notifications=_notifications_config(raw.get("notifications")),
        )
        if len(config.auth) > 1:
            raise ConfigError(f"auth: more than one auth scheme configured: {', '.join(sorted(config.auth))}")
        return config


def _health_config(raw: Any) -> Any:
    from .observe.config import HealthConfig

    return HealthConfig.from_raw(raw)


def _notifications_config(raw: Any) -> Any:
    from .events.config import NotificationsConfig

    return NotificationsConfig.from_raw(raw)


# --------------------------------------------------------------------------- loading


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``REGISTRY_A_B_C=value`` overrides: the upper-cased key path joined by ``_``,
    the value parsed as YAML. ``REGISTRY_STORAGE=s3`` switches the storage driver."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("_")
        if any(not p for p in parts):
            raise ConfigError(f"environment override {name}: malformed variable name")
        try:
            value = yaml.safe_load(environ[name]) if environ[name] != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment override {name}: value is not valid YAML ({_one_line(exc)})")
        if parts == ["storage"]:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"environment override {name}: expected a storage driver name")
            storage = raw.setdefault("storage", {}) if isinstance(raw.get("storage"), dict) else {}
            kept = {k: v for k, v in storage.items() if k in STORAGE_OPTION_KEYS}
            previous = next((v for k, v in storage.items() if k == value), {})
            kept[value] = previous if isinstance(previous, dict) else {}
            raw["storage"] = kept
            continue
        _set_path(raw, parts, value, name)
    return raw


def _set_path(raw: dict[str, Any], parts: list[str], value: Any, env_name: str) -> None:
    node: Any = raw
    i = 0
    while i < len(parts) - 1:
        if not isinstance(node, dict):
            raise ConfigError(f"environment override {env_name}: cannot set a key below a plain value")
        # Keys may themselves contain '_' : prefer the longest existing key that matches.
        match_len = 1
        for j in range(len(parts) - 1, i, -1):
            if "_".join(parts[i:j]) in _lower_keys(node):
                match_len = j - i
                break
        key = _original_key(node, "_".join(parts[i : i + match_len]))
        child = node.get(key)
        if not isinstance(child, dict):
            if child is not None:
                raise ConfigError(f"environment override {env_name}: {key} is not a mapping")
            child = {}
            node[key] = child
        node = child
        i += match_len
    if not isinstance(node, dict):
        raise ConfigError(f"environment override {env_name}: cannot set a key below a plain value")
    key = _original_key(node, "_".join(parts[i:]))
    node[key] = value


def _lower_keys(node: dict[str, Any]) -> set[str]:
    return {str(k).lower() for k in node}


def _original_key(node: dict[str, Any], lowered: str) -> str:
    for k in node:
        if str(k).lower() == lowered:
            return k
    return lowered


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or the embedded default when None), apply env overrides, validate."""
    environ = os.environ if environ is None else environ
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {_one_line(exc)}")
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration file {path} is not valid YAML: {_one_line(exc)}")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"configuration file {path} must hold a YAML mapping")
    else:
        raw = default_raw()
    raw = apply_env_overrides(raw, environ)
    return Config.from_dict(raw)


def default_raw() -> dict[str, Any]:
    """The embedded default: filesystem storage under ./data, listening on 127.0.0.1:5000."""
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": os.path.abspath("data")}, "delete": {"enabled": True}},
        "http": {"addr": "127.0.0.1:5000"},
    }
