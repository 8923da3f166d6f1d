"""Typed ``proxy:`` section: distribution's single upstream, or our list of upstreams.

distribution's form (the whole registry mirrors one upstream; pushes are refused)::

    proxy:
      remoteurl: https://registry-1.docker.io
      username: name          # optional
      password: secret
      ttl: 0s                 # see docs/proxy.md: how long a cached tag is trusted

Ours (several upstreams under repository prefixes, local repositories beside them)::

    proxy:
      upstreams:
        - prefix: dockerhub
          remoteurl: https://registry-1.docker.io
          credentials: {username: name, password: secret}
          ttl: 5m
          ns: [docker.io]     # the ?ns= values (containerd) that select this upstream
        - prefix: ghcr
          remoteurl: https://ghcr.io

Every value is checked here once; nothing reads the raw block later.
"""

from __future__ import annotations

import dataclasses
import tempfile
import urllib.parse
from typing import Any

from ..config import Section
from ..reference import is_valid_name

#: hosts of Docker Hub's registry: single-name images there are official images under ``library/``
DOCKER_HUB_HOSTS = frozenset({"registry-1.docker.io", "index.docker.io", "docker.io", "registry.hub.docker.com"})
#: the ``ns`` names containerd sends for Docker Hub
DOCKER_HUB_NS = ("docker.io", "registry-1.docker.io", "index.docker.io")
DEFAULT_TIMEOUT = 30.0

#: a note for distribution users: the same key, another meaning (said once at start)
TTL_NOTE = (
    "proxy.ttl: distribution deletes cached content ttl after caching it and asks the upstream for "
    "every tag pull; this registry keeps cached content (the collector's rules reclaim it) and trusts a "
    "cached tag for ttl before it revalidates it with a HEAD (0 = every pull, as distribution); see docs/proxy.md"
)


@dataclasses.dataclass(frozen=True)
class UpstreamConfig:
    """One upstream registry and the local repositories that mirror it."""

    #: local repositories ``<prefix>/<name>`` mirror ``<remoteurl>/v2/<name>``; "" = every repository
    prefix: str
    #: scheme, host and optional path, without a trailing ``/``
    remoteurl: str
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    #: seconds a cached tag is served without asking the upstream (0: revalidate on every pull)
    ttl: float = 0.0
    #: ``ns`` query values (registry host names, lower case) that select this upstream
    ns: tuple[str, ...] = ()
    #: single-name repositories are Docker Hub official images: ``alpine`` is ``library/alpine``
    library: bool = False
    #: seconds for one upstream request's answer (and between two pieces of a blob body)
    timeout: float = DEFAULT_TIMEOUT
    #: seconds a blob's fetch into the cache may take in all (None: no limit)
    cachewritetimeout: float | None = None
    #: a credential helper (docker-credential-helpers protocol) instead of username/password
    exec_command: str = ""
    #: seconds its answer is kept (None: for the life of the process, 0: not at all)
    exec_lifetime: float | None = None

    @property
    def host(self) -> str:
        return (urllib.parse.urlsplit(self.remoteurl).hostname or "").lower()

    @property
    def netloc(self) -> str:
        return urllib.parse.urlsplit(self.remoteurl).netloc.lower()

    @property
    def label(self) -> str:
        """How logs and metrics name this upstream (never with credentials)."""
        return f"{self.prefix or '*'} -> {self.remoteurl}"

    def local_name(self, remote: str) -> str:
        return f"{self.prefix}/{remote}" if self.prefix else remote

    def remote_name(self, local: str) -> str | None:
        """The upstream repository for local repository ``local``, or None when it is not ours."""
        if self.prefix:
            if not local.startswith(self.prefix + "/"):
                return None
            local = local[len(self.prefix) + 1:]
        if self.library and "/" not in local:
            return f"library/{local}"
        return local


