"""Typed configuration from distribution's ``config.yml`` shape plus ``REGISTRY_*`` overrides.

One rule for every key, at any depth: it is **honoured**, or **named in a warning** (unknown keys,
with a "did you mean"; keys we know but do not implement), or, when ignoring it would weaken
security (TLS, auth), it **stops the registry with one clear line**. The mechanism is
:class:`Section`: a reader over one mapping whose every read declares the key it reads, so that
``finish()`` can warn about whatever nobody read. Every parser uses it, here and in the packages
that type their own blocks (``registry.auth.config``, ``drivers.params`` and new subsystems);
``/work/coord/NOTES.md`` (and ``docs/configuration.md``) say how to declare a key.

Bad values, two storage drivers or an unreadable file raise :class:`ConfigError` with one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

log = logging.getLogger(__name__)

ENV_PREFIX = "REGISTRY_"
#: ``REGISTRY_*`` variables that name no key: the file to read, and our own process switches
NON_KEY_VARIABLES = frozenset({"REGISTRY_CONFIGURATION_PATH", "REGISTRY_NO_UVLOOP"})
#: keys of the ``storage:`` block that are options, not driver names (distribution's list)
STORAGE_OPTION_KEYS = ("delete", "redirect", "maintenance", "cache", "tag")
#: sections that may be written as a bare string naming their one entry (``auth: htpasswd``)
STRING_SECTIONS = ("storage", "auth")
#: configuration versions distribution (and so we) can parse
SUPPORTED_VERSIONS = ("0.1",)


class ConfigError(ValueError):
    """A configuration problem, worded for the operator (one line)."""


# --------------------------------------------------------------------------- value parsing

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_duration(value: Any, key: str, error: type[Exception] = ConfigError) -> float:
    """Seconds from a Go duration (``168h``, ``1m30s``) or a number of seconds."""
    if isinstance(value, bool):
        raise error(f"{key}: expected a duration like '10s' or '168h', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise error(f"{key}: duration must not be negative")
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
        if text == "0":
            return 0.0
    raise error(f"{key}: expected a duration like '10s' or '168h', got {value!r}")


def section(raw: Any, key: str) -> dict[str, Any]:
    """The mapping at ``key`` (empty when absent), or a ConfigError naming the key.

    Prefer :class:`Section`, which also warns about keys nobody read."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {raw!r}")
    return dict(raw)


# --------------------------------------------------------------------------- the key reader

T = TypeVar("T")
_MISSING: Any = object()


class _Tree:
    """What every :class:`Section` of one configuration shares: warnings and env provenance."""

    def __init__(self, origins: Mapping[str, str] | None = None) -> None:
        #: dotted key -> the ``REGISTRY_*`` variable that set it (for messages and string values)
        self.origins: dict[str, str] = dict(origins or {})
        self.env_text: dict[str, str] = {}
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning("config: %s", message)


