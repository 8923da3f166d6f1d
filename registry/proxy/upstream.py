"""The HTTP client of one upstream registry: requests with auth, redirects, and clear failures.

One :class:`aiohttp.ClientSession` per upstream (keep-alive connections, opened when the app
starts). Every request is for one upstream repository, whose ``pull`` scope a bearer token is
asked for. Redirects (Docker Hub sends blob GETs to a CDN) are followed here, and the
``Authorization`` header never leaves the upstream's origin.

Failures become :class:`UpstreamError` with a kind the cache acts on: ``notfound`` (404),
``denied`` (401/403 after authenticating), ``ratelimited`` (429, with the upstream's
``Retry-After``), ``unavailable`` (connection refused or reset, timeouts, 5xx) and ``invalid``
(an answer a registry must not give).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp

from .. import mediatypes as mt
from ..reference import Digest
from . import auth
from .config import UpstreamConfig
from .credentials import Credentials, HelperCredentials

log = logging.getLogger(__name__)

#: what the proxy asks for: every manifest kind, so the upstream answers with what it holds
#: (an index for a multi-arch tag); schema 1 only when nothing else exists
MANIFEST_ACCEPT = ", ".join([
    mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5",
    "application/vnd.docker.distribution.manifest.v1+json;q=0.5",
])
#: the largest manifest read from an upstream
MAX_MANIFEST = 4 << 20
MAX_REDIRECTS = 5
USER_AGENT = "pyregistry-proxy/1"


class UpstreamError(Exception):
    """The upstream did not give what was asked; ``kind`` says why (see the module docstring)."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """A failure after which a cached copy is served instead (the upstream is down or busy)."""
        return self.kind in ("unavailable", "ratelimited", "denied", "invalid")


def _retry_after(value: str | None) -> str:
    value = (value or "").strip()
    if value.isdigit():
        return value
    if value:
        try:
            import email.utils
            import time

            when = email.utils.parsedate_to_datetime(value).timestamp()
            return str(max(int(when - time.time()), 1))
        except (TypeError, ValueError, OverflowError):
            pass
    return "60"


class Upstream:
    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.tokens = auth.TokenCache()
        self.credentials = HelperCredentials(config.exec_command, config.exec_lifetime) if config.exec_command \
            else Credentials(config.username, config.password)
        self._session: aiohttp.ClientSession | None = None
        #: the upstream's last challenge (scheme, realm, service): later requests authenticate upfront
        self._challenge: auth.Challenge | None = None

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=64, limit_per_host=32, ttl_dns_cache=300,
                                             ssl=ssl.create_default_context())
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.config.timeout,
                                              sock_connect=self.config.timeout, sock_read=self.config.timeout),
                headers={"User-Agent": USER_AGENT},
                auto_decompress=False,
                read_bufsize=1 << 20,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UpstreamError("unavailable", "the proxy's upstream client is not started")
        return self._session

    # --- the registry API ---------------------------------------------------------------------------

    async def head_manifest(self, name: str, ref: str | Digest) -> tuple[str | None, str, int | None]:
        """``(digest or None, media type, size)`` of the manifest the upstream holds for ``ref``."""
        resp = await self.request("HEAD", f"/v2/{name}/manifests/{ref}", name, {"Accept": MANIFEST_ACCEPT})
        async with resp:
            self._check(resp, "manifest", name, ref)
            return (resp.headers.get("Docker-Content-Digest"), mt.base_type(resp.headers.get("Content-Type")),
                    resp.content_length)

    async def get_manifest(self, name: str, ref: str | Digest) -> tuple[bytes, str, str | None]:
        """``(body, media type, Docker-Content-Digest or None)``; at most :data:`MAX_MANIFEST` bytes."""
        resp = await self.request("GET", f"/v2/{name}/manifests/{ref}", name, {"Accept": MANIFEST_ACCEPT})
        async with resp:
            self._check(resp, "manifest", name, ref)
            if resp.content_length is not None and resp.content_length > MAX_MANIFEST:
                raise UpstreamError("invalid", f"the upstream's manifest is larger than {MAX_MANIFEST} bytes")
            try:
                body = await resp.content.read(MAX_MANIFEST + 1)
                while len(body) <= MAX_MANIFEST:
                    more = await resp.content.read(MAX_MANIFEST + 1 - len(body))
                    if not more:
                        break
                    body += more
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise self._unavailable(exc) from None
            if len(body) > MAX_MANIFEST:
                raise UpstreamError("invalid", f"the upstream's manifest is larger than {MAX_MANIFEST} bytes")
            return body, mt.base_type(resp.headers.get("Content-Type")), resp.headers.get("Docker-Content-Digest")

    async def head_blob(self, name: str, digest: Digest) -> int:
        """The size of blob ``digest`` in upstream repository ``name``."""
        resp = await self.request("HEAD", f"/v2/{name}/blobs/{digest}", name)
        async with resp:
            self._check(resp, "blob", name, digest)
            if resp.content_length is None:
                raise UpstreamError("invalid", "the upstream's blob HEAD gave no Content-Length")
            return resp.content_length

    async def open_blob(self, name: str, digest: Digest) -> aiohttp.ClientResponse:
        """The upstream's streaming answer for the blob (the caller reads and releases it)."""
        resp = await self.request("GET", f"/v2/{name}/blobs/{digest}", name)
        try:
            self._check(resp, "blob", name, digest)
        except BaseException:
            resp.release()
            raise
        return resp

    async def list_tags(self, name: str, limit: int) -> list[str]:
        """Every tag of upstream repository ``name`` (following ``Link`` pages), at most ``limit``."""
        path: str | None = f"/v2/{name}/tags/list"
        tags: list[str] = []
        pages = 0
        while path and len(tags) < limit and pages < 100:
            resp = await self.request("GET", path, name)
            async with resp:
                self._check(resp, "repository", name, None)
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    raise UpstreamError("invalid", f"the upstream's tag list is not JSON: {exc}") from None
                page = body.get("tags") if isinstance(body, dict) else None
                tags += [t for t in (page or []) if isinstance(t, str)]
                path = _next_page(resp.headers.get("Link"))
            pages += 1
        return tags[:limit]

    # --- requests -----------------------------------------------------------------------------------

    async def request(self, method: str, path: str, repo: str,
                      headers: Mapping[str, str] | None = None) -> aiohttp.ClientResponse:
        """``method`` on the upstream's ``path`` for repository ``repo`` (its pull scope), with
        the authentication the upstream asks for; redirects followed. The answer's status is not
        checked (see :meth:`_check`)."""
        url = self.config.remoteurl + path
        for attempt in range(2):
            authorization = await self._authorization(repo)
            resp = await self._send(method, url, headers, authorization)
            if resp.status != 401 or attempt:
                return resp
            challenges = auth.parse_challenges(resp.headers.getall("WWW-Authenticate", []))
            resp.release()
            known = self._pick(challenges)
            if known is None:
                return await self._send(method, url, headers, None)  # no challenge we can answer
            if authorization is not None and self._challenge is not None and known == self._challenge:
                self.tokens.drop(self._token_key(known, repo))  # the token we sent was refused
            self._challenge = known
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, headers: Mapping[str, str] | None,
                    authorization: str | None) -> aiohttp.ClientResponse:
        origin = urllib.parse.urlsplit(url)[:2]
        for _ in range(MAX_REDIRECTS + 1):
            h = dict(headers or {})
            if authorization is not None and urllib.parse.urlsplit(url)[:2] == origin:
                h["Authorization"] = authorization
            try:
                resp = await self.session.request(method, url, headers=h, allow_redirects=False)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise self._unavailable(exc) from None
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and "Location" in resp.headers:
                location = urllib.parse.urljoin(url, resp.headers["Location"])
                resp.release()
                if urllib.parse.urlsplit(location).scheme not in ("http", "https"):
                    raise UpstreamError("invalid", "the upstream redirected to a non-HTTP location")
                url = location
                continue
            return resp
        raise UpstreamError("invalid", f"more than {MAX_REDIRECTS} redirects from the upstream")

    def _unavailable(self, exc: BaseException) -> UpstreamError:
        what = type(exc).__name__ if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
        return UpstreamError("unavailable", f"upstream {self.config.remoteurl} unreachable ({what})"[:400])

    @staticmethod
    def _pick(challenges: list[auth.Challenge]) -> auth.Challenge | None:
        for scheme in ("bearer", "basic"):
            for c in challenges:
                if c.scheme == scheme and (scheme == "basic" or c.realm):
                    return c
        return None

    @staticmethod
    def _token_key(challenge: auth.Challenge, repo: str) -> tuple[str, str, str]:
        return (challenge.realm, challenge.params.get("service", ""), f"repository:{repo}:pull")

    async def _authorization(self, repo: str) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            pair = await self.credentials.get(self.config.host)
            return auth.basic_header(*pair) if pair else None
        key = self._token_key(challenge, repo)
        token = await self.tokens.shared(key, lambda: self._fetch_token(challenge, key))
        return f"Bearer {token}"

    async def _fetch_token(self, challenge: auth.Challenge, key: tuple[str, str, str]) -> str:
        realm, service, scope = key
        cfg = self.config
        query = [("scope", scope)]
        if service:
            query.insert(0, ("service", service))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {}
        sent = False
        if self.credentials.configured:
            if auth.realm_allowed(cfg.remoteurl, realm):
                pair = await self.credentials.get(urllib.parse.urlsplit(realm).hostname or "")
                if pair is not None:
                    headers["Authorization"] = auth.basic_header(*pair)
                    sent = True
            else:
                log.warning("proxy %s: token realm %s is not on the upstream's site: asking it anonymously "
                            "(credentials are not sent there)", cfg.label, urllib.parse.urlsplit(realm).netloc)
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status == 429:
                    raise UpstreamError("ratelimited", "the upstream's token service is rate limiting the proxy",
                                        status=429, retry_after=_retry_after(resp.headers.get("Retry-After")))
                if resp.status in (401, 403):
                    raise UpstreamError("denied", "the upstream's token service refused the proxy's credentials"
                                        if sent else "the upstream's token service refused an anonymous token",
                                        status=resp.status)
                if resp.status != 200:
                    raise UpstreamError("unavailable", f"the upstream's token service answered {resp.status}",
                                        status=resp.status)
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._unavailable(exc) from None
        except ValueError:
            raise UpstreamError("invalid", "the upstream's token service answered no JSON") from None
        try:
            token, lifetime = auth.token_from_response(body)
        except ValueError as exc:
            raise UpstreamError("invalid", f"the upstream's token service: {exc}") from None
        self.tokens.put(key, token, lifetime)
        return token

    # --- answers ------------------------------------------------------------------------------------

    def _check(self, resp: aiohttp.ClientResponse, what: str, name: str, ref: Any) -> None:
        """Raise the :class:`UpstreamError` a non-2xx answer stands for."""
        status = resp.status
        if 200 <= status < 300:
            return
        where = f"{name}" + (f"@{ref}" if isinstance(ref, Digest) else f":{ref}" if ref else "")
        if status == 404:
            raise UpstreamError("notfound", f"the upstream has no {what} {where}", status=404)
        if status in (401, 403):
            raise UpstreamError("denied", f"the upstream refused the proxy access to {where} ({status})", status=status)
        if status == 429:
            raise UpstreamError("ratelimited", f"the upstream is rate limiting the proxy ({where})", status=429,
                                retry_after=_retry_after(resp.headers.get("Retry-After")))
        if status >= 500:
            raise UpstreamError("unavailable", f"the upstream failed with {status} ({where})", status=status)
        raise UpstreamError("invalid", f"the upstream answered {status} for {what} {where}", status=status)


def _next_page(link: str | None) -> str | None:
    """The path of a ``Link: <...>; rel="next"`` header (relative to the upstream)."""
    if not link:
        return None
    for part in link.split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            target = urllib.parse.urlsplit(url.strip().strip("<>"))
            return urllib.parse.urlunsplit(("", "", target.path, target.query, "")) or None
    return None
