"""The one place events come from: the store calls :class:`Notifier` when an operation completes.

``await notifier.emit(...)`` counts the push or pull (``registry_pushes_total``,
``registry_pulls_total``), builds distribution's event from the operation and the current request
(:mod:`registry.observe.context`) and queues it durably for every endpoint that wants it before
returning, so the client's success answer is sent only once its events are in the storage.
Emits that arrive while a write is in flight share the next write (group commit): one storage
write per endpoint per batch, however many requests are running. A ``HEAD`` is not a pull.
If the outbox cannot be written the operation still succeeds; the loss is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..observe import context as request_context
from ..observe.context import CURRENT, new_request_id
from ..observe.metrics import METRICS
from . import model
from .config import EndpointConfig, NotificationsConfig

if TYPE_CHECKING:
    from .outbox import Outbox

log = logging.getLogger(__name__)

UrlFor = Callable[[Any, str], str]


class Notifier:
    """Emits events for store operations; without endpoints it only counts."""

    def __init__(self, config: NotificationsConfig | None = None, outboxes: "dict[str, Outbox] | None" = None,
                 *, source: dict[str, str] | None = None, url_for: UrlFor | None = None,
                 metrics: bool = False) -> None:
        self.config = config or NotificationsConfig()
        self.endpoints: list[EndpointConfig] = self.config.active if outboxes else []
        self._by_key = {e.key: e for e in self.endpoints}
        self.outboxes = outboxes or {}
        self.source = source or {}
        self.url_for = url_for
        self.metrics = metrics
        self.include_references = self.config.include_references
        #: whether emits do anything (the store skips the call otherwise)
        self.active = bool(self.endpoints) or metrics
        #: with metrics on and no endpoints, all a manifest pull does: count its media type (a
        #: list's append, a C call: the hot path of a manifest GET); else None
        self.count_manifest_pull: Callable[[str], None] | None = \
            METRICS.pulls.tally(("manifest",)).append if metrics and not self.endpoints else None
        self._pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: called with the endpoint names that got new events (wakes their delivery)
        self.on_queued: Callable[[set[str]], None] | None = None

    # --- what the store calls ---------------------------------------------------------------------

    async def blob_pushed(self, repo: str, digest: str, size: int) -> None:
        await self.emit("push", "blob", repo, media_type=model.BLOB_MEDIA_TYPE, digest=digest, size=size)

    async def blob_mounted(self, repo: str, digest: str, size: int, from_repo: str) -> None:
        await self.emit("mount", "blob", repo, media_type=model.BLOB_MEDIA_TYPE, digest=digest, size=size,
                        from_repo=from_repo)

    async def blob_pulled(self, repo: str, digest: str, size: int) -> None:
        await self.emit("pull", "blob", repo, media_type=model.BLOB_MEDIA_TYPE, digest=digest, size=size)

    async def blob_deleted(self, repo: str, digest: str) -> None:
        await self.emit("delete", "blob", repo, digest=digest)

    async def manifest_pushed(self, repo: str, manifest: Any, tag: str | None) -> None:
        await self.emit("push", "manifest", repo, media_type=manifest.media_type, digest=str(manifest.digest),
                        size=manifest.size, tag=tag, manifest=manifest)

    async def manifest_pulled(self, repo: str, stored: Any, tag: str | None) -> None:
        """A GET of a manifest (``ManifestStore.get``; a HEAD goes through ``find``, in the
        pull-through cache too). Without endpoints the store calls :attr:`count_manifest_pull`
        instead."""
        await self.emit("pull", "manifest", repo, media_type=stored.media_type, digest=str(stored.digest),
                        size=len(stored.body), tag=tag, body=stored.body)

    async def manifest_deleted(self, repo: str, digest: str) -> None:
        await self.emit("delete", "manifest", repo, digest=digest)

    async def tag_deleted(self, repo: str, tag: str) -> None:
        await self.emit("delete", "tag", repo, tag=tag)

    async def repository_deleted(self, repo: str) -> None:
        await self.emit("delete", "repository", repo)

    # --- building and queueing ---------------------------------------------------------------------

    async def emit(self, action: str, kind: str, repo: str, *, media_type: str | None = None,
                   digest: str | None = None, size: int | None = None, tag: str | None = None,
                   from_repo: str | None = None, manifest: Any = None, body: bytes | None = None) -> None:
        request = CURRENT.get()
        if action == "pull" and request is not None and request.method == "HEAD":
            return
        if self.metrics and action in ("push", "pull") and kind in ("blob", "manifest"):
            counter = METRICS.pushes if action == "push" else METRICS.pulls
            counter.inc((kind, media_type or ""))
        wanted = [e for e in self.endpoints if e.wants(action, media_type)]
        if not wanted:
            return
        references = None
        if self.include_references and kind == "manifest" and action in ("push", "pull"):
            references = _references(manifest, body, digest)
        url = None
        if digest and kind in ("blob", "manifest") and action != "delete" and request is not None and self.url_for:
            url = self.url_for(request, f"{repo}/{'blobs' if kind == 'blob' else 'manifests'}/{digest}")
        event = model.new_event(
            action,
            model.target(repository=repo, media_type=media_type, digest=digest, size=size, url=url, tag=tag,
                         from_repository=from_repo, references=references),
            _request_record(request),
            _actor(request),
            self.source,
        )
        await self._queue(event, wanted)

    async def _queue(self, event: dict[str, Any], endpoints: list[EndpointConfig]) -> None:
        for ep in endpoints:
            self._pending[ep.key].append(event)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(waiter)

    async def _flush(self) -> None:
        while self._waiters:
            pending, self._pending = self._pending, defaultdict(list)
            waiters, self._waiters = self._waiters, []
            writes = []
            for key, events in pending.items():
                batch = self._by_key[key].maxbatch
                for i in range(0, len(events), batch):
                    writes.append((key, events[i : i + batch]))
            results = await asyncio.gather(*(self.outboxes[k].append(evs) for k, evs in writes),
                                           return_exceptions=True)
            queued: set[str] = set()
            for (key, events), result in zip(writes, results):
                name = self._name(key)
                if isinstance(result, BaseException):
                    METRICS.notifications_dropped.inc((name, "enqueue_failed"), len(events))
                    METRICS.notifications_events.inc((name, "dropped"), len(events))
                    log.error("notifications %s: could not queue %d event(s) (ids %s): %s", name, len(events),
                              ", ".join(e["id"] for e in events[:20]), result)
                else:
                    METRICS.notifications_events.inc((name, "queued"), len(events))
                    queued.add(key)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if queued and self.on_queued is not None:
                self.on_queued(queued)

    def _name(self, key: str) -> str:
        endpoint = self._by_key.get(key)
        return endpoint.name if endpoint is not None else key

    async def close(self) -> None:
        """Let a write in flight finish (its events are then in the storage)."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=10)