class Section:
    """A reader over one config mapping at a dotted ``path`` (``""`` for the root).

    Every accessor *declares* the key it reads (present or not), so :meth:`finish` can name each
    key nobody declared, with the closest declared name as a suggestion. Use:

    - ``str``/``bool``/``int``/``size``/``duration``/``strings``/``choice`` for values;
    - ``section(key)`` for a nested mapping (checked the same way), ``sections(key)`` for a list
      of mappings, ``mapping(key)`` for a free-form mapping whose keys are data (``http.headers``);
    - ``delegate(key)`` to hand a block to a subsystem that reads it with its own Section later;
    - ``unimplemented(key, why)`` for a key we know but do not honour (warned by name when set);
    - ``refuse(key, why)`` for a security-relevant key we cannot honour (ConfigError when set).

    ``error`` is the exception raised for bad values (``DriverConfigError`` for drivers);
    ``secrets`` are keys whose values never appear in messages.
    """

    def __init__(
        self,
        raw: Any,
        path: str = "",
        *,
        error: type[Exception] = ConfigError,
        secrets: frozenset[str] | set[str] = frozenset(),
        tree: _Tree | None = None,
    ) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise error(f"{path or 'the configuration'}: expected a mapping, got {_short(raw)}")
        self._raw: dict[str, Any] = {str(k): v for k, v in raw.items()}
        self.name = path
        self.error = error
        self.secrets = frozenset(secrets)
        self._tree = tree or _Tree()
        self._declared: set[str] = set()
        self._children: list[Section] = []
        self._sections: dict[str, Section] = {}
        self._finished = False

    # --- introspection -------------------------------------------------------------------

    def where(self, key: str) -> str:
        """The dotted name of ``key`` in messages: ``storage.s3.bucket``, ``rules[0].name``."""
        if key.startswith("["):
            return f"{self.name}{key}"
        return f"{self.name}.{key}" if self.name else key

    @property
    def warnings(self) -> list[str]:
        """Every warning of this configuration so far (shared by all its sections)."""
        return self._tree.warnings

    def warn(self, message: str) -> None:
        """Log ``message`` once per configuration, prefixed ``config:``."""
        self._tree.warn(message)

    @property
    def data(self) -> dict[str, Any]:
        """The block as a plain dict (for code that keeps it raw); declares nothing."""
        return dict(self._raw)

    def keys(self) -> list[str]:
        """The keys present (not declared by this call)."""
        return list(self._raw)

    def has(self, key: str) -> bool:
        """True when ``key`` is present with a value (not null, not empty); declares it."""
        self._declared.add(key)
        return self._raw.get(key) not in (None, "")

    def __contains__(self, key: str) -> bool:
        return self.has(key)

    def raw(self, key: str, default: Any = None) -> Any:
        """The value as parsed from YAML (or the environment), unchecked; declares the key."""
        self._declared.add(key)
        value = self._raw.get(key, default)
        return default if value is None else value

    def bad(self, key: str, expected: str, value: Any = _MISSING) -> Exception:
        """The error for a bad value of ``key`` (the value hidden when ``key`` is a secret)."""
        if value is _MISSING:
            value = self._raw.get(key)
        shown = "<hidden>" if key in self.secrets else _short(value)
        return self.error(f"{self.where(key)}: expected {expected}, got {shown}")

    # --- values --------------------------------------------------------------------------

    def str(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        """A string; numbers are taken as their text (YAML reads ``secret: 1234`` as a number)."""
        value = self.raw(key)
        if value is None or value == "":
            if required:
                raise self.error(f"{self.where(key)} is required")
            return default
        if isinstance(value, str):
            return value
        env = self._tree.env_text.get(self.where(key))
        if env is not None:  # distribution types env values by the field: a string stays a string
            return env
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise self.bad(key, "a string", value)

    def choice(self, key: str, choices: tuple[str, ...], default: Any = None, *, lower: bool = False) -> Any:
        """One of ``choices`` (compared lower-cased when ``lower``)."""
        value = self.str(key, default)
        if value is None:
            return None
        if lower:
            value = value.lower()
        if value not in choices:
            raise self.bad(key, f"one of {', '.join(choices)}", value)
        return value

    def bool(self, key: str, default: bool = False) -> bool:
        value = self.raw(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.bad(key, "true or false", value)

    def int(self, key: str, default: Any = None, *, minimum: int | None = None,
            maximum: int | None = None) -> Any:
        """An integer (a digit string from the environment is one)."""
        value = self.raw(key)
        if value is None or value == "":
            return default
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.bad(key, "an integer", value)
        return self._bounded(key, value, minimum, maximum)

    def size(self, key: str, default: Any = None, *, minimum: int | None = None,
             maximum: int | None = None) -> Any:
        """A byte count: an integer, or a string with a unit (``10MiB``, ``5m``, ``64k``)."""
        value = self.raw(key)
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
                number = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "")[:1].lower()]
        if number is None:
            raise self.bad(key, "an integer (bytes: 10485760, or with a unit: 10MiB)", value)
        return self._bounded(key, number, minimum, maximum)

    def _bounded(self, key: str, number: int, minimum: int | None, maximum: int | None) -> int:
        if minimum is not None and number < minimum:
            raise self.error(f"{self.where(key)}: must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise self.error(f"{self.where(key)}: must be at most {maximum}, got {number}")
        return number

    def duration(self, key: str, default: Any = None) -> Any:
        """Seconds, from a Go duration (``10s``, ``168h``, ``1m30s``) or a number of seconds.

        ``default`` may itself be a duration string."""
        value = self.raw(key)
        if value is None or value == "":
            if default is None:
                return None
            return parse_duration(default, self.where(key), self.error)
        return parse_duration(value, self.where(key), self.error)

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        """A list of strings (a single string is taken as a list of one)."""
        value = self.raw(key)
        if value is None:
            return list(default or [])
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
        ):
            raise self.bad(key, "a list of strings", value)
        return [str(v) for v in value]

    def networks(self, key: str) -> list[str]:
        """A list of addresses or networks (``10.0.0.0/8``, ``::1``), as written."""
        import ipaddress

        values = self.strings(key)
        for net in values:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise self.error(f"{self.where(key)}: {net!r} is not an address or network") from None
        return values

    # --- nested blocks -------------------------------------------------------------------

    def section(self, key: str) -> "Section":
        """The mapping at ``key`` as a Section (empty when absent), checked by :meth:`finish`.
        Asking twice gives the same Section."""
        if key in self._sections:
            return self._sections[key]
        value = self.raw(key)
        if value is not None and not isinstance(value, Mapping):
            raise self.bad(key, "a mapping", value)
        child = self._sections[key] = self._child(value, self.where(key))
        return child

    def sections(self, key: str) -> list["Section"]:
        """A list of mappings (``notifications.endpoints``), each a Section named ``key[i]``."""
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.bad(key, "a list", value)
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.error(f"{self.where(key)}[{i}]: expected a mapping, got {_short(item)}")
            out.append(self._child(item, f"{self.where(key)}[{i}]"))
        return out

    def mapping(self, key: str) -> dict[str, Any]:
        """A free-form mapping whose keys are data, not config keys (``http.headers``, ``log.fields``)."""
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.bad(key, "a mapping", value)
        return {str(k): v for k, v in value.items()}

    def delegate(self, key: str) -> Any:
        """Hand the raw block at ``key`` to a subsystem that checks its keys itself (with its own
        Section and ``finish()``), such as a storage driver's parameters."""
        return self.raw(key)

    def _child(self, raw: Any, path: str, **kwargs: Any) -> "Section":
        child = Section(raw, path, error=self.error, secrets=self.secrets, tree=self._tree, **kwargs)
        self._children.append(child)
        return child

    # --- keys we know but do not honour --------------------------------------------------

    def unimplemented(self, key: str, why: str = "") -> bool:
        """Declare ``key`` as known but not honoured here: warned by name when it is set.
        Returns whether it was set."""
        if not self._is_set(key):
            return False
        self.warn(f"{self.where(key)} is not supported by this registry and is ignored"
                  + (f" ({why})" if why else "") + self._origin(key))
        return True

    def refuse(self, key: str, why: str) -> None:
        """Declare ``key`` as one we cannot honour where ignoring it would weaken security:
        ConfigError (one line) when it is set."""
        if self._is_set(key):
            raise self.error(f"{self.where(key)}: {why}{self._origin(key)}")

    def _is_set(self, key: str) -> bool:
        self._declared.add(key)
        value = self._raw.get(key)
        return value not in (None, "", False, {}, [])

    def _origin(self, key: str) -> str:
        name = self._tree.origins.get(self.where(key))
        return f" (from {name})" if name else ""

    # --- the check -----------------------------------------------------------------------

    def finish(self) -> "Section":
        """Warn about every key of this block and its sub-blocks that nobody declared."""
        if self._finished:
            return self
        self._finished = True
        for key in self._raw:
            if key in self._declared:
                continue
            hint = _suggest(key, self._declared)
            self.warn(f"unknown key {self.where(key)} ignored"
                      + (f" (did you mean {self.where(hint)}?)" if hint else "") + self._origin(key))
        for child in self._children:
            child.finish()
        return self


