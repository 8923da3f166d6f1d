"""The pull-through cache: what the store asks when a proxied repository misses.

Semantics (docs/proxy.md has the operator's view):

- **manifests by digest and blobs** are content-addressed: served from storage when present,
  else fetched once from the upstream, checked against their digest and stored;
- **manifests by tag** are served from storage while the tag was checked against the upstream
  less than the upstream's ``ttl`` ago (0: on every pull); after that a ``HEAD`` asks the upstream
  for the tag's digest: unchanged, the cached copy is served (and trusted for another ``ttl``);
  changed, the new manifest is fetched and the tag moved. When the upstream is down, rate limits
  or refuses, the cached copy is served anyway ("stale": an ``X-Cache-Status: STALE`` header and a
  warning in the log); a tag the upstream says is gone (404) is gone;
- concurrent requests for one uncached blob share one upstream fetch (:mod:`.fetch`), and those
  for one manifest or tag share one upstream request. Per process: with several instances or
  workers each may fetch once (the store's writes are idempotent, so the copies agree);
- a blob another repository already cached is linked after a ``HEAD`` confirms the upstream
  repository has it (the upstream decides who may see what), never fetched twice;
- upstream failures become OCI errors: 404 -> MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN,
  429 -> TOOMANYREQUESTS with the upstream's Retry-After, refused -> DENIED, down -> UNAVAILABLE.

What is cached is ordinary storage: links, revisions and tags as a push would write them (a
tag's link rewritten when the upstream confirms it, so its time says when it was last checked).
The collector reclaims it by its rules like any other content; blobs are shared by digest, so
expiring one repository's copy never removes a blob another repository uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from drivers.base import PathNotFound

from .. import manifests as mf
from .. import mediatypes as mt
from ..errors import ErrorCode, RegistryError
from ..reference import Digest, try_digest
from ..store import paths
from ..store.blobs import BlobInfo
from ..store.locks import tag_key
from . import status
from .config import UpstreamConfig
from .fetch import BlobFetch
from .routing import Route, Router
from .upstream import UpstreamError

if TYPE_CHECKING:
    from ..store import Store, StoredManifest

log = logging.getLogger(__name__)

#: a cached tag's link is rewritten at most this often while the upstream confirms it unchanged
RECORD_INTERVAL = 60.0
#: tag check records remembered per process
MAX_REMEMBERED = 100_000
#: tags read from an upstream for one listing
MAX_UPSTREAM_TAGS = 100_000
#: at most one "serving stale" warning per upstream this often (with the count in between)
STALE_LOG_INTERVAL = 10.0


@dataclasses.dataclass(frozen=True)
class RemoteBlobInfo(BlobInfo):
    """A blob that is being (or is about to be) fetched: read it through :meth:`ProxyCache.read`."""

    join: Callable[[], Awaitable["BlobFetch | BlobInfo"]] | None = dataclasses.field(
        default=None, compare=False, repr=False)


class ProxyCache:
    def __init__(self, router: Router, store: "Store", *, readonly: bool = False) -> None:
        """``store`` before its parts are wrapped: the cache reads and writes the local parts.
        ``readonly`` (storage.maintenance.readonly): only what is cached is served, nothing is
        written, the upstream is not asked."""
        self.router = router
        self.readonly = readonly
        self.config = router.config
        self.driver = store.driver
        self.events = store.events
        self.blobs = store.blobs
        self.uploads = store.uploads
        self.manifests = store.manifests
        self.tags = store.tags
        self._flights: dict[str, BlobFetch] = {}
        self._pending: dict[tuple[str, ...], asyncio.Future[Any]] = {}
        #: (repo, tag) -> (digest, time.time() of the last check against the upstream)
        self._checked: dict[tuple[str, str], tuple[str, float]] = {}
        self._stale_log: dict[str, tuple[float, int]] = {}

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        for up in self.router.upstreams:
            await up.start()

    async def close(self) -> None:
        for fetch in list(self._flights.values()):
            if fetch.task is not None:
                fetch.task.cancel()
        for fetch in list(self._flights.values()):
            if fetch.task is not None:
                await asyncio.gather(fetch.task, return_exceptions=True)
        for up in self.router.upstreams:
            await up.close()

    def route(self, repo: str) -> Route | None:
        return self.router.route(repo)

    # --- blobs ------------------------------------------------------------------------------------

    async def open_blob(self, route: Route, repo: str, d: Digest) -> BlobInfo:
        """A blob ``repo`` does not hold: join a fetch of it, or confirm it upstream (HEAD) and
        link the copy another repository cached, or prepare a fetch that starts on first read
        (a client's HEAD costs the upstream a HEAD, not the blob)."""
        if self.readonly:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, "not cached, and the registry is read-only: nothing is "
                                "fetched", detail={"digest": str(d)})
        fetch = self._flights.get(str(d))
        if fetch is not None and repo in fetch.repos and not fetch.finished:
            size = fetch.size  # this repository's fetch is running: the upstream was asked already
        else:
            try:
                size = await route.upstream.head_blob(route.remote, d)
            except UpstreamError as exc:
                raise self.error_for(exc, "blob", d) from None
            existing = await self.blobs.stat_data(d)
            if existing is not None and existing.size == size:
                await self.blobs.link(repo, d)
                status.note("HIT")
                return await self.blobs.open(repo, d)
        status.note("MISS")
        if self.events.active:
            await self.events.blob_pulled(repo, str(d), size)
        return RemoteBlobInfo(d, size, paths.blob_data(d), join=lambda: self._join(route, repo, d, size))

    async def _join(self, route: Route, repo: str, d: Digest, size: int) -> "BlobFetch | BlobInfo":
        """The fetch to read ``d`` from: the one in flight, or a new one; or the stored blob when
        it arrived meanwhile."""
        key = str(d)
        fetch = self._flights.get(key)
        if fetch is not None and not fetch.finished:
            fetch.add_repo(repo)
            return fetch
        existing = await self.blobs.stat_data(d)
        if existing is not None and existing.size == size:
            await self.blobs.link(repo, d)
            return existing
        fetch = self._flights.get(key)  # another request may have started one meanwhile
        if fetch is not None and not fetch.finished:
            fetch.add_repo(repo)
            return fetch
        fetch = BlobFetch(blobs=self.blobs, uploads=self.uploads, upstream=route.upstream, remote=route.remote, digest=d, size=size,
                          repo=repo, spool_dir=self.config.spool,
                          error_for=lambda exc: self.error_for(exc, "blob", d),
                          on_finished=self._finished)
        self._flights[key] = fetch
        fetch.start()
        return fetch

    def _finished(self, fetch: BlobFetch) -> None:
        if self._flights.get(str(fetch.digest)) is fetch:
            del self._flights[str(fetch.digest)]

    async def read(self, info: RemoteBlobInfo, start: int, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        """The bytes of a blob being fetched. A failure before the first byte is the fetch's
        error; after it the response can only be cut short (see :func:`status.abort`)."""
        assert info.join is not None
        source = await info.join()
        if isinstance(source, BlobInfo):
            async for chunk in self.blobs.read(source, start, length, chunk_size=chunk_size):
                yield chunk
            return
        sent = False
        try:
            async for chunk in source.read(start, length, chunk_size):
                sent = True
                yield chunk
        except RegistryError as err:
            if not sent:
                raise
            status.abort(f"blob {info.digest}: {err.message}")

    # --- manifests --------------------------------------------------------------------------------

    async def get_manifest(self, route: Route, repo: str, ref: str | Digest, *,
                           head: bool = False) -> "StoredManifest":
        """The manifest, from the cache when it is fresh; ``head``: for a HEAD, which the store
        answers through ``find`` (not a pull, and kept from a running collection)."""
        manifests = self.manifests
        load = manifests.find if head else manifests.get
        if isinstance(ref, Digest):
            try:
                stored = await load(repo, ref)
                status.note("HIT")
                return stored
            except RegistryError as err:
                if err.code is not ErrorCode.MANIFEST_UNKNOWN or self.readonly:
                    raise
            try:
                await self._shared(("manifest", repo, str(ref)), lambda: self._fetch_manifest(route, repo, ref, None))
            except UpstreamError as exc:
                raise self.error_for(exc, "manifest", ref) from None
            status.note("MISS")
            return await load(repo, ref)
        tag = ref
        local = await self.tags.current(repo, tag)
        if self.readonly:  # the cached copy as it is, however old
            stored = await load(repo, tag)
            status.note("HIT")
            return stored
        if local is not None and await self._fresh(route.upstream.config, repo, tag, local):
            try:
                stored = await load(repo, tag)
                status.note("HIT")
                return stored
            except RegistryError as err:
                if err.code is not ErrorCode.MANIFEST_UNKNOWN:
                    raise
                local = None  # the tag outlived its manifest (collected): fetch it again
        try:
            outcome = await self._shared(("tag", repo, tag), lambda: self._revalidate(route, repo, tag, local))
        except UpstreamError as exc:
            if local is not None and exc.kind != "notfound":
                try:
                    stored = await load(repo, tag)
                except RegistryError:
                    raise self.error_for(exc, "manifest", tag) from None
                self._log_stale(route.upstream.config, repo, tag, exc)
                status.note("STALE")
                return stored
            raise self.error_for(exc, "manifest", tag) from None
        status.note(outcome)
        return await load(repo, tag)

    async def _revalidate(self, route: Route, repo: str, tag: str, local: Digest | None) -> str:
        """Bring ``repo:tag`` up to date with the upstream; the cache status it ends in."""
        up = route.upstream
        if local is not None:
            announced, _media_type, _size = await up.head_manifest(route.remote, tag)
            current = try_digest(announced) if announced else None
            if current == local:
                await self._mark_checked(up.config, repo, tag, local)
                return "REVALIDATED"
            if current is not None:
                if await self.manifests.exists(repo, current) and await self._retag(repo, tag, current):
                    await self._mark_checked(up.config, repo, tag, current, written=True)
                    return "REVALIDATED"
                await self._fetch_manifest(route, repo, current, tag)
                return "MISS"
        await self._fetch_manifest(route, repo, tag, tag)
        return "MISS"

    async def _retag(self, repo: str, tag: str, d: Digest) -> bool:
        """Point ``tag`` at manifest ``d`` this repository already holds (the upstream moved the
        tag back to it); False when its bytes are not usable here (then it is fetched)."""
        try:
            body = await self.blobs.get_small(d)
        except PathNotFound:
            return False
        media_type = mf.detect_media_type(body)
        if media_type in mt.SCHEMA1_MEDIA_TYPES:
            return False
        try:
            manifest = _parse_upstream_manifest(body, media_type, d)
        except UpstreamError:
            return False
        await self.manifests.put(repo, manifest, [tag], check_references=False)
        return True

    async def _fetch_manifest(self, route: Route, repo: str, ref: str | Digest, tag: str | None) -> Digest:
        """GET the manifest from the upstream, check its digest, store it (and point ``tag`` at it)."""
        body, media_type, announced = await route.upstream.get_manifest(route.remote, ref)
        if isinstance(ref, Digest):
            expected: Digest | None = ref
            if announced and try_digest(announced) not in (None, ref):
                raise UpstreamError("invalid", f"the upstream answered {ref} with a manifest it calls {announced}")
        else:
            expected = try_digest(announced) if announced else None
            if announced and expected is None:
                raise UpstreamError("invalid", f"the upstream's Docker-Content-Digest {announced[:100]!r} is malformed")
        manifest = _parse_upstream_manifest(body, media_type, expected)
        d = try_digest(manifest.digest)
        assert d is not None
        await self.manifests.put(repo, manifest, [tag] if tag else [], check_references=False)
        if tag:
            await self._mark_checked(route.upstream.config, repo, tag, d, written=True)
        log.info("proxy %s: cached %s%s for %s", route.upstream.config.label, d, f" ({tag})" if tag else "", repo)
        return d

    # --- tags -------------------------------------------------------------------------------------

    async def list_tags(self, route: Route, repo: str) -> list[str]:
        """The upstream's tags (sorted); the cached tags when the upstream cannot answer."""
        try:
            tags = await route.upstream.list_tags(route.remote, MAX_UPSTREAM_TAGS)
        except UpstreamError as exc:
            if exc.kind == "notfound":
                raise RegistryError(ErrorCode.NAME_UNKNOWN, "the upstream has no such repository",
                                    detail={"name": repo}) from None
            tags = await self.tags.list(repo)
            self._log_stale(route.upstream.config, repo, None, exc)
            status.note("STALE")
            return tags
        status.note("MISS")
        return sorted(set(tags))

    # --- when tags were checked -----------------------------------------------------------------
    # A tag's current link is (re)written when the tag was last confirmed against the upstream (at
    # most every max(ttl, RECORD_INTERVAL) while it is unchanged): its modification time tells
    # every instance how fresh the tag is, and tells the collector's age rules when the cached tag
    # was last in use.

    async def _fresh(self, up: UpstreamConfig, repo: str, tag: str, local: Digest) -> bool:
        if up.ttl <= 0:
            return False
        record = self._checked.get((repo, tag))
        if record is None or record[0] != str(local):
            record = await self._link_time(repo, tag, local)
            if record is not None:
                self._remember(repo, tag, record)
        return record is not None and record[0] == str(local) and time.time() - record[1] < up.ttl

    async def _mark_checked(self, up: UpstreamConfig, repo: str, tag: str, d: Digest, *, written: bool = False) -> None:
        """The upstream confirmed ``repo:tag`` is ``d`` now; ``written``: its link was just written."""
        now = time.time()
        previous = self._checked.get((repo, tag))
        if previous is None and not written:
            previous = await self._link_time(repo, tag, d)
        self._remember(repo, tag, (str(d), now))
        if written or (previous is not None and previous[0] == str(d)
                       and now - previous[1] < max(up.ttl, RECORD_INTERVAL)):
            return
        try:
            async with self.manifests.locks.shared(repo, tag_key(tag)):
                if await self.tags.current(repo, tag) == d:  # not moved or deleted meanwhile
                    await self.tags.point(repo, tag, d)
        except Exception as exc:  # only a hint: the next check is merely earlier
            log.warning("proxy: could not refresh the link of %s:%s: %s", repo, tag, exc)

    async def _link_time(self, repo: str, tag: str, d: Digest) -> tuple[str, float] | None:
        try:
            info = await self.driver.stat(paths.tag_current_link(repo, tag))
        except PathNotFound:
            return None
        return (str(d), info.modified.timestamp()) if info.modified is not None else None

    def _remember(self, repo: str, tag: str, record: tuple[str, float]) -> None:
        if len(self._checked) >= MAX_REMEMBERED:
            self._checked.clear()
        self._checked[(repo, tag)] = record

    def forget(self, repo: str, tag: str | None = None) -> None:
        """Drop what this process remembers of a tag (or every tag of ``repo``) after a delete."""
        for key in [k for k in self._checked if k[0] == repo and (tag is None or k[1] == tag)]:
            del self._checked[key]

    # --- helpers ----------------------------------------------------------------------------------

    async def _shared(self, key: tuple[str, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        """One upstream request for every concurrent caller asking the same ``key``; a caller
        that goes away does not cancel it for the others."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(make())
            self._pending[key] = pending

            def done(f: asyncio.Future[Any]) -> None:
                if self._pending.get(key) is f:
                    del self._pending[key]
                if not f.cancelled():
                    f.exception()  # retrieved: no "never retrieved" warning when nobody waits

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    def _log_stale(self, up: UpstreamConfig, repo: str, tag: str | None, exc: UpstreamError) -> None:
        now = time.monotonic()
        last, skipped = self._stale_log.get(up.label, (0.0, 0))
        if now - last < STALE_LOG_INTERVAL:
            self._stale_log[up.label] = (last, skipped + 1)
            return
        self._stale_log[up.label] = (now, 0)
        what = f"{repo}:{tag}" if tag else f"the tags of {repo}"
        log.warning("proxy %s: serving the cached %s stale: %s%s", up.label, what, exc,
                    f" ({skipped} more stale answers since the last warning)" if skipped else "")

    def error_for(self, exc: UpstreamError, what: str, ref: object) -> RegistryError:
        """The OCI error a client gets for an upstream failure."""
        detail = {"upstream": exc.status, "reason": str(exc)[:300]}
        if exc.kind == "notfound":
            code = ErrorCode.BLOB_UNKNOWN if what == "blob" else ErrorCode.MANIFEST_UNKNOWN
            key = "digest" if what == "blob" else "reference"
            return RegistryError(code, f"the upstream has no such {what}", detail={key: str(ref), **detail})
        if exc.kind == "ratelimited":
            return RegistryError(ErrorCode.TOOMANYREQUESTS, "the upstream is rate limiting this cache; retry later",
                                 detail=detail, headers={"Retry-After": exc.retry_after or "60"})
        if exc.kind == "denied":
            return RegistryError(ErrorCode.DENIED, "the upstream refused this cache access: the repository does not "
                                 "exist there, or the cache's credentials may not pull it", detail=detail)
        if exc.kind == "unavailable":
            return RegistryError(ErrorCode.UNAVAILABLE, "the upstream is unreachable and this content is not cached",
                                 detail=detail, headers={"Retry-After": "10"})
        log.warning("proxy: an unusable answer from the upstream for %s %s: %s", what, ref, exc)
        return RegistryError(ErrorCode.UNKNOWN, f"the upstream's answer was unusable: {exc}"[:300], detail=detail,
                             status=502)


def _parse_upstream_manifest(body: bytes, content_type: str, expected: Digest | None) -> mf.Manifest:
    """The upstream's manifest, checked as strictly as a push and matched against ``expected``;
    a manifest our push rules would refuse is still cached when it is a known kind (the upstream
    accepted it, and clients expect what it serves)."""
    try:
        return mf.parse_manifest(body, content_type or None, schema1_enabled=True, max_size=len(body) + 1,
                                 expected_digest=expected)
    except RegistryError as err:
        if err.code is ErrorCode.DIGEST_INVALID:
            raise UpstreamError("invalid", f"the upstream's manifest does not match its digest {expected}") from None
        media_type = mf.detect_media_type(body)
        if media_type not in mt.MANIFEST_MEDIA_TYPES or media_type in mt.SCHEMA1_MEDIA_TYPES:
            raise UpstreamError("invalid", f"the upstream's manifest is not valid: {err.message}") from None
    algorithm = expected.algorithm if expected is not None else "sha256"
    digest = mf.manifest_digest(body, media_type, algorithm)
    if expected is not None and digest != str(expected):
        raise UpstreamError("invalid", f"the upstream's manifest does not match its digest {expected}")
    return mf.parse_stored(body, digest)
