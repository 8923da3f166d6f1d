"""A thin async fsspec filesystem for OpenStack Swift, on aiohttp.

No maintained async Swift filesystem exists, so this is ours: enough of fsspec's async interface
for :class:`drivers.generic.FsspecDriver` (``_info``, ``_ls``, ``_find``, ``_cat_file``,
``_pipe_file``, ``_rm_file``, ``_rm``, ``_cp_file``) plus the Swift calls the ``swift`` driver
builds on: Static Large Object manifests, bulk delete, streaming ranged GETs, account and
container metadata, ``/info``, and TempURL signing. Paths are ``container/object``.

Every request carries a token from :class:`SwiftAuth` (v1 tempauth, v2 or v3 Keystone), is
retried on 5xx, 429, connection errors and timeouts with backoff (bodies are re-sent from the
start), and is authenticated again once on a 401 (an expired or revoked token). A 404 is
:class:`FileNotFoundError`; any other failure a :class:`SwiftError` carrying the status, method
and path only: never a header, so never a token or key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from fsspec.asyn import AsyncFileSystem

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
LISTING_LIMIT = 10_000  # Swift's default container_listing_limit; larger pages answer 412
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}

Body = bytes | bytearray | memoryview | Callable[[], Any] | None


class SwiftError(OSError):
    """A Swift request that failed; the text names the method, path and status, nothing secret."""

    def __init__(self, method: str, path: str, status: int, detail: str = "") -> None:
        self.status = status
        text = f"Swift {method} {path or '/'} answered {status}"
        super().__init__(text + (f": {detail}" if detail else ""))


class SwiftAuthError(SwiftError):
    pass


# --- authentication ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """distribution's ``storage.swift`` auth keys."""

    authurl: str
    username: str
    password: str
    version: int = 0  # 0: from the URL (".../v3" -> 3, ".../v2.0" -> 2, else 1)
    tenant: str | None = None
    tenantid: str | None = None
    domain: str | None = None
    domainid: str | None = None
    tenantdomain: str | None = None
    tenantdomainid: str | None = None
    trustid: str | None = None
    region: str | None = None
    endpointtype: str = "public"

    @property
    def effective_version(self) -> int:
        if self.version:
            return self.version
        path = urllib.parse.urlsplit(self.authurl).path.rstrip("/")
        if path.endswith("/v3") or "/v3/" in path:
            return 3
        if path.endswith(("/v2.0", "/v2")) or "/v2.0/" in path:
            return 2
        return 1


@dataclasses.dataclass
class Token:
    value: str
    storage_url: str
    project_id: str | None
    expires: float | None  # time.time() when the token stops working, if the server said


