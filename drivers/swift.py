"""The ``swift`` driver: OpenStack Swift through our own async filesystem (:mod:`drivers.swiftfs`).

Config keys are distribution's (2.x): ``username, password, authurl, tenant, tenantid, domain,
domainid, tenantdomain, tenantdomainid, trustid, region, container, prefix, secretkey,
accesskey, authversion (1, 2, 3; 0 or absent: from the URL), endpointtype (public, internal,
admin), chunksize, insecureskipverify, tempurlcontainerkey, tempurlmethods``; plus
``uploadmemorybudget`` and ``redirectexpiry`` as for the other cloud drivers.

Layout, as distribution's: the driver path ``/p`` is the object ``<prefix>/files/p`` of the
container (created when missing), large-object segments live under ``<prefix>/segments/``, so
a container written by distribution 2.x is served here and the other way round.

Writes stream into segments of ``chunksize`` bytes and publish them as one Static Large Object
(the manifest names the segments; nothing is re-read). The segment list and the tail (less than
1 MiB: smaller segments are served slowly) survive in the ``<key>@writer`` sidecar, so any
instance resumes an upload. Beyond the cluster's ``max_manifest_segments`` the manifest nests.
A move is a server-side COPY of the manifest; directory deletes are bulk deletes, with large
objects deleted with their segments (distribution's Dynamic Large Objects too). A write or move that
replaces a Static Large Object deletes the replaced segments right after (no leak; a reader
streaming the old object at that instant is cut short, which for content-addressed blobs means a
client retry of identical bytes). Redirects are
TempURLs signed with ``secretkey`` (set as the container's, or on old clusters the account's,
TempURL key at start; without ``secretkey`` the existing key, else a random one, as
distribution does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets as random_secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from .base import DriverConfigError, FileWriter, InvalidOffset, PathNotFound, StorageError, StorageUnavailable
from .cloud import RETRY_ATTEMPTS, ObjectStoreDriver, Params, register_secret
from .multipart import SIDECAR_SUFFIX, PartStore
from .swiftfs import AuthConfig, SwiftAuth, SwiftError, SwiftFileSystem, iter_file

log = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_CHUNK = 20 * MiB  # distribution's default segment size
MIN_CHUNK = 1 * MiB  # Swift rate-limits segments under 1 MiB (rate_limit_under_size)
MAX_CHUNK = 5 << 30  # Swift's default max_file_size
DEFAULT_MAX_SEGMENTS = 1000  # Swift's default max_manifest_segments
_ENDPOINT_TYPES = ("public", "internal", "admin")
_DELETE_CONCURRENCY = 8


class SwiftDriver(ObjectStoreDriver):
    """OpenStack Swift: SLO segment writes, COPY moves, bulk deletes, TempURL redirects."""

    name = "swift"
    secret_params = frozenset({"password", "secretkey"})

    def __init__(
        self,
        *,
        auth: AuthConfig,
        container: str,
        prefix: str = "",
        part_size: int = DEFAULT_CHUNK,
        insecure: bool = False,
        secret_key: str | None = None,
        access_key: str | None = None,
        tempurl_container_key: bool | None = None,
        tempurl_methods: tuple[str, ...] | None = None,
        redirect_expiry: int = 1200,
        params: Params | None = None,
    ) -> None:
        self.container = container
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.redirect_expiry = redirect_expiry
        self.budget = (params or Params(self.name, {})).budget()
        self._auth_config = auth
        self._configured_key = secret_key
        self._access_key = access_key
        self._tempurl_container_key = tempurl_container_key
        self._tempurl_methods = tempurl_methods
        base = f"{container}/{self.prefix}" if self.prefix else container
        self.segments_root = f"{base}/segments"
        fs = SwiftFileSystem(SwiftAuth(auth), insecure=insecure, retries=RETRY_ATTEMPTS)
        fs.on_token = register_secret
        super().__init__(fs, f"{base}/files")
        self.fs: SwiftFileSystem
        # learnt from the cluster when first used
        self._ready: asyncio.Future[None] | None = None
        self._temp_key: str | None = None
        self._temp_digest = "sha1"
        self._temp_methods: tuple[str, ...] = ()
        self.max_segments = DEFAULT_MAX_SEGMENTS
        self.bulk_delete_max = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(container={self.container!r}, root={self.root!r})"

    # --- configuration -------------------------------------------------------------------

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "SwiftDriver":
        p = cls.params(params)
        authurl = p.str("authurl", required=True) or ""
        if urllib.parse.urlsplit(authurl).scheme not in ("http", "https"):
            raise DriverConfigError(f"storage.swift.authurl: not an http(s) URL: {authurl!r}")
        version = p.int("authversion", 0)
        if version not in (0, 1, 2, 3):
            raise DriverConfigError(f"storage.swift.authversion: expected 1, 2 or 3, got {version}")
        container = p.str("container", required=True) or ""
        if "/" in container or not container.strip():
            raise DriverConfigError(f"storage.swift.container: not a container name: {container!r}")
        auth = AuthConfig(
            authurl=authurl,
            username=p.str("username", required=True) or "",
            password=p.str("password", required=True) or "",
            version=version,
            tenant=p.str("tenant"),
            tenantid=p.str("tenantid"),
            domain=p.str("domain"),
            domainid=p.str("domainid"),
            tenantdomain=p.str("tenantdomain"),
            tenantdomainid=p.str("tenantdomainid"),
            trustid=p.str("trustid"),
            region=p.str("region"),
            endpointtype=p.choice("endpointtype", _ENDPOINT_TYPES, "public") or "public",
        )
        return cls(
            auth=auth,
            container=container,
            prefix=p.root("prefix"),
            part_size=p.int("chunksize", DEFAULT_CHUNK, minimum=MIN_CHUNK, maximum=MAX_CHUNK),
            insecure=p.bool("insecureskipverify", False),
            secret_key=p.str("secretkey"),
            access_key=p.str("accesskey"),
            tempurl_container_key=p.bool("tempurlcontainerkey", False) if p.has("tempurlcontainerkey") else None,
            tempurl_methods=_methods(p),
            redirect_expiry=p.int("redirectexpiry", 1200, minimum=1),
            params=p,
        )

    # --- start-up: container, limits, TempURL key ------------------------------------------

    async def _ensure_ready(self) -> None:
        """Once per instance (again after a failure): authenticate, create the container,
        read the cluster's limits and settle the TempURL key."""
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.ensure_future(self._start())
        await asyncio.shield(self._ready)

    async def _start(self) -> None:
        with self._errors("/"):
            try:
                await self.fs.request("HEAD", self.container)
            except FileNotFoundError:
                await self.fs.request("PUT", self.container, headers={"Content-Length": "0"})
            info = await self.fs.cluster_info()
            slo = info.get("slo") or {}
            self.max_segments = int(slo.get("max_manifest_segments") or DEFAULT_MAX_SEGMENTS)
            bulk = info.get("bulk_delete") or {}
            self.bulk_delete_max = int(bulk.get("max_deletes_per_request") or 0) if "bulk_delete" in info else 0
            tempurl = info.get("tempurl")
            if tempurl is not None:
                methods = tuple(tempurl.get("methods") or ())
                digests = tempurl.get("allowed_digests") or ["sha1"]
                self._temp_digest = "sha256" if "sha256" in digests else "sha1"
                container_key = _version(info.get("swift", {}).get("version", "")) >= (2, 3, 0)
            else:
                methods = self._tempurl_methods or ()
                container_key = bool(self._tempurl_container_key)
            self._temp_methods = methods
            if "GET" in methods:
                self._temp_key = await self._settle_temp_key(container_key)

    async def _settle_temp_key(self, on_container: bool) -> str | None:
        """distribution's rule: keep the key the container (or account) has, unless
        ``secretkey`` says otherwise; with neither, make one."""
        target, header = (self.container, "X-Container-Meta-Temp-Url-Key") if on_container else (
            "", "X-Account-Meta-Temp-Url-Key")  # fmt: skip
        current = (await self.fs.request("HEAD", target)).headers.get(header) or None
        wanted = self._configured_key or current or random_secrets.token_hex(32)
        if current != wanted:
            try:
                await self.fs.request("POST", target, headers={header: wanted})
            except SwiftError as exc:
                log.warning("storage.swift: cannot set the TempURL key (%s); blob redirects are off", exc)
                return current
            # two instances starting at once without secretkey: both use whichever key won
            current = (await self.fs.request("HEAD", target)).headers.get(header) or None
        if current:
            register_secret(current)
        return current

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        await self._ensure_ready()
        return await super()._call(method, *args, **kwargs)

    def _is_missing(self, exc: Exception) -> bool:
        return isinstance(exc, FileNotFoundError)

    # --- the contract: what Swift does better than the generic driver ------------------------

    def _part_store(self) -> PartStore:
        return _SwiftSegments(self)

    async def _open_writer(self, path: str, key: str, append: bool) -> FileWriter:
        await self._ensure_ready()
        return await super()._open_writer(path, key, append)

    async def delete(self, path: str) -> None:
        self.check(path)
        info = await self._info(path)
        key = self._key(path)
        with self._errors(path):
            if info.get("type") == "directory":
                await self._delete_tree(key)
            else:
                await self._delete_object(key, bool(info.get("slo")), info.get("dlo"))

    async def _delete_object(self, key: str, slo: bool, dlo: str | None) -> None:
        if slo:
            await self.fs.delete_large(key)
            return
        await self.fs._rm_file(key)
        if dlo:
            await self._delete_dlo_segments(dlo)

    async def _delete_tree(self, key: str) -> None:
        """Every object below ``key`` (never ``key``-prefixed siblings): uploads in progress
        abort (their segments go), large objects go with their segments, the rest in bulk."""
        container, _, name = key.partition("/")
        entries = await self.fs.list_objects(container, name + "/")
        store = self._part_store()
        plain: list[str] = []
        large: list[tuple[str, bool]] = []
        for entry in entries:
            full = f"{container}/{entry['name']}"
            if full.endswith(SIDECAR_SUFFIX):
                await store.discard_leftover(full[: -len(SIDECAR_SUFFIX)])
            elif "slo_etag" in entry:
                large.append((full, True))
            elif not entry.get("bytes"):
                large.append((full, False))  # maybe a Dynamic Large Object (distribution's)
            else:
                plain.append(full)
        limit = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def drop(full: str, slo: bool) -> None:
            async with limit:
                if slo:
                    await self.fs.delete_large(full)
                    return
                try:
                    head = await self.fs.request("HEAD", full)
                except FileNotFoundError:
                    return
                dlo = head.headers.get("X-Object-Manifest")
                if dlo:
                    await self._delete_dlo_segments(dlo)
                plain.append(full)

        await asyncio.gather(*(drop(full, slo) for full, slo in large))
        await self._bulk_delete(plain)

    async def _bulk_delete(self, keys: list[str]) -> None:
        if not keys:
            return
        if self.bulk_delete_max > 0:
            await self.fs.bulk_delete(keys, batch=self.bulk_delete_max)
            return
        limit = asyncio.Semaphore(_DELETE_CONCURRENCY)

        async def one(key: str) -> None:
            async with limit, contextlib.suppress(FileNotFoundError):
                await self.fs._rm_file(key)

        await asyncio.gather(*(one(k) for k in keys))

    async def _delete_dlo_segments(self, manifest: str) -> None:
        """The segments of a Dynamic Large Object, when they lie in this driver's segment area
        (distribution's layout); a manifest pointing elsewhere keeps its segments."""
        container, _, prefix = urllib.parse.unquote(manifest).partition("/")
        if container != self.container or not f"{container}/{prefix}".startswith(self.segments_root + "/"):
            return
        entries = await self.fs.list_objects(container, prefix)
        await self._bulk_delete([f"{container}/{e['name']}" for e in entries if "name" in e])

    async def _move_file(self, src: str, dst: str) -> None:
        """COPY (a large object's manifest, not its data), then delete the source object; the
        segments of a large object the copy replaced are deleted after it."""
        replaced = await self._replaced_segments(dst)
        await self.fs.copy_object(src, dst)
        await self.fs._rm_file(src)
        await self._drop_segments(replaced)

    async def _replaced_segments(self, key: str) -> list[dict[str, Any]]:
        """The segments of the Static Large Object at ``key`` that a write will replace."""
        try:
            head = await self.fs.request("HEAD", key)
        except FileNotFoundError:
            return []
        if head.headers.get("X-Static-Large-Object", "").lower() != "true":
            return []
        try:
            return await self.fs.get_manifest(key)
        except FileNotFoundError:
            return []

    async def _drop_segments(self, manifest: list[dict[str, Any]]) -> None:
        """Delete the segments (and nested manifests) a manifest named, if they are ours."""
        ours = [
            (name, bool(entry.get("sub_slo")))
            for entry in manifest
            if (name := str(entry.get("name", "")).lstrip("/")).startswith(self.segments_root + "/")
        ]
        for name, _ in [n for n in ours if n[1]]:
            with contextlib.suppress(FileNotFoundError):
                await self.fs.delete_large(name)
        await self._bulk_delete([name for name, nested in ours if not nested])

    async def reader(  # type: ignore[override]
        self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """One streaming GET from ``offset``; a connection that breaks mid-body resumes where
        it stopped."""
        self.check(path)
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(self.name, path, "is a directory")
        if offset < 0 or offset > info.size:
            raise InvalidOffset(self.name, path, offset)
        key = self._key(path)
        pos, failures = offset, 0
        while pos < info.size:
            with self._errors(path):
                resp = await self.fs.open_read(key, pos, info.size)
            try:
                while pos < info.size:
                    try:
                        chunk = await resp.content.read(chunk_size)
                    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                        failures += 1
                        if failures >= RETRY_ATTEMPTS:
                            raise StorageUnavailable(self.name, path, f"read failed: {type(exc).__name__}") from None
                        await asyncio.sleep(min(0.2 * 2**failures, 5))
                        break  # reconnect from pos
                    if not chunk:
                        raise StorageError(self.name, path, "object shrank while being read")
                    pos += len(chunk)
                    yield chunk
            finally:
                resp.release()

    async def _url_for(self, key: str, method: str) -> str | None:
        await self._ensure_ready()
        if not self._temp_key:
            return None
        # a TempURL signed for GET also allows HEAD
        url = await self.fs.temp_url(key, "GET", self._temp_key, int(time.time()) + self.redirect_expiry,
                                     self._temp_digest)  # fmt: skip
        if self._access_key:
            # HP Cloud's form: the signature as tenant_id:access_key:signature
            token = await self.fs.token()
            tenant = self._auth_config.tenantid or token.project_id or ""
            base, _, query = url.partition("?")
            fields = urllib.parse.parse_qs(query)
            fields["temp_url_sig"] = [f"{tenant}:{self._access_key}:{fields['temp_url_sig'][0]}"]
            url = base + "?" + urllib.parse.urlencode({k: v[0] for k, v in fields.items()})
        return url

    async def close(self) -> None:
        await self.fs.close_session()
        await super().close()

    # --- segments ------------------------------------------------------------------------

    def new_segment_prefix(self) -> str:
        """A fresh segment directory (distribution's shape: ``segments/<3 hex>/<37 hex>``)."""
        name = random_secrets.token_hex(20)
        return f"{self.segments_root}/{name[:3]}/{name[3:]}"


class _SwiftSegments(PartStore):
    """Swift segments and an SLO manifest for :class:`drivers.multipart.PartWriter`."""

    takes_files = True
    short_parts_ok = True
    short_part_min = MIN_CHUNK

    def __init__(self, driver: SwiftDriver) -> None:
        self._d = driver
        self._fs = driver.fs
        self.name = driver.name

    def _err(self, key: str):  # type: ignore[no-untyped-def]
        return self._d._errors(self._d._path(key))

    async def get_small(self, key: str) -> bytes:
        await self._d._ensure_ready()
        with self._err(key):
            return await self._fs._cat_file(key)

    async def put_small(self, key: str, data: bytes) -> None:
        with self._err(key):
            await self._fs.put_object(key, data)

    async def delete_key(self, key: str) -> None:
        with self._err(key), contextlib.suppress(FileNotFoundError):
            await self._fs._rm_file(key)

    async def put_whole(self, key: str, data: Any) -> None:
        with self._err(key):
            replaced = await self._d._replaced_segments(key)
            await self._put(key, data)
            await self._d._drop_segments(replaced)

    async def _put(self, key: str, data: Any) -> str:
        if isinstance(data, (bytes, bytearray, memoryview)):
            answer = await self._fs.put_object(key, memoryview(data))
        else:
            data.seek(0, 2)
            length = data.tell()
            answer = await self._fs.put_object(key, lambda: iter_file(data), length=length)
        return str(answer.headers.get("Etag", "")).strip('"')

    async def mpu_start(self, key: str) -> dict[str, Any]:
        return {"segments": self._d.new_segment_prefix(), "parts": []}

    async def mpu_part(self, key: str, state: dict[str, Any], offset: int, data: Any, final: bool) -> None:
        length = _length(data)
        if not length:
            return
        name = f"{state['segments']}/{len(state['parts']) + 1:016d}"
        with self._err(key):
            etag = await self._put(name, data)
        state["parts"].append([name, etag, length])

    async def mpu_complete(self, key: str, state: dict[str, Any], size: int) -> None:
        """Publish the manifest; past the cluster's segment limit, manifests of manifests."""
        entries = [{"path": "/" + name, "etag": etag or None, "size_bytes": length} for name, etag, length in state["parts"]]
        level = 0
        with self._err(key):
            while len(entries) > self._d.max_segments:
                level += 1
                grouped = []
                for i in range(0, len(entries), self._d.max_segments):
                    sub = f"{state['segments']}/manifest-{level}-{i // self._d.max_segments:06d}"
                    await self._fs.put_manifest(sub, entries[i : i + self._d.max_segments])
                    grouped.append({"path": "/" + sub, "etag": None, "size_bytes": None})
                entries = grouped
            replaced = await self._d._replaced_segments(key)
            await self._fs.put_manifest(key, entries)
            await self._d._drop_segments(replaced)

    async def mpu_abort(self, key: str, state: dict[str, Any]) -> None:
        """Delete every segment of the upload: the recorded ones and any the listing shows
        (one uploaded just before a crash, nested manifests of a failed commit)."""
        names = {name for name, _, _ in state.get("parts", [])}
        container, _, prefix = str(state.get("segments", "")).partition("/")
        if prefix.startswith(self._d.segments_root.partition("/")[2] + "/"):
            with contextlib.suppress(Exception):
                names |= {f"{container}/{e['name']}" for e in await self._fs.list_objects(container, prefix + "/")}
        with contextlib.suppress(Exception):
            await self._d._bulk_delete(sorted(names))


def _length(data: Any) -> int:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).nbytes
    data.seek(0, 2)
    return data.tell()


def _methods(p: Params) -> tuple[str, ...] | None:
    value = p.raw("tempurlmethods")
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DriverConfigError("storage.swift.tempurlmethods: expected a list of HTTP methods")
    return tuple(v.upper() for v in value)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