def _suggest(key: str, declared: set[str]) -> str | None:
    lowered = {d.lower(): d for d in declared}
    if key.lower() in lowered:
        return lowered[key.lower()]
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.7)
    return lowered[close[0]] if close else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- sections


class _FromRaw:
    """``from_raw(mapping)``: a section parsed alone (tests, tools), its unknown keys warned."""

    section_name = ""

    @classmethod
    def from_raw(cls, raw: Any) -> Any:
        s = Section(raw, cls.section_name)
        out = cls.from_section(s)  # type: ignore[attr-defined]
        s.finish()
        return out


@dataclasses.dataclass
class LogConfig(_FromRaw):
    section_name = "log"
    level: str = "info"
    formatter: str = "text"
    accesslog_disabled: bool = False
    #: ``log.fields``: added to every log line
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_section(cls, s: Section, fallback_level: str | None = None) -> "LogConfig":
        level = s.choice("level", ("error", "warn", "warning", "info", "debug"), None, lower=True)
        formatter = s.choice("formatter", ("text", "json", "logstash"), "text", lower=True)
        fields = s.mapping("fields")
        for key, value in fields.items():
            if not isinstance(value, (str, int, float, bool)):
                raise s.error(f"log.fields.{key}: expected a plain value, got {_short(value)}")
        s.unimplemented("hooks", "log hooks (mail) are distribution's")
        s.unimplemented("reportcaller")
        return cls(
            level=level or fallback_level or "info",
            formatter=formatter,
            accesslog_disabled=s.section("accesslog").bool("disabled", False),
            fields=fields,
        )


@dataclasses.dataclass
class LetsEncryptConfig:
    """``http.tls.letsencrypt``: certificates from an ACME CA (registry.tls.letsencrypt)."""

    #: a directory (as distribution 3's autocert): the account key and one file per host
    cachefile: str
    hosts: list[str]
    email: str = ""
    directoryurl: str = "https://acme-v02.api.letsencrypt.org/directory"


@dataclasses.dataclass
class TLSConfig:
    certificate: str = ""
    key: str = ""
    clientcas: list[str] = dataclasses.field(default_factory=list)
    #: distribution's ``clientauth`` (None: require-and-verify-client-cert when clientcas is set)
    clientauth: str | None = None
    minimumtls: str = "tls1.2"
    #: distribution's Go names; empty: distribution's default list
    ciphersuites: list[str] = dataclasses.field(default_factory=list)
    letsencrypt: LetsEncryptConfig | None = None


@dataclasses.dataclass
class HTTPTimeouts:
    """``http.timeouts`` (ours): how long a client may hold a connection without progress, in
    seconds; 0 turns ``header`` or ``body`` off."""

    #: an idle keep-alive connection (or a silent new one) is closed after this
    idle: float = 120.0
    #: the request line and headers (and a TLS handshake) must arrive within this of the first byte
    header: float = 30.0
    #: a request body, or a response the client does not read, may stall this long
    body: float = 60.0

    @classmethod
    def from_section(cls, s: Section) -> "HTTPTimeouts":
        values = {name: s.duration(name, getattr(cls, name)) for name in ("idle", "header", "body")}
        if values["idle"] < 1:
            raise s.error(f"{s.where('idle')}: must be at least 1s (idle connections are always closed)")
        return cls(**values)