def _references(manifest: Any, body: bytes | None, digest: str | None) -> list[dict[str, Any]] | None:
    if manifest is None and body is not None:
        from ..manifests import parse_stored

        manifest = parse_stored(body, digest)
    if manifest is None:
        return None
    refs = ([manifest.config] if manifest.config else []) + list(manifest.layers) + list(manifest.children)
    return [d.to_dict() for d in refs] or None


def _request_record(request: Any) -> dict[str, Any]:
    if request is None:
        return model.request_record(request_id=new_request_id(), addr=None, host=None, method="", useragent="")
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else request.remote
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        addr = forwarded.split(",")[0].strip() or addr  # as distribution's RemoteAddr
    return model.request_record(
        request_id=request.get(request_context.REQUEST_ID_KEY) or new_request_id(), addr=addr, host=request.host,
        method=request.method, useragent=request.headers.get("User-Agent", ""),
    )


def _actor(request: Any) -> dict[str, Any]:
    if request is None:
        return {}
    from ..auth.middleware import ACCOUNT_KEY

    name = request.get(ACCOUNT_KEY)
    return {"name": name} if name else {}


def source_record(http_addr: str) -> dict[str, str]:
    """distribution's source: this host's name with the configured port, and an instance id."""
    _, _, port = http_addr.rpartition(":")
    host = socket.gethostname() or "localhost"
    return {"addr": f"{host}:{port}" if port else host, "instanceID": str(uuid.uuid4())}


def writer_id() -> str:
    """A short id for segment names: unique per process."""
    return f"{os.urandom(4).hex()}{os.getpid():x}"
