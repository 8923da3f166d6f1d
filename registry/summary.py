"""The resolved configuration in a few lines, secrets redacted: what ``check-config`` prints and
what ``serve`` logs at start (driver, root or bucket, address, TLS, auth, features)."""

from __future__ import annotations

import re
from typing import Any

from .config import Config

#: parameter names whose values are never shown, whatever the driver declares
_SECRET_NAME = re.compile(r"secret|password|credential|privatekey|token|accountkey", re.I)
REDACTED = "<redacted>"


def summary_lines(config: Config, source: str | None = None) -> list[str]:
    http = config.http
    lines = [f"configuration: {source or 'embedded default'} (version {config.version})"]
    if http.net == "unix":
        listen = f"unix socket {http.addr}"
    else:
        listen = f"{http.addr} (tcp)"
    workers = f"{http.workers} worker{'s' if http.workers > 1 else ''}"
    lines.append(f"listen: {listen}, {workers}, prefix {http.prefix}"
                 + (f", external URL {http.host}" if http.host else "")
                 + (", relative Location URLs" if http.relativeurls else ""))
    from .tls import summary as tls_summary

    lines.append(f"tls: {tls_summary(http.tls)}")
    lines.append(f"storage: {storage_line(config)}")
    lines.append(f"auth: {auth_line(config)}")
    if config.tokenserver:
        ts = config.tokenserver
        lines.append(f"token server: issuer {ts.get('issuer')}, users {ts.get('users')}, at {ts.get('path', '/auth/token')}")
    lines.append(f"shared state: {state_line(config)}")
    lines.append(f"features: {features_line(config)}")
    lines.append("http.secret: " + ("generated at start (set it when several instances share the storage)"
                                    if http.secret_generated else "set"))
    return lines


def state_line(config: Config) -> str:
    """Where leases, counters and caches live (registry/state); never the Redis password."""
    state = config.state
    cache = state.blobdescriptor or "off"
    if state.redis is None:
        where = "this process" + (", lock files for the workers" if config.http.workers > 1 or state.lockdirectory
                                  else "")
    else:
        r = state.redis
        kind = "Sentinel " + r.mastername if r.mastername else ("Cluster" if r.cluster else "Redis")
        where = f"{kind} at {', '.join(r.addrs)}" + (", TLS" if r.tls else "") + (f", db {r.db}" if r.db else "")
    return f"{where}; lease ttl {_duration(state.leasettl)}; blob descriptor cache {cache}"


def storage_line(config: Config) -> str:
    name = config.storage.driver
    params = config.storage.params
    hidden = set(_driver_secrets(name))
    shown = []
    for key in sorted(params):
        value = params[key]
        if key in hidden or _SECRET_NAME.search(key) or isinstance(value, (dict, list)):
            value = REDACTED
        shown.append(f"{key}={value}")
    if name == "filesystem":
        import os

        from .provision import filesystem_root

        root = filesystem_root(config)
        state = "" if os.path.isdir(root) else " (missing: created at start)"
        others = [s for s in shown if not s.startswith("rootdirectory=")]
        return f"filesystem at {root}{state}" + (f", {', '.join(others)}" if others else "")
    return f"{name}" + (f": {', '.join(shown)}" if shown else "")


def auth_line(config: Config) -> str:
    auth = config.auth or {}
    if "htpasswd" in auth:
        h = auth["htpasswd"] or {}
        return f"htpasswd {h.get('path')} (realm {h.get('realm', 'basic-realm')!r})"
    if "token" in auth:
        t = auth["token"] or {}
        return (f"bearer tokens from {t.get('realm') or 'autoredirect'} (service {t.get('service')}, "
                f"issuer {t.get('issuer')})")
    return "none: every client may push, pull and delete"


def features_line(config: Config) -> str:
    s = config.storage
    parts = [
        f"deletes {'on' if s.delete_enabled else 'off'}",
        f"redirects {'off' if s.redirect_disable else 'on'}",
    ]
    if s.readonly:
        parts.append("read-only")
    p = s.uploadpurging
    parts.append(f"upload purging every {_duration(p.interval)} after {_duration(p.age)}" if p.enabled
                 else "upload purging off")
    if config.compatibility.schema1_enabled:
        parts.append("schema 1 pushes accepted")
    v = config.validation
    if v.urls_allow or v.urls_deny:
        parts.append(f"layer URL rules ({len(v.urls_allow)} allow, {len(v.urls_deny)} deny)")
    notifications = getattr(config.notifications, "active", [])
    if notifications:
        parts.append(f"notifications to {len(notifications)} endpoint{'s' if len(notifications) > 1 else ''}")
    checks = getattr(config.health, "checks", [])
    if checks:
        parts.append(f"{len(checks)} health check{'s' if len(checks) > 1 else ''}")
    proxy = getattr(config, "proxy", None)
    if proxy is not None and proxy.enabled:
        if proxy.single:
            parts.append(f"pull-through cache of {proxy.upstreams[0].remoteurl} (pushes refused)")
        else:
            parts.append("pull-through cache: " + ", ".join(f"{u.prefix}/ -> {u.remoteurl}" for u in proxy.upstreams))
    limit = config.http.ratelimit
    if limit is not None:
        shared = "shared through Redis" if config.state.redis is not None else "per process"
        parts.append(f"request-rate limit {limit.requests} per {_duration(limit.period)} per client ({shared})")
    debug = config.http.debug
    if getattr(debug, "addr", ""):
        parts.append(f"debug server on {debug.addr}" + (" with metrics" if debug.prometheus_enabled else ""))
    return ", ".join(parts)


def _driver_secrets(name: str) -> frozenset[str]:
    try:
        from drivers.factory import driver_class

        return driver_class(name).secret_params
    except Exception:  # an unknown driver is reported elsewhere
        return frozenset()


def _duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
