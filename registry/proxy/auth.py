"""Authenticating to an upstream registry: challenges, bearer tokens by scope, Basic.

The flow is the one Docker Hub, ghcr.io, quay.io and distribution use: a request without
credentials gets ``401`` with ``WWW-Authenticate: Bearer realm=..,service=..,scope=..``; the client
asks the realm for a token for ``repository:<name>:pull`` (with Basic credentials when it has
some, anonymously otherwise) and repeats the request with ``Authorization: Bearer <token>``. A
``Basic`` challenge is answered with the credentials directly.

Credentials go only where they belong: to the upstream itself, and to a token realm on the same
host or the same registrable domain (``auth.docker.io`` for ``registry-1.docker.io``), judged with
the Public Suffix List, as distribution does. Another realm gets an anonymous token request, so an
upstream (or someone who controls its answers) cannot make the proxy send its password elsewhere.

Tokens are kept per (realm, service, scope) until shortly before they expire; concurrent requests
that need the same token share one token request.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import logging
import re
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

#: a token is renewed this many seconds before it expires
EXPIRY_MARGIN = 10.0
#: a token response without ``expires_in`` lasts this long (the token spec's default)
DEFAULT_EXPIRES = 60.0
#: tokens kept per upstream (scopes of distinct repositories)
MAX_TOKENS = 4096


@dataclasses.dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge of the ``WWW-Authenticate`` header lines (RFC 7235: several challenges may
    share a line, separated by commas; parameters are tokens or quoted strings)."""
    out: list[Challenge] = []
    for value in values:
        pos, text = 0, value.strip()
        while pos < len(text):
            m = _SCHEME.match(text, pos)
            if not m:
                break
            scheme, pos = m.group(1).lower(), m.end()
            params: dict[str, str] = {}
            while pos < len(text):
                p = _PARAM.match(text, pos)
                if not p:
                    break
                quoted, plain = p.group(2), p.group(3)
                params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
                pos = p.end()
                if pos < len(text) and text[pos] == ",":
                    pos += 1
                    # a token not followed by "=" starts the next challenge
                    nxt = _PARAM.match(text, pos)
                    if not nxt:
                        break
            out.append(Challenge(scheme, params))
            while pos < len(text) and text[pos] in ", ":
                pos += 1
    return out


def _is_literal_or_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


_PSL: Any = None


def _registrable(host: str) -> str | None:
    global _PSL
    if _PSL is None:
        from publicsuffixlist import PublicSuffixList

        _PSL = PublicSuffixList()
    return _PSL.privatesuffix(host)


def realm_allowed(remoteurl: str, realm: str) -> bool:
    """May the upstream's credentials go to token realm ``realm``? Same ``host:port`` as the
    upstream, or (for DNS names) the same registrable domain; an IP literal or localhost only
    with the very same ``host:port``; always over https unless the upstream itself is http."""
    remote, target = urllib.parse.urlsplit(remoteurl), urllib.parse.urlsplit(realm)
    if target.scheme not in ("http", "https") or not target.hostname or not remote.hostname:
        return False
    if target.scheme == "http" and remote.scheme == "https":
        return False  # never downgrade the credentials to plain HTTP
    if target.netloc.lower() == remote.netloc.lower():
        return True
    rhost, thost = remote.hostname.lower(), target.hostname.lower()
    if _is_literal_or_local(rhost) or _is_literal_or_local(thost):
        return False
    a, b = _registrable(rhost), _registrable(thost)
    return a is not None and a == b


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


@dataclasses.dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens of one upstream, by (realm, service, scope)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._pending: dict[tuple[str, str, str], asyncio.Future[str]] = {}

    def get(self, key: tuple[str, str, str]) -> str | None:
        token = self._tokens.get(key)
        if token is None or token.expires <= time.monotonic():
            return None
        return token.value

    def drop(self, key: tuple[str, str, str]) -> None:
        self._tokens.pop(key, None)

    def put(self, key: tuple[str, str, str], value: str, expires_in: float) -> None:
        if len(self._tokens) >= MAX_TOKENS:
            now = time.monotonic()
            for k in [k for k, t in self._tokens.items() if t.expires <= now] or list(self._tokens)[: MAX_TOKENS // 4]:
                self._tokens.pop(k, None)
        lifetime = max(expires_in, DEFAULT_EXPIRES)
        self._tokens[key] = _Token(value, time.monotonic() + lifetime - min(EXPIRY_MARGIN, lifetime / 2))

    async def shared(self, key: tuple[str, str, str], fetch: Any) -> str:
        """The token for ``key``: cached, or fetched once for every concurrent caller."""
        cached = self.get(key)
        if cached is not None:
            return cached
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(fetch())
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        return await asyncio.shield(pending)


def token_from_response(body: Any) -> tuple[str, float]:
    """``(token, expires_in)`` from a token endpoint's JSON answer; ValueError if it has none."""
    if not isinstance(body, dict):
        raise ValueError("the token answer is not a JSON object")
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the token answer holds no token")
    expires = body.get("expires_in")
    lifetime = float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires > 0 \
        else DEFAULT_EXPIRES
    return token, lifetime
