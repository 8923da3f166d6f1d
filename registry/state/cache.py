"""The blob descriptor cache (``storage.cache.blobdescriptor: inmemory | redis``) over :class:`State`.

What it remembers, so pulls skip storage round trips (a blob HEAD costs two requests on S3, a
manifest GET three):

- per repository (scope ``repo:<name>``): ``l:<digest>`` a linked layer and its size (blob
  HEAD/GET, manifest PUT reference checks), ``r:<digest>`` a manifest revision link;
- globally (scope ``blobs``): ``m:<digest>`` the bytes of a small manifest. Content is
  immutable per digest; whether a repository holds it is always asked of ``r:<digest>`` first,
  and the bytes are checked against the digest on every use.

Misses are not cached. Tags are not cached (they move; a tag read is one request).

Invalidation: a delete drops the entry *before* it touches storage (Redis down: the delete is
refused with 503 and nothing changes) and once more after; every instance sees the drop at once,
because there is one cache. A fill is conditional on the scope's generation read before the
storage read, so a reader that looked at storage before a delete can never put back what the
delete removed. If the second drop fails (Redis went away in between), this instance keeps it
and bypasses the cache until the drop went through.

Writers that bypass this registry (the reference registry, a garbage collector that does not
call :meth:`DescriptorCache.forget_repository`/``forget_blob``) must not delete from a bucket
whose cache is on, as with distribution's cache.
"""

from __future__ import annotations

import logging
import time

from ..reference import Digest
from . import State, StateUnavailable

log = logging.getLogger(__name__)

BLOBS_SCOPE = "blobs"
#: manifests up to this size are cached whole
MAX_CACHED_MANIFEST = 256 * 1024
#: seconds between attempts to deliver a drop that failed
RETRY_PENDING = 1.0


def repo_scope(repo: str) -> str:
    return f"repo:{repo}"


class DescriptorCache:
    def __init__(self, state: State) -> None:
        self.state = state
        #: drops that did not reach the backend yet: (scope, fields); the cache is bypassed meanwhile
        self._pending: list[tuple[str, tuple[str, ...]]] = []
        self._next_retry = 0.0
        self.hits = 0
        self.misses = 0

    # --- reads (never raise) -----------------------------------------------------------------

    async def _lookup(self, scope: str, field: str) -> tuple[bytes | None, int]:
        if self._pending and not await self._flush():
            return None, -1
        try:
            value, generation = await self.state.cache_get(scope, field)
        except StateUnavailable:
            return None, -1
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value, generation

    async def _fill(self, scope: str, field: str, value: bytes, generation: int) -> None:
        if generation < 0:
            return
        try:
            await self.state.cache_fill(scope, field, value, generation)
        except StateUnavailable:
            pass

    async def layer_size(self, repo: str, d: Digest) -> tuple[int | None, int]:
        value, generation = await self._lookup(repo_scope(repo), f"l:{d}")
        return (int(value) if value is not None else None), generation

    async def fill_layer(self, repo: str, d: Digest, size: int, generation: int) -> None:
        await self._fill(repo_scope(repo), f"l:{d}", str(size).encode(), generation)

    async def has_revision(self, repo: str, d: Digest) -> tuple[bool, int]:
        value, generation = await self._lookup(repo_scope(repo), f"r:{d}")
        return value is not None, generation

    async def fill_revision(self, repo: str, d: Digest, generation: int) -> None:
        await self._fill(repo_scope(repo), f"r:{d}", b"1", generation)

    async def manifest_body(self, d: Digest) -> tuple[bytes | None, int]:
        return await self._lookup(BLOBS_SCOPE, f"m:{d}")

    async def fill_manifest_body(self, d: Digest, body: bytes, generation: int) -> None:
        if len(body) <= MAX_CACHED_MANIFEST:
            await self._fill(BLOBS_SCOPE, f"m:{d}", body, generation)

    # --- invalidation (raise StateUnavailable when the drop cannot be delivered) -------------

    async def before_delete(self, scope: str, *fields: str) -> None:
        """Drop before a delete: raises StateUnavailable (the caller answers 503, deleting
        nothing) when the drop cannot reach every instance."""
        await self.state.cache_drop(scope, fields)

    async def after_delete(self, scope: str, *fields: str) -> None:
        """Drop again after the delete (a fill that raced the delete is undone); kept and
        retried when the backend went away in between."""
        try:
            await self.state.cache_drop(scope, fields)
        except StateUnavailable:
            log.warning("cache: an invalidation after a delete did not reach Redis; this instance "
                        "bypasses the cache until it does")
            self._pending.append((scope, fields))

    async def _flush(self) -> bool:
        if time.monotonic() < self._next_retry:
            return False
        while self._pending:
            scope, fields = self._pending[0]
            try:
                await self.state.cache_drop(scope, fields)
            except StateUnavailable:
                self._next_retry = time.monotonic() + RETRY_PENDING
                return False
            self._pending.pop(0)
        return True

    async def forget_repository(self, repo: str) -> None:
        """Everything cached about ``repo`` (a whole repository deleted): before and after."""
        await self.state.cache_drop(repo_scope(repo))

    async def forget_blob(self, d: Digest) -> None:
        """A blob's data deleted (garbage collection): its cached manifest bytes."""
        await self.state.cache_drop(BLOBS_SCOPE, (f"m:{d}",))