@dataclasses.dataclass
class HTTPConfig(_FromRaw):
    section_name = "http"
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
    #: ``http.debug``: the debug server (metrics, /debug/health), a registry.observe.config.DebugConfig
    debug: Any = None
    timeouts: HTTPTimeouts = dataclasses.field(default_factory=HTTPTimeouts)
    #: ours: client connections open at once, all workers together; 0 = from the file descriptor limit
    maxconnections: int = 0
    #: ours: ``http.ratelimit``, a registry.ratelimit.RateLimitConfig; None = no request-rate limit
    ratelimit: Any = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.addr.rpartition(":")
        if not sep:
            host, port = "", self.addr
        return host.strip("[]") or "0.0.0.0", int(port)

    @classmethod
    def from_section(cls, s: Section) -> "HTTPConfig":
        addr = s.str("addr", cls.addr)
        net = s.str("net", "tcp")
        if net not in ("tcp", "unix"):
            raise s.error(f"http.net: unknown address type {net!r} (tcp or unix)")
        host, sep, port = addr.rpartition(":")
        if net == "unix":
            if not addr.startswith("/"):
                raise s.bad("addr", "an absolute socket path with http.net unix", addr)
        elif not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise s.bad("addr", "host:port", addr)
        prefix = s.str("prefix", "/")
        if not prefix.startswith("/"):
            prefix = "/" + prefix
        headers: dict[str, list[str]] = {}
        for name, values in s.mapping("headers").items():
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise s.error(f"http.headers.{name}: expected a list of strings")
            headers[name] = values
        tls = _tls(s.section("tls"))
        secret = s.str("secret", "")
        generated = False
        if not secret:
            # Like distribution: a random secret works for one instance; several instances behind
            # a load balancer must share one, or uploads cannot move between them.
            secret = secrets.token_urlsafe(32)
            generated = True
        if s.section("http2").raw("disabled") is False:
            s.warn("http.http2: HTTP/2 is not served by this registry; clients use HTTP/1.1")
        if s.section("h2c").bool("enabled", False):
            s.warn("http.h2c.enabled: HTTP/2 cleartext is not served by this registry; clients use HTTP/1.1")
        return cls(
            addr=addr,
            net=net,
            prefix=prefix.rstrip("/") + "/",
            host=s.str("host", ""),
            secret=secret,
            relativeurls=s.bool("relativeurls", False),
            draintimeout=s.duration("draintimeout", 0),
            headers=headers,
            tls=tls,
            workers=_workers(s, net),
            secret_generated=generated,
            debug=_debug_config(s.section("debug")),
            timeouts=HTTPTimeouts.from_section(s.section("timeouts")),
            maxconnections=s.int("maxconnections", 0, minimum=0),
            ratelimit=_ratelimit_config(s.section("ratelimit")),
        )


def _workers(s: Section, net: str) -> int:
    workers = s.int("workers", 1, minimum=1)
    if workers > 1 and net == "unix":
        raise s.error("http.workers: several workers share a TCP port; with http.net unix use 1")
    return workers


def _ratelimit_config(s: Section) -> Any:
    from .ratelimit import RateLimitConfig  # the limiter reads its own block

    return RateLimitConfig.from_section(s)


def _debug_config(s: Section) -> Any:
    from .observe.config import DebugConfig  # the observe package reads its own block

    return DebugConfig.from_section(s)