class SwiftAuth:
    """Gets a token and the storage URL; v1 (tempauth and compatible), v2 and v3 Keystone."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config

    async def authenticate(self, http: aiohttp.ClientSession, ssl_ctx: Any) -> Token:
        version = self.config.effective_version
        if version == 1:
            return await self._v1(http, ssl_ctx)
        if version == 2:
            return await self._v2(http, ssl_ctx)
        return await self._v3(http, ssl_ctx)

    async def _v1(self, http: aiohttp.ClientSession, ssl_ctx: Any) -> Token:
        c = self.config
        headers = {"X-Auth-User": c.username, "X-Auth-Key": c.password}
        async with http.get(c.authurl, headers=headers, ssl=ssl_ctx) as resp:
            await resp.read()
            if resp.status >= 300:
                raise SwiftAuthError("GET", _url_path(c.authurl), resp.status, "authentication refused")
            token, url = resp.headers.get("X-Auth-Token"), resp.headers.get("X-Storage-Url")
            if not token or not url:
                raise SwiftAuthError("GET", _url_path(c.authurl), resp.status, "no token or storage URL in the answer")
            expires = None
            with _suppress_value_error():
                expires = time.time() + float(resp.headers.get("X-Auth-Token-Expires", ""))
            return Token(token, url.rstrip("/"), None, expires)

    async def _v2(self, http: aiohttp.ClientSession, ssl_ctx: Any) -> Token:
        c = self.config
        auth: dict[str, Any] = {"passwordCredentials": {"username": c.username, "password": c.password}}
        if c.tenantid:
            auth["tenantId"] = c.tenantid
        elif c.tenant:
            auth["tenantName"] = c.tenant
        url = c.authurl.rstrip("/") + "/tokens"
        async with http.post(url, json={"auth": auth}, headers=_JSON, ssl=ssl_ctx) as resp:
            body = await resp.read()
            if resp.status >= 300:
                raise SwiftAuthError("POST", _url_path(url), resp.status, "authentication refused")
        try:
            access = json.loads(body)["access"]
            token = access["token"]
            endpoints = [
                {"interface": kind, "region": e.get("region"), "url": e.get(f"{kind}URL")}
                for service in access.get("serviceCatalog", [])
                if service.get("type") == "object-store"
                for e in service.get("endpoints", [])
                for kind in ("public", "internal", "admin")
                if e.get(f"{kind}URL")
            ]
            project = (token.get("tenant") or {}).get("id")
            expires = _parse_time(token.get("expires"))
            value = token["id"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SwiftAuthError("POST", _url_path(url), 200, "unreadable Keystone v2 answer") from None
        return Token(value, self._pick(endpoints, "POST", url), project, expires)

    async def _v3(self, http: aiohttp.ClientSession, ssl_ctx: Any) -> Token:
        c = self.config
        user: dict[str, Any] = {"name": c.username, "password": c.password}
        if c.domainid:
            user["domain"] = {"id": c.domainid}
        elif c.domain:
            user["domain"] = {"name": c.domain}
        auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
        if c.trustid:
            auth["scope"] = {"OS-TRUST:trust": {"id": c.trustid}}
        elif c.tenantid:
            auth["scope"] = {"project": {"id": c.tenantid}}
        elif c.tenant:
            project: dict[str, Any] = {"name": c.tenant}
            if c.tenantdomainid:
                project["domain"] = {"id": c.tenantdomainid}
            elif c.tenantdomain:
                project["domain"] = {"name": c.tenantdomain}
            elif c.domainid:
                project["domain"] = {"id": c.domainid}
            elif c.domain:
                project["domain"] = {"name": c.domain}
            auth["scope"] = {"project": project}
        elif c.domainid:
            auth["scope"] = {"domain": {"id": c.domainid}}
        elif c.domain:
            auth["scope"] = {"domain": {"name": c.domain}}
        url = c.authurl.rstrip("/") + "/auth/tokens"
        async with http.post(url, json={"auth": auth}, headers=_JSON, ssl=ssl_ctx) as resp:
            body = await resp.read()
            if resp.status >= 300:
                raise SwiftAuthError("POST", _url_path(url), resp.status, "authentication refused")
            value = resp.headers.get("X-Subject-Token", "")
        try:
            token = json.loads(body)["token"]
            endpoints = [
                {"interface": e.get("interface"), "region": e.get("region_id") or e.get("region"), "url": e.get("url")}
                for service in token.get("catalog", [])
                if service.get("type") == "object-store"
                for e in service.get("endpoints", [])
            ]
            project = (token.get("project") or {}).get("id")
            expires = _parse_time(token.get("expires_at"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SwiftAuthError("POST", _url_path(url), 201, "unreadable Keystone v3 answer") from None
        if not value:
            raise SwiftAuthError("POST", _url_path(url), 201, "no X-Subject-Token in the answer")
        return Token(value, self._pick(endpoints, "POST", url), project, expires)

    def _pick(self, endpoints: list[dict[str, Any]], method: str, url: str) -> str:
        """The object-store endpoint of the configured interface (and region, if set)."""
        c = self.config
        for e in endpoints:
            if e["interface"] == c.endpointtype and (not c.region or e["region"] == c.region) and e["url"]:
                return str(e["url"]).rstrip("/")
        where = f" in region {c.region!r}" if c.region else ""
        raise SwiftAuthError(method, _url_path(url), 200, f"no {c.endpointtype} object-store endpoint{where} in the catalog")


# --- the filesystem --------------------------------------------------------------------------


class SwiftFileSystem(AsyncFileSystem):
    """Swift objects as files: ``container/a/b`` is object ``a/b`` of ``container``."""

    protocol = "swift"
    root_marker = ""
    cachable = False  # two instances on one container must see each other's writes

    def __init__(
        self,
        auth: SwiftAuth,
        *,
        insecure: bool = False,
        retries: int = 6,
        connect_timeout: float = 30,
        read_timeout: float = 300,
        user_agent: str = "pyregistry",
        **kwargs: Any,
    ) -> None:
        super().__init__(asynchronous=True, **kwargs)
        self.auth = auth
        self.retries = retries
        self.user_agent = user_agent
        #: entries per listing request (Swift's container_listing_limit caps it)
        self.listing_limit = LISTING_LIMIT
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._ssl: bool = not insecure
        self._http: aiohttp.ClientSession | None = None
        self._token: Token | None = None
        self._auth_lock: asyncio.Lock | None = None
        self._info_cache: dict[str, Any] | None = None
        #: called with each new token value (the driver scrubs it from logs)
        self.on_token: Callable[[str], None] | None = None

    # -- plumbing -----------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(limit=64, ssl=self._ssl)
            self._http = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False,
                headers={"User-Agent": self.user_agent}, skip_auto_headers=("Content-Type",),
            )  # fmt: skip
            self._auth_lock = asyncio.Lock()
        return self._http

    async def token(self, *, renew: bool = False, stale: Token | None = None) -> Token:
        """A valid token: the current one unless expired (or ``renew`` and it is ``stale``)."""
        http = self._session()
        assert self._auth_lock is not None
        async with self._auth_lock:
            current = self._token
            fresh_enough = current is not None and (current.expires is None or current.expires - time.time() > 60)
            if fresh_enough and not (renew and current is stale):
                return current  # type: ignore[return-value]
            token = await self._authenticate(http)
            if self.on_token is not None:
                self.on_token(token.value)
            self._token = token
            return token

    async def _authenticate(self, http: aiohttp.ClientSession) -> Token:
        delay = 0.2
        for attempt in range(self.retries):
            try:
                return await self.auth.authenticate(http, self._ssl)
            except SwiftAuthError as exc:
                if exc.status not in _RETRY_STATUSES or attempt == self.retries - 1:
                    raise
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if attempt == self.retries - 1:
                    method = "GET" if self.auth.config.effective_version == 1 else "POST"
                    raise SwiftAuthError(method, _url_path(self.auth.config.authurl), 0, type(exc).__name__) from None
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def url(self, path: str, token: Token) -> str:
        return token.storage_url + ("/" + quote(path) if path else "")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: tuple[int, ...] = (),
        stream: bool = False,
    ) -> "Answer":
        """One request on ``container/object`` (``""``: the account), retried as the module says.

        Answers 2xx (and statuses in ``ok``) are returned; 404 raises FileNotFoundError, anything
        else SwiftError. With ``stream`` the answer's ``response`` is open: release it."""
        delay, reauthed, attempt = 0.2, False, 0
        token = await self.token()
        http = self._session()
        while True:
            attempt += 1
            all_headers = {"X-Auth-Token": token.value, **(headers or {})}
            data = body() if callable(body) else body
            try:
                resp = await http.request(
                    method, self.url(path, token), params=params, headers=all_headers, data=data,
                    allow_redirects=False, ssl=self._ssl,
                )  # fmt: skip
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                if attempt >= self.retries:
                    raise SwiftError(method, path, 0, f"{type(exc).__name__} after {attempt} attempts") from None
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            status = resp.status
            if status == 401 and not reauthed:
                resp.release()
                reauthed = True
                token = await self.token(renew=True, stale=token)
                continue
            if status in _RETRY_STATUSES and attempt < self.retries:
                resp.release()
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            if 200 <= status < 300 or status in ok:
                if stream:
                    return Answer(status, resp.headers, b"", resp)
                try:
                    content = await resp.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    resp.release()
                    if attempt >= self.retries:
                        raise SwiftError(method, path, status, f"answer cut: {type(exc).__name__}") from None
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 5.0)
                    continue
                return Answer(status, resp.headers, content, None)
            text = ""
            with _suppress_value_error():
                text = (await resp.read())[:200].decode("utf-8", "replace").strip()
            resp.release()
            if status == 404:
                raise FileNotFoundError(path)
            raise SwiftError(method, path, status, _strip_html(text))

    # -- fsspec -------------------------------------------------------------------------------
    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        container, _, name = path.partition("/")
        if not name:
            await self.request("HEAD", container)
            return {"name": container, "type": "directory", "size": 0}
        try:
            answer = await self.request("HEAD", path)
        except FileNotFoundError:
            if await self.list_objects(container, name + "/", limit=1):
                return {"name": path, "type": "directory", "size": 0}
            raise
        return _head_info(path, answer.headers)

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        container, _, name = path.partition("/")
        entries = await self.list_objects(container, name + "/" if name else "", delimiter="/")
        if not entries:
            raise FileNotFoundError(path)
        out = [_listing_info(container, e) for e in entries]
        return out if detail else [e["name"] for e in out]

    async def _find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
                    **kwargs: Any) -> Any:  # fmt: skip
        path = self._strip_protocol(path)
        container, _, name = path.partition("/")
        entries = [_listing_info(container, e) for e in await self.list_objects(container, name + "/" if name else "")]
        return {e["name"]: e for e in entries} if detail else [e["name"] for e in entries]

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        headers = {}
        if start is not None or end is not None:
            first = start or 0
            if end is not None and end <= first:
                return b""
            headers["Range"] = f"bytes={first}-" + (str(end - 1) if end is not None else "")
        answer = await self.request("GET", path, headers=headers, ok=(416,))
        return b"" if answer.status == 416 else answer.body

    async def _pipe_file(self, path: str, value: Any, **kwargs: Any) -> None:
        await self.put_object(self._strip_protocol(path), value)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        await self.request("DELETE", self._strip_protocol(path))

    async def _rm(self, path: Any, recursive: bool = False, **kwargs: Any) -> None:
        paths = [path] if isinstance(path, str) else list(path)
        if recursive:
            found: list[str] = []
            for p in paths:
                found += await self._find(p)
            paths += found
        await self.bulk_delete([self._strip_protocol(p) for p in paths])

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """A server-side COPY; a large object's manifest is copied, not its data."""
        await self.copy_object(self._strip_protocol(path1), self._strip_protocol(path2))

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        try:
            await self._info(path)
            return True
        except FileNotFoundError:
            return False

    # -- Swift --------------------------------------------------------------------------------
    async def list_objects(
        self, container: str, prefix: str = "", *, delimiter: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """A container listing (every page, or at most ``limit`` entries), in name order."""
        out: list[dict[str, Any]] = []
        marker = ""
        while True:
            page_size = self.listing_limit if limit is None else min(self.listing_limit, limit - len(out))
            params = {"format": "json", "limit": str(page_size)}
            if prefix:
                params["prefix"] = prefix
            if delimiter:
                params["delimiter"] = delimiter
            if marker:
                params["marker"] = marker
            answer = await self.request("GET", container, params=params)
            try:
                page = json.loads(answer.body) if answer.status != 204 and answer.body else []
            except ValueError:
                raise SwiftError("GET", container, answer.status, "unreadable listing") from None
            out += page
            if len(page) < page_size or (limit is not None and len(out) >= limit):
                return out
            last = page[-1]
            marker = last.get("name") or last.get("subdir") or ""

    async def put_object(
        self, path: str, body: Body, *, length: int | None = None, params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> "Answer":  # fmt: skip
        all_headers = {"Content-Type": OCTET_STREAM, **(headers or {})}
        if length is not None:
            all_headers["Content-Length"] = str(length)
        elif isinstance(body, (bytes, bytearray, memoryview)):
            all_headers["Content-Length"] = str(memoryview(body).nbytes)
        return await self.request("PUT", path, params=params, headers=all_headers, body=body)

    async def copy_object(self, source: str, dest: str) -> None:
        await self.request(
            "COPY", source, params={"multipart-manifest": "get"},
            headers={"Destination": quote(dest), "Content-Type": OCTET_STREAM},
        )  # fmt: skip

    async def put_manifest(self, path: str, segments: list[dict[str, Any]]) -> None:
        """Publish a Static Large Object over ``segments`` (each ``path``, ``etag``, ``size_bytes``)."""
        body = json.dumps(segments).encode()
        await self.put_object(path, body, params={"multipart-manifest": "put"})

    async def get_manifest(self, path: str) -> list[dict[str, Any]]:
        """The segment list of a Static Large Object (``name``, ``bytes``, ``sub_slo``)."""
        answer = await self.request("GET", path, params={"multipart-manifest": "get", "format": "json"})
        try:
            manifest = json.loads(answer.body)
        except ValueError:
            raise SwiftError("GET", path, answer.status, "unreadable SLO manifest") from None
        return manifest if isinstance(manifest, list) else []

    async def delete_large(self, path: str) -> None:
        """Delete a Static Large Object with its segments (nested manifests too)."""
        answer = await self.request(
            "DELETE", path, params={"multipart-manifest": "delete"}, headers={"Accept": "application/json"}
        )
        _check_bulk(answer, "DELETE", path)

    async def bulk_delete(self, paths: list[str], batch: int = 10_000) -> None:
        """Delete objects, ``batch`` per request (missing ones are fine)."""
        for i in range(0, len(paths), batch):
            chunk = paths[i : i + batch]
            body = "\n".join("/" + quote(p) for p in chunk).encode()
            answer = await self.request(
                "POST", "", params={"bulk-delete": "true"}, body=body,
                headers={"Accept": "application/json", "Content-Type": "text/plain"},
            )  # fmt: skip
            _check_bulk(answer, "POST", "?bulk-delete")

    async def open_read(self, path: str, start: int, end: int | None = None) -> aiohttp.ClientResponse:
        """A streaming GET of ``[start, end)`` (to the end of the object without ``end``)."""
        answer = await self.request(
            "GET", path, headers={"Range": f"bytes={start}-" + ("" if end is None else str(end - 1))}, stream=True
        )
        assert answer.response is not None
        return answer.response

    async def cluster_info(self) -> dict[str, Any]:
        """The cluster's ``/info`` (capabilities and limits); ``{}`` when it does not answer."""
        if self._info_cache is not None:
            return self._info_cache
        token = await self.token()
        parts = urllib.parse.urlsplit(token.storage_url)
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/info", "", ""))
        try:
            async with self._session().get(url, ssl=self._ssl) as resp:
                info = json.loads(await resp.read()) if resp.status == 200 else {}
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            info = {}
        self._info_cache = info if isinstance(info, dict) else {}
        return self._info_cache

    async def temp_url(self, path: str, method: str, key: str, expires: int, digest: str = "sha256") -> str:
        """A TempURL for ``method`` on ``path`` until ``expires`` (Unix time), signed with ``key``."""
        token = await self.token()
        url = self.url(path, token)
        signed_path = urllib.parse.urlsplit(url).path
        signed_path = urllib.parse.unquote(signed_path)
        mac = hmac.new(key.encode(), f"{method}\n{expires}\n{signed_path}".encode(), getattr(hashlib, digest))
        return f"{url}?temp_url_sig={mac.hexdigest()}&temp_url_expires={expires}"

    async def close_session(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None


@dataclasses.dataclass
class Answer:
    status: int
    headers: Any
    body: bytes
    response: aiohttp.ClientResponse | None


def quote(path: str) -> str:
    return urllib.parse.quote(path, safe="/")


def _url_path(url: str) -> str:
    return urllib.parse.urlsplit(url).path or "/"


def _head_info(path: str, headers: Mapping[str, str]) -> dict[str, Any]:
    modified = None
    with _suppress_value_error():
        modified = float(headers.get("X-Timestamp", ""))
    if modified is None:
        with _suppress_value_error():
            modified = email.utils.parsedate_to_datetime(headers.get("Last-Modified", "")).timestamp()
    return {
        "name": path,
        "type": "file",
        "size": int(headers.get("Content-Length") or 0),
        "mtime": modified,
        "slo": headers.get("X-Static-Large-Object", "").lower() == "true",
        "dlo": headers.get("X-Object-Manifest"),
    }


def _listing_info(container: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    if "subdir" in entry:
        return {"name": f"{container}/{str(entry['subdir']).rstrip('/')}", "type": "directory", "size": 0}
    return {
        "name": f"{container}/{entry['name']}",
        "type": "file",
        "size": int(entry.get("bytes") or 0),
        "last_modified": entry.get("last_modified"),
        "slo": "slo_etag" in entry,
    }


def _check_bulk(answer: Answer, method: str, path: str) -> None:
    """Bulk deletes answer 200 whatever happened: the outcome is in the JSON body."""
    try:
        result = json.loads(answer.body)
    except ValueError:
        raise SwiftError(method, path, answer.status, "unreadable bulk answer") from None
    status = str(result.get("Response Status", ""))
    errors = result.get("Errors") or []
    if errors or not (status.startswith("2") or status.startswith("404")):
        shown = "; ".join(f"{name}: {why}" for name, why in errors[:3])
        raise SwiftError(method, path, int(status[:3]) if status[:3].isdigit() else answer.status, shown or status)


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    with _suppress_value_error():
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _strip_html(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", " ", text).strip()


class _suppress_value_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, (ValueError, TypeError))


async def iter_file(fileobj: Any, piece: int = 1 << 20) -> AsyncIterator[bytes]:
    """A spooled part's bytes, read in a worker thread piece by piece (the file stays open)."""
    fileobj.seek(0)
    while True:
        chunk = await asyncio.to_thread(fileobj.read, piece)
        if not chunk:
            return
        yield chunk
