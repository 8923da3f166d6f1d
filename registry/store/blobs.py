"""Blobs: content-addressed data shared by all repositories, visible in a repository via a link."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from drivers.base import ContentWrite, InvalidOffset, PathNotFound, StorageDriver

from ..errors import ErrorCode, RegistryError
from ..reference import Digest, is_valid_name, try_digest
from . import paths
from .uses import Barrier, blob_key, guarded

#: a mount without ``from`` checks at most this many of the repositories a token lets the caller pull
MAX_MOUNT_CANDIDATES = 64

if TYPE_CHECKING:
    from ..events.notifier import Notifier
    from ..state.cache import DescriptorCache


@dataclasses.dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    #: the driver path of the bytes
    path: str


def blob_unknown(d: Digest) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(d)})


class BlobStore:
    def __init__(self, driver: StorageDriver, events: "Notifier | None" = None,
                 cache: "DescriptorCache | None" = None) -> None:
        self.driver = driver
        #: the blob descriptor cache (``storage.cache.blobdescriptor``), None when off
        self.cache = cache
        if events is None:
            from ..events.notifier import Notifier

            events = Notifier()
        self.events = events
        #: keeps a running garbage collection off what pushes use (registry.lifecycle.Barrier)
        self.barrier: Barrier | None = None

    # --- global content ----------------------------------------------------------------------
    async def stat_data(self, d: Digest) -> BlobInfo | None:
        """The blob's data if it exists anywhere in the registry."""
        path = paths.blob_data(d)
        try:
            info = await self.driver.stat(path)
        except PathNotFound:
            return None
        if info.is_dir:
            return None
        return BlobInfo(d, info.size, path)

    async def put_small(self, d: Digest, data: bytes) -> None:
        """Store small content (a manifest) under its digest unless exactly it is already there
        (a read is cheaper than a durable write, and a lost or damaged copy gets rewritten)."""
        write = await self.small_write(d, data)
        if write is not None:
            await self.driver.put_contents([[write]])

    async def small_write(self, d: Digest, data: bytes) -> ContentWrite | None:
        """The write :meth:`put_small` would make (None when the same bytes are stored), for a
        caller that batches it with others."""
        try:
            if await self.driver.get_content(paths.blob_data(d)) == data:
                return None
        except PathNotFound:
            pass
        return ContentWrite(paths.blob_data(d), data)

    async def get_small(self, d: Digest) -> bytes:
        return await self.driver.get_content(paths.blob_data(d))

    # --- repository links ----------------------------------------------------------------------
    async def is_linked(self, repo: str, d: Digest) -> bool:
        try:
            await self.driver.stat(paths.layer_link(repo, d))
            return True
        except PathNotFound:
            return False

    async def link(self, repo: str, d: Digest) -> None:
        """Make blob ``d`` visible in ``repo`` (its data must be written first), and note ``repo``
        as the blob's latest linker (the hint :meth:`mount_any` follows; a stale or lost hint is
        harmless, so it need not be durable). One batch: durable when it returns."""
        await self.driver.put_contents([[
            ContentWrite(paths.layer_link(repo, d), str(d).encode()),
            ContentWrite(paths.blob_linked_from(d), repo.encode(), durable=False),
        ]])

    async def stat(self, repo: str, d: Digest) -> BlobInfo:
        """The blob as seen from ``repo``: BLOB_UNKNOWN unless linked there and present (from
        the descriptor cache when it is on)."""
        generation = -1
        if self.cache is not None:
            size, generation = await self.cache.layer_size(repo, d)
            if size is not None:
                return BlobInfo(d, size, paths.blob_data(d))
        try:
            target = try_digest((await self.driver.get_content(paths.layer_link(repo, d))).decode("ascii", "replace"))
        except PathNotFound:
            raise blob_unknown(d) from None
        info = await self.stat_data(target or d)
        if info is None:
            raise blob_unknown(d)
        if self.cache is not None and info.path == paths.blob_data(d):
            await self.cache.fill_layer(repo, d, info.size, generation)
        return BlobInfo(d, info.size, info.path)

    async def find(self, repo: str, d: Digest) -> BlobInfo:
        """The blob as a pusher checks for it (HEAD): :meth:`stat`, guarded so that a running
        garbage collection keeps it; a link older than the barrier's ``refresh`` is rewritten,
        so a push that found it before a collection started has the collection's whole grace."""
        async def use() -> BlobInfo:
            info = await self.stat(repo, d)
            if self.barrier is not None:
                await self._refresh_link(repo, d)
            return info

        return await guarded(self.barrier, [blob_key(d)], use)

    async def _refresh_link(self, repo: str, d: Digest) -> None:
        assert self.barrier is not None
        path = paths.layer_link(repo, d)
        try:
            modified = (await self.driver.stat(path)).modified
        except PathNotFound:
            return
        if modified is not None:
            age = (dt.datetime.now(dt.timezone.utc) - modified).total_seconds()
            await self.barrier.refresh_link(path, age, str(d).encode())

    async def open(self, repo: str, d: Digest, *, head: bool = False) -> BlobInfo:
        """The blob of ``repo`` a client is about to read (a pull): :meth:`stat` (:meth:`find` for
        a HEAD, how pushers check for a blob), then the event."""
        info = await (self.find(repo, d) if head else self.stat(repo, d))
        if self.events.active:
            await self.events.blob_pulled(repo, str(d), info.size)
        return info

    async def mount(self, repo: str, d: Digest, source_repo: str) -> BlobInfo | None:
        """Link ``d`` into ``repo`` when ``source_repo`` has it; None otherwise."""
        async def use() -> BlobInfo | None:
            try:
                found = await self.stat(source_repo, d)
            except RegistryError:
                return None
            await self.link(repo, d)
            return found

        info = await guarded(self.barrier, [blob_key(d)], use)
        if info is None:
            return None
        if self.events.active:
            await self.events.blob_mounted(repo, str(d), info.size, source_repo)
        return info

    async def mount_any(self, repo: str, d: Digest, pullable: Sequence[str] | None) -> BlobInfo | None:
        """A mount without ``from``: link ``d`` into ``repo`` when a repository the caller may pull
        has it linked; None otherwise. ``pullable`` names those repositories (a token's grants), or
        is None when the caller may pull every repository.

        Never a scan: ``repo`` itself is checked, then the blob's latest linker (one read), then at
        most :data:`MAX_MOUNT_CANDIDATES` of ``pullable``. A candidate counts only when the blob is
        linked there: data alone (a layer deleted everywhere and awaiting collection, a manifest's
        bytes) is never mounted, and a repository outside ``pullable`` is never looked at.
        """
        return await guarded(self.barrier, [blob_key(d)], lambda: self._mount_any(repo, d, pullable))

    async def _mount_any(self, repo: str, d: Digest, pullable: Sequence[str] | None) -> BlobInfo | None:
        try:
            return await self.stat(repo, d)
        except RegistryError:
            pass
        candidates: list[str] = []
        hint = await self._linked_from(d)
        if hint is not None and hint != repo and (pullable is None or hint in pullable):
            candidates.append(hint)
        if pullable is not None:
            candidates += [n for n in dict.fromkeys(pullable) if n != repo and n != hint][:MAX_MOUNT_CANDIDATES]
        limit = asyncio.Semaphore(8)

        async def linked(source: str) -> BlobInfo | None:
            async with limit:
                try:
                    return await self.stat(source, d)
                except RegistryError:
                    return None

        for source, found in zip(candidates, await asyncio.gather(*(linked(c) for c in candidates))):
            if found is not None:
                await self.link(repo, d)
                if self.events.active:
                    await self.events.blob_mounted(repo, str(d), found.size, source)
                return found
        return None

    async def _linked_from(self, d: Digest) -> str | None:
        try:
            name = (await self.driver.get_content(paths.blob_linked_from(d))).decode("utf-8", "replace")
        except PathNotFound:
            return None
        return name if is_valid_name(name) else None

    async def unlink(self, repo: str, d: Digest) -> None:
        """Remove ``d`` from ``repo`` (the data stays for the garbage collector); with the cache
        on, every instance forgets it at once (503 before anything changes when it cannot)."""
        if self.cache is not None:
            await _dropping(self.cache.before_delete(_scope(repo), f"l:{d}"))
        try:
            await self.driver.delete(paths.layer_link(repo, d))
        except PathNotFound:
            raise blob_unknown(d) from None
        finally:
            if self.cache is not None:
                await self.cache.after_delete(_scope(repo), f"l:{d}")
        if self.events.active:
            await self.events.blob_deleted(repo, str(d))

    # --- reading -----------------------------------------------------------------------------------
    async def redirect_url(self, info: BlobInfo, method: str = "GET") -> str | None:
        return await self.driver.redirect_url(info.path, method)

    def local_path(self, info: BlobInfo) -> str | None:
        return self.driver.local_path(info.path)

    async def read(self, info: BlobInfo, start: int = 0, length: int | None = None,
                   chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all when None) from ``start``."""
        remaining = info.size - start if length is None else length
        if remaining <= 0:
            return
        try:
            async for chunk in self.driver.reader(info.path, start, chunk_size=chunk_size):
                if len(chunk) >= remaining:
                    yield chunk[:remaining] if len(chunk) > remaining else chunk
                    return
                remaining -= len(chunk)
                yield chunk
        except (PathNotFound, InvalidOffset):
            raise blob_unknown(info.digest) from None


def _scope(repo: str) -> str:
    from ..state.cache import repo_scope

    return repo_scope(repo)


async def _dropping(drop: Any) -> None:
    """Await a cache drop that must reach every instance before a delete: 503 when it cannot."""
    from ..state import StateUnavailable

    try:
        await drop
    except StateUnavailable as exc:
        raise exc.to_registry_error("a delete (with the blob descriptor cache on)") from None