def _tls(s: Section) -> TLSConfig | None:
    """``http.tls`` as distribution reads it: TLS is on when ``certificate`` or
    ``letsencrypt.cachefile`` is set. Where distribution would then serve plain HTTP although
    TLS keys are set (client CAs or ACME hosts without a certificate), we refuse."""
    from .tls import CLIENT_AUTH, GO_CIPHER_SUITES, STRICTER_CLIENT_AUTH, TLS_VERSIONS

    cert = s.str("certificate", "")
    key = s.str("key", "")
    cas = s.strings("clientcas")
    clientauth = s.str("clientauth")
    if clientauth is not None and clientauth not in CLIENT_AUTH:
        raise s.bad("clientauth", "one of " + ", ".join(CLIENT_AUTH), clientauth)
    minimum = s.str("minimumtls", "tls1.2").lower()
    if minimum not in TLS_VERSIONS:
        raise s.error(f"http.tls.minimumtls: unknown minimum TLS level {minimum!r} (tls1.2 or tls1.3)")
    suites = s.strings("ciphersuites")
    for name in suites:
        if name not in GO_CIPHER_SUITES:
            raise s.error(f"http.tls.ciphersuites: unknown TLS cipher suite {name!r} (distribution's Go names, "
                          "such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    acme = _letsencrypt(s.section("letsencrypt"))
    if acme is not None and cert:
        raise s.error("http.tls: cannot specify both certificate and letsencrypt")
    if not cert and acme is None:
        if key or cas:
            raise s.error("http.tls: clientcas and key need http.tls.certificate (or letsencrypt): "
                          "without one the registry would serve plain HTTP")
        if clientauth or suites or s.has("minimumtls"):
            s.warn("http.tls: minimumtls, ciphersuites and clientauth have no effect without a certificate")
        return None
    if cert and not key:
        raise s.error("http.tls.key is required with http.tls.certificate")
    if minimum in ("tls1.0", "tls1.1"):
        s.warn(f"http.tls.minimumtls {minimum}: OpenSSL refuses TLS 1.0 and 1.1, so the minimum is tls1.2")
    if suites and minimum == "tls1.3":
        s.warn("http.tls.ciphersuites is ignored with minimumtls tls1.3: TLS 1.3 suites are not configurable "
               "(as in distribution)")
    if clientauth and not cas:
        s.warn("http.tls.clientauth has no effect without http.tls.clientcas (as in distribution)")
    elif clientauth in STRICTER_CLIENT_AUTH:
        s.warn(f"http.tls.clientauth {clientauth}: a client certificate that is given must also chain to "
               "clientcas (Python's TLS cannot accept it unverified): stricter than distribution")
    return TLSConfig(cert, key, cas, clientauth, minimum, suites, acme)


def _letsencrypt(s: Section) -> LetsEncryptConfig | None:
    cachefile = s.str("cachefile", "")
    hosts = s.strings("hosts")
    email = s.str("email", "")
    url = s.str("directoryurl", LetsEncryptConfig.directoryurl)
    if not cachefile:
        if hosts or email or s.has("directoryurl"):
            raise s.error("http.tls.letsencrypt.cachefile is required (the directory certificates are kept in): "
                          "without it the registry would serve plain HTTP")
        return None
    if not hosts:
        raise s.error("http.tls.letsencrypt.hosts: list the names to get certificates for")
    if not url.startswith("https://"):
        raise s.bad("directoryurl", "an https:// ACME directory URL", url)
    return LetsEncryptConfig(cachefile, hosts, email, url)


@dataclasses.dataclass
class UploadPurgingConfig:
    enabled: bool = True
    age: float = 168 * 3600.0
    interval: float = 24 * 3600.0
    dryrun: bool = False


@dataclasses.dataclass
class StorageConfig(_FromRaw):
    section_name = "storage"
    driver: str = "filesystem"
    params: dict[str, Any] = dataclasses.field(default_factory=lambda: {"rootdirectory": "./data"})
    delete_enabled: bool = False
    redirect_disable: bool = False
    readonly: bool = False
    uploadpurging: UploadPurgingConfig = dataclasses.field(default_factory=UploadPurgingConfig)
    #: ``storage.maintenance.gc`` (ours): registry.lifecycle.settings.GCSettings
    gc: Any = None
    #: ``storage.cache.blobdescriptor``: "" (none), "inmemory" or "redis" (registry.state.cache)
    cache_blobdescriptor: str = ""
    cache_blobdescriptorsize: int = 10000
    #: set once the driver's parameters were checked (and warned about), so a second open is quiet
    params_checked: bool = dataclasses.field(default=False, compare=False, repr=False)

    @classmethod
    def from_section(cls, s: Section) -> "StorageConfig":
        drivers = [k for k in s.keys() if k not in STORAGE_OPTION_KEYS]
        if len(drivers) > 1:
            raise s.error(f"storage: more than one storage driver configured: {', '.join(sorted(drivers))}")
        if not drivers:
            raise s.error("storage: no storage driver configured (for example storage.filesystem.rootdirectory)")
        driver = drivers[0]
        params = s.delegate(driver)  # typed and checked by the driver (drivers/params.py)
        if params is not None and not isinstance(params, Mapping):
            raise s.bad(driver, "a mapping of driver parameters", params)
        maintenance = s.section("maintenance")
        purging = maintenance.section("uploadpurging")
        cache = s.section("cache")
        blobdescriptor = cache.choice("blobdescriptor", ("inmemory", "redis"), None, lower=True) or ""
        blobdescriptorsize = cache.int("blobdescriptorsize", 10000, minimum=1)
        s.section("tag").unimplemented("concurrencylimit")
        return cls(
            driver=driver,
            params=dict(params or {}),
            delete_enabled=s.section("delete").bool("enabled", False),
            redirect_disable=s.section("redirect").bool("disable", False),
            readonly=maintenance.section("readonly").bool("enabled", False),
            uploadpurging=UploadPurgingConfig(
                enabled=purging.bool("enabled", True),
                age=purging.duration("age", "168h"),
                interval=purging.duration("interval", "24h"),
                dryrun=purging.bool("dryrun", False),
            ),
            gc=_gc_config(maintenance.section("gc")),
            cache_blobdescriptor=blobdescriptor,
            cache_blobdescriptorsize=blobdescriptorsize,
        )


@dataclasses.dataclass
class CompatibilityConfig(_FromRaw):
    section_name = "compatibility"
    schema1_enabled: bool = False

    @classmethod
    def from_section(cls, s: Section) -> "CompatibilityConfig":
        schema1 = s.section("schema1")
        schema1.unimplemented("signingkeyfile", "manifests are never converted to schema 1, so nothing is signed")
        return cls(schema1.bool("enabled", False))


@dataclasses.dataclass
class ValidationConfig(_FromRaw):
    section_name = "validation"
    #: largest manifest accepted on PUT, in bytes (ours; distribution hard-codes 4 MiB)
    manifests_maxsize: int = 4 * 1024 * 1024
    urls_allow: list[str] = dataclasses.field(default_factory=list)
    urls_deny: list[str] = dataclasses.field(default_factory=list)
    #: False with ``validation.disabled`` (distribution): no URL rules, no index child checks
    enabled: bool = True
    #: ``manifests.indexes.platforms``: all (every child must exist), none (sparse indexes), list
    index_platforms: str = "all"
    #: with ``list``: the (architecture, os) pairs whose children must exist (empty: all)
    index_platformlist: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def child_required(self, platform: dict[str, Any] | None) -> bool:
        """Whether an index child with this ``platform`` must exist in the repository."""
        if not self.enabled or self.index_platforms == "none":
            return False
        if self.index_platforms == "all" or not self.index_platformlist:
            return True
        p = platform or {}
        return (p.get("architecture", ""), p.get("os", "")) in self.index_platformlist

    @classmethod
    def from_section(cls, s: Section) -> "ValidationConfig":
        manifests = s.section("manifests")
        urls = manifests.section("urls")

        def patterns(key: str) -> list[str]:
            values = urls.strings(key)
            for v in values:
                try:
                    re.compile(v)
                except re.error as exc:
                    raise s.error(f"validation.manifests.urls.{key}: bad regular expression {v!r}: {exc}")
            return values

        # distribution: ``enabled`` (deprecated) wins when true, else validation is on unless ``disabled``
        enabled = s.bool("enabled", False) or not s.bool("disabled", False)
        indexes = manifests.section("indexes")
        platforms = indexes.str("platforms", "all").lower()
        if platforms not in ("all", "none", "list"):
            raise s.error(f"validation.manifests.indexes.platforms: invalid platforms option {platforms!r} "
                          "(all, none or list)")
        platformlist = []
        for entry in indexes.sections("platformlist"):
            platformlist.append((entry.str("architecture", ""), entry.str("os", "")))
        if platformlist and platforms != "list":
            s.warn("validation.manifests.indexes.platformlist has no effect unless platforms is list")
        return cls(
            manifests_maxsize=manifests.int("maxsize", cls.manifests_maxsize, minimum=1024),
            urls_allow=patterns("allow"),
            urls_deny=patterns("deny"),
            enabled=enabled,
            index_platforms=platforms,
            index_platformlist=platformlist,
        )


@dataclasses.dataclass
class ListingConfig:
    """Page sizes of ``/v2/_catalog`` (distribution's ``catalog.maxentries``) and of
    ``/v2/<name>/tags/list`` (distribution's ``tags.maxtags``). One response never holds more;
    a longer list gets a ``Link`` to the next page, with or without ``n``."""

    #: the catalog's page without ``n`` and its largest page (distribution's default)
    catalog_maxentries: int = 1000
    #: the largest tag list page, also without ``n`` (ours 10000; distribution's default is 1000)
    tags_maxtags: int = 10000

    @classmethod
    def from_sections(cls, catalog: Section, tags: Section) -> "ListingConfig":
        # like distribution: 0 or absent means the default; the catalog also takes a negative as it
        entries = catalog.int("maxentries", 0)
        maxtags = tags.int("maxtags", 0, minimum=0)
        return cls(
            catalog_maxentries=entries if entries > 0 else cls.catalog_maxentries,
            tags_maxtags=maxtags or cls.tags_maxtags,
        )


@dataclasses.dataclass
class Config:
    version: str = "0.1"
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    http: HTTPConfig = dataclasses.field(default_factory=HTTPConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    compatibility: CompatibilityConfig = dataclasses.field(default_factory=CompatibilityConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    #: ``catalog:`` and ``tags:`` (page sizes of the listings)
    listing: ListingConfig = dataclasses.field(default_factory=ListingConfig)
    #: the raw ``auth:`` block; :mod:`registry.auth` types it (checked at load by :func:`_check_auth`)
    auth: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the raw ``tokenserver:`` block (our built-in token server), typed by :mod:`registry.auth`
    tokenserver: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: ``health:`` (registry.observe.config.HealthConfig) and ``notifications:``
    #: (registry.events.config.NotificationsConfig), typed by their packages
    health: Any = None
    notifications: Any = None
    #: ``ui:`` (ours; registry.ui.config.UIConfig): the web UI
    ui: Any = None
    #: ``proxy:`` (registry.proxy.config.ProxyConfig): the pull-through cache's upstreams
    proxy: Any = None
    #: ``retention:`` and ``immutability:`` (ours): registry.lifecycle.rules policies
    retention: Any = None
    immutability: Any = None
    #: ``redis:`` and ``state:`` (registry.state.config.StateConfig): what instances share
    state: Any = None
    #: every warning the configuration gave (``check-config`` repeats them)
    warnings: list[str] = dataclasses.field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        from .events.config import NotificationsConfig
        from .observe.config import DebugConfig, HealthConfig

        if self.health is None:
            self.health = HealthConfig()
        if self.notifications is None:
            self.notifications = NotificationsConfig()
        if self.ui is None:
            from .ui.config import UIConfig

            self.ui = UIConfig()
        if self.proxy is None:
            from .proxy.config import ProxyConfig

            self.proxy = ProxyConfig()
        if self.http.debug is None:
            self.http.debug = DebugConfig()
        from .lifecycle import rules, settings

        if self.storage.gc is None:
            self.storage.gc = settings.GCSettings()
        if self.retention is None:
            self.retention = rules.RetentionPolicy()
        if self.immutability is None:
            self.immutability = rules.ImmutabilityPolicy()
        if self.state is None:
            from .state.config import StateConfig

            self.state = StateConfig()

    @classmethod
    def from_dict(cls, raw: Any, *, origins: Mapping[str, str] | None = None) -> "Config":
        """Type and check a whole configuration; ``origins`` maps keys set from the environment
        to their variable (for messages)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError("the configuration must be a YAML mapping")
        tree = _Tree(origins)
        if isinstance(origins, _Origins):
            tree.env_text = dict(origins.text)
        root = Section(_normalise(dict(raw)), tree=tree)
        return cls.from_section(root)

    @classmethod
    def from_section(cls, s: Section) -> "Config":
        version = s.str("version", "0.1")
        if version not in SUPPORTED_VERSIONS:
            raise s.error(f"version: unsupported configuration version {version!r} (supported: 0.1)")
        fallback_level = s.choice("loglevel", ("error", "warn", "info", "debug"), None, lower=True)
        storage = s.section("storage")
        config = cls(
            version=version,
            log=LogConfig.from_section(s.section("log"), fallback_level),
            http=HTTPConfig.from_section(s.section("http")),
            storage=StorageConfig.from_section(storage) if storage.keys() else StorageConfig(),
            compatibility=CompatibilityConfig.from_section(s.section("compatibility")),
            validation=ValidationConfig.from_section(s.section("validation")),
            listing=ListingConfig.from_sections(s.section("catalog"), s.section("tags")),
            auth=_check_auth(s, "auth"),
            tokenserver=_check_auth(s, "tokenserver"),
            health=_health_config(s.section("health")),
            notifications=_notifications_config(s.section("notifications")),
            ui=_ui_config(s.section("ui")),
            proxy=_proxy_config(s.section("proxy")),
            retention=_lifecycle_rules(s.section("retention"), "RetentionPolicy"),
            immutability=_lifecycle_rules(s.section("immutability"), "ImmutabilityPolicy"),
            state=_state_config(s.section("redis"), s.section("state")),
        )
        _check_state(s, config)
        for name, why in UNIMPLEMENTED_SECTIONS.items():
            s.unimplemented(name, why)
        s.finish()
        config.warnings = s.warnings
        return config


#: distribution's top-level sections that no code here honours yet (each warned by name when set).
#: Whoever implements one replaces its line with a parser (see docs/configuration.md).
UNIMPLEMENTED_SECTIONS: dict[str, str] = {
    "middleware": "registry, repository and storage middlewares (cloudfront, redirect...) are distribution's",
    "reporting": "bugsnag and newrelic reporting are not available",
    "policy": "repository classes are not enforced",
}


def _health_config(s: Section) -> Any:
    from .observe.config import HealthConfig

    return HealthConfig.from_section(s)


def _proxy_config(s: Section) -> Any:
    from .proxy.config import ProxyConfig

    return ProxyConfig.from_section(s)


def _notifications_config(s: Section) -> Any:
    from .events.config import NotificationsConfig

    return NotificationsConfig.from_section(s)


def _state_config(redis: Section, state: Section) -> Any:
    from .state.config import StateConfig

    return StateConfig.from_sections(redis, state)


def _check_state(s: Section, config: "Config") -> None:
    """``storage.cache.blobdescriptor`` against ``redis:`` and ``http.workers``."""
    state, storage = config.state, config.storage
    choice = storage.cache_blobdescriptor
    if choice == "redis" and state.redis is None:
        raise ConfigError("storage.cache.blobdescriptor: redis needs the redis: section (redis.addr or redis.addrs)")
    if choice == "inmemory" and config.http.workers > 1:
        s.warn("storage.cache.blobdescriptor: inmemory is not used with http.workers > 1 (a delete in one "
               "worker could not reach the others' caches); use redis")
        choice = ""
    state.blobdescriptor = choice
    state.blobdescriptorsize = storage.cache_blobdescriptorsize


def _ui_config(s: Section) -> Any:
    from .ui.config import UIConfig

    return UIConfig.from_section(s)
def _gc_config(s: Section) -> Any:
    from .lifecycle.settings import GCSettings

    return GCSettings.from_section(s)


def _lifecycle_rules(s: Section, kind: str) -> Any:
    from .lifecycle import rules

    return getattr(rules, kind).from_section(s)


def _check_auth(root: Section, key: str) -> dict[str, Any]:
    """Type the ``auth:`` or ``tokenserver:`` block once at load, so its typos and bad values are
    reported with the rest; the raw block is kept for :func:`registry.auth.setup_auth`."""
    s = root.section(key)
    if not s.data:  # nothing to type: no need to import the auth package (aiohttp, cryptography)
        return s.data
    from .auth import config as auth_config  # the auth package reads its own blocks

    if key == "auth":
        auth_config.AuthConfig.from_section(s)
    else:
        auth_config.TokenServerConfig.from_section(s)
    return s.data


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """distribution's string forms: ``storage: inmemory`` and ``auth: htpasswd`` name the one entry."""
    for key in STRING_SECTIONS:
        if isinstance(raw.get(key), str) and raw[key]:
            raw[key] = {raw[key]: {}}
    return raw


# --------------------------------------------------------------------------- environment


class _Origins(dict):
    """Dotted key -> variable name, plus the variables' raw text (``text``)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str],
                        origins: dict[str, str] | None = None) -> dict[str, Any]:
    """Apply ``REGISTRY_A_B_C=value`` overrides as distribution's parser does.

    Variables are applied in sorted order (so ``REGISTRY_STORAGE=s3`` comes before
    ``REGISTRY_STORAGE_S3_BUCKET``). The name is the upper-cased key path joined by ``_``; a
    numeric part indexes a list (``REGISTRY_HTTP_TLS_CLIENTCAS_0``; the next index appends); the
    value is parsed as YAML and replaces what was there. A section set to a string names its one
    entry (``REGISTRY_AUTH=htpasswd`` is ``auth: {htpasswd: {}}``), which deeper variables fill.
    Malformed names are warned about and skipped, as distribution does.
    """
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in NON_KEY_VARIABLES:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("_")
        if any(not p for p in parts):
            log.warning("config: ignoring environment variable %s: not a key path", name)
            continue
        text = environ[name]
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment override {name}: value is not valid YAML ({_one_line(exc)})")
        if len(parts) == 1 and parts[0] in STRING_SECTIONS and isinstance(value, str) and value:
            previous = raw.get(parts[0])
            if parts[0] == "storage" and isinstance(previous, Mapping):
                dropped = sorted(k for k in previous if k in STORAGE_OPTION_KEYS)
                if dropped:
                    log.warning("config: %s replaces the whole storage section, as in distribution: "
                                "storage.%s from the file no longer apply (set them from the environment too)",
                                name, ", storage.".join(dropped))
            value = {value: {}}
        where = _set_path(raw, parts, value, name)
        if where is not None and origins is not None:
            origins[where] = name
            if isinstance(origins, _Origins) and not isinstance(value, (dict, list)):
                origins.text[where] = text
    return raw


def _set_path(raw: dict[str, Any], parts: list[str], value: Any, env_name: str) -> str | None:
    """Set ``value`` at the key path ``parts``; the dotted key it set, or None if skipped."""
    node: Any = raw
    where = ""
    i = 0
    while True:
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not parts[i].isdigit():
                raise ConfigError(f"environment override {env_name}: {where} is a list: "
                                  f"expected an index, got {parts[i]!r}")
            index = int(parts[i])
            if index > len(node):
                raise ConfigError(f"environment override {env_name}: undefined index {index} "
                                  f"({where} has {len(node)} entries)")
            where = f"{where}[{index}]"
            if last:
                if index == len(node):
                    node.append(value)
                else:
                    node[index] = value
                return where
            if index == len(node):
                node.append(None)
            child = node[index]
            if child is None:
                child = [] if parts[i + 1].isdigit() else {}
                node[index] = child
            node = child
            i += 1
            continue
        if not isinstance(node, dict):
            log.warning("config: ignoring environment variable %s: %s is a plain value, not a section",
                        env_name, where)
            return None
        # Keys may themselves contain '_': prefer the longest existing key that matches.
        span = 1
        for j in range(len(parts), i + 1, -1):
            if "_".join(parts[i:j]) in {str(k).lower() for k in node}:
                span = j - i
                break
        key = _original_key(node, "_".join(parts[i:i + span]))
        where = f"{where}.{key}" if where else key
        i += span
        if i == len(parts):
            node[key] = value
            return where
        child = node.get(key)
        if isinstance(child, str) and where in STRING_SECTIONS and child:
            child = {child: {}}
            node[key] = child
        if child is None or (not isinstance(child, (dict, list))):
            if child is not None:
                log.warning("config: ignoring environment variable %s: %s is a plain value, not a section",
                            env_name, where)
                return None
            child = [] if parts[i].isdigit() else {}
            node[key] = child
        node = child


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
        if raw.get("version") is None:
            log.warning("config: %s has no version (distribution refuses such a file; add version: 0.1)", path)
    else:
        raw = default_raw()
    origins = _Origins()
    raw = apply_env_overrides(_normalise(raw), environ, origins)
    return Config.from_dict(raw, origins=origins)


def default_raw() -> dict[str, Any]:
    """The embedded default: filesystem storage under ./data, listening on 127.0.0.1:5000."""
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": os.path.abspath("data")}, "delete": {"enabled": True}},
        "http": {"addr": "127.0.0.1:5000"},
    }