@dataclasses.dataclass
class ProxyConfig:
    upstreams: list[UpstreamConfig] = dataclasses.field(default_factory=list)
    #: distribution's form: every repository mirrors the one upstream and pushes are refused
    single: bool = False
    #: where blobs being fetched are spooled for the clients that join a fetch late
    spooldirectory: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.upstreams)

    @property
    def spool(self) -> str:
        return self.spooldirectory or tempfile.gettempdir()

    @classmethod
    def from_section(cls, s: Section) -> "ProxyConfig":
        spool = s.str("spooldirectory", "")
        lists = s.sections("upstreams")
        if s.has("remoteurl"):
            if lists:
                raise s.error("proxy: set either remoteurl (one upstream for the whole registry) or upstreams, not both")
            if s.has("ttl"):
                s.warn(TTL_NOTE)
            upstream = _upstream(s, prefix="", username=s.str("username", ""), password=_password(s, "password"),
                                 helper=s.section("exec"))
            return cls([upstream], single=True, spooldirectory=spool)
        for key in ("username", "password", "ttl", "exec"):
            if s.has(key):
                raise s.error(f"{s.where(key)}: needs proxy.remoteurl (with proxy.upstreams, set it per upstream)")
        upstreams: list[UpstreamConfig] = []
        for entry in lists:
            creds = entry.section("credentials")
            prefix = entry.str("prefix", required=True).strip("/")
            if not prefix or not is_valid_name(prefix):
                raise entry.bad("prefix", "a repository name prefix such as dockerhub or mirrors/ghcr", prefix)
            upstreams.append(_upstream(entry, prefix=prefix, username=creds.str("username", ""),
                                       password=_password(creds, "password"), helper=creds.section("exec")))
        _check_distinct(s, upstreams)
        return cls(upstreams, single=False, spooldirectory=spool)


def _password(s: Section, key: str) -> str:
    """A secret: its value never appears in a message."""
    value = s.raw(key)
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise s.error(f"{s.where(key)}: expected a string (value hidden)")
    return str(value)


def _upstream(s: Section, *, prefix: str, username: str, password: str, helper: Section) -> UpstreamConfig:
    url = s.str("remoteurl", required=True).strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise s.error(f"{s.where('remoteurl')}: expected an http(s) URL such as https://registry-1.docker.io "
                      "(no credentials, query or fragment in it)")
    remoteurl = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    command = helper.str("command", "")
    lifetime = helper.duration("lifetime", None)
    if helper.keys() and not command:
        raise helper.error(f"{helper.where('command')} is required")
    if command and username:
        s.warn(f"{helper.name}: a credential helper is set, so username and password are ignored (as in distribution)")
        username, password = "", ""
    if bool(username) != bool(password):
        raise s.error(f"{s.where('username' if not prefix else 'credentials')}: username and password go together")
    hub = (parts.hostname or "").lower() in DOCKER_HUB_HOSTS
    default_ns = DOCKER_HUB_NS if hub else (parts.netloc.lower(),)
    ns = tuple(dict.fromkeys(n.strip().lower() for n in s.strings("ns", list(default_ns)) if n.strip()))
    timeout = s.duration("timeout", DEFAULT_TIMEOUT)
    if timeout <= 0:
        raise s.error(f"{s.where('timeout')}: must be more than 0")
    cachewrite = s.duration("cachewritetimeout", None)
    return UpstreamConfig(
        prefix=prefix,
        remoteurl=remoteurl,
        username=username,
        password=password,
        ttl=s.duration("ttl", 0),
        ns=ns,
        library=s.bool("library", hub),
        timeout=timeout,
        cachewritetimeout=cachewrite if cachewrite else None,
        exec_command=command,
        exec_lifetime=lifetime,
    )


def _check_distinct(s: Section, upstreams: list[UpstreamConfig]) -> None:
    """Prefixes must not nest (``hub`` and ``hub/x``) and an ``ns`` names one upstream only."""
    for i, a in enumerate(upstreams):
        for b in upstreams[i + 1:]:
            if a.prefix == b.prefix or b.prefix.startswith(a.prefix + "/") or a.prefix.startswith(b.prefix + "/"):
                raise s.error(f"proxy.upstreams: prefixes {a.prefix!r} and {b.prefix!r} overlap")
            shared = set(a.ns) & set(b.ns)
            if shared:
                raise s.error(f"proxy.upstreams: ns {sorted(shared)[0]!r} names both {a.prefix!r} and {b.prefix!r}")


def describe(config: ProxyConfig) -> list[dict[str, Any]]:
    """The upstreams without secrets (for logs and check-config)."""
    return [{"prefix": u.prefix, "remoteurl": u.remoteurl, "ttl": u.ttl, "ns": list(u.ns),
             "credentials": "helper" if u.exec_command else bool(u.username)} for u in config.upstreams]
