"""The registry's model of storage, over the driver contract only (no HTTP here).

:class:`Store` bundles the parts; handlers call one operation of one part per request:

- ``store.blobs``      :class:`~registry.store.blobs.BlobStore`: stat/link/mount/unlink/read
- ``store.uploads``    :class:`~registry.store.uploads.UploadStore`: start/resume/append/commit/cancel
- ``store.manifests``  :class:`~registry.store.manifests.ManifestStore`: get/put/delete
- ``store.tags``       :class:`~registry.store.tags.TagStore`: list/resolve/reindex
- ``store.referrers``  :class:`~registry.store.referrers.ReferrerStore`: list
- ``store.catalog``    :class:`~registry.store.catalog.Catalog`: list (the walk), names (the index)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from drivers.base import ContentWrite, PathNotFound, StorageDriver

from .. import manifests as mf
from ..errors import ErrorCode, RegistryError
from ..reference import Digest, try_digest
from . import paths
from .blobs import BlobInfo, BlobStore
from .catalog import Catalog
from .locks import RepositoryLocks
from .manifests import ManifestStore, StoredManifest
from .referrers import ReferrerStore
from .tags import TagStore
from .uploads import UploadSession, UploadStore

if TYPE_CHECKING:
    from ..events.notifier import Notifier
    from ..state import State

__all__ = ["BlobInfo", "Store", "StoredManifest", "UploadSession"]

#: seconds between two checks of a repository for manifests another registry stored
RECONCILE_INTERVAL = 30.0


class Store:
    def __init__(self, driver: StorageDriver, *, secret: str, events: "Notifier | None" = None,
                 state: "State | None" = None, cache: bool = False,
                 immutability: Any = None) -> None:
        """``state``: where leases (uploads, repositories) and the descriptor cache live
        (:mod:`registry.state`; this process when None). ``cache``: the blob descriptor cache on."""
        from ..events.notifier import Notifier
        from ..state.cache import DescriptorCache

        self.driver = driver
        if state is None:
            from ..state.config import StateConfig
            from ..state.local import LocalState

            state = LocalState(StateConfig())
        self.state = state
        #: told when an operation completes (push, pull, mount, delete): events and their metrics
        self.events = events if events is not None else Notifier()
        #: ``storage.cache.blobdescriptor`` (None when off)
        self.cache = DescriptorCache(state) if cache else None
        self.blobs = BlobStore(driver, self.events, self.cache)
        self._blob_store = self.blobs  # the parts' own (store.blobs may be wrapped, e.g. by the proxy)
        self.uploads = UploadStore(driver, self.blobs, secret, self.events, state)
        self.tags = TagStore(driver)
        self.referrers = ReferrerStore(driver, describe=self._describe_referrer)
        #: per-repository ordering of manifest and tag writes (leases in ``state``)
        self.locks = RepositoryLocks(state)
        self.catalog = Catalog(driver, state)
        self.manifests = ManifestStore(driver, self.blobs, self.tags, self.referrers, self.events, self.locks,
                                       self.catalog, immutability)
        self._reconciled: dict[str, float] = {}

    def set_barrier(self, barrier: Any) -> None:
        """Plug in the garbage collector's write barrier (registry.lifecycle.Barrier): every part
        guards its uses with it (see :mod:`registry.store.uses`)."""
        self._blob_store.barrier = barrier

    async def list_referrers(self, repo: str, subject: Digest, artifact_type: str | None = None) -> list[dict]:
        """The referrers of ``subject``, after indexing manifests another registry stored
        (checked at most every :data:`RECONCILE_INTERVAL` seconds per repository and process:
        the check lists every revision, which is slow on a bucket with many manifests)."""
        now = time.monotonic()
        if now - self._reconciled.get(repo, -RECONCILE_INTERVAL) >= RECONCILE_INTERVAL:
            try:
                async with self.locks.shared(repo):
                    await self.reconcile(repo)
            except RegistryError as exc:  # the shared state is away: a read still answers
                if exc.code is not ErrorCode.UNAVAILABLE:
                    raise
                return await self.referrers.list(repo, subject, artifact_type)
            self._reconciled[repo] = now
            if len(self._reconciled) > 10000:
                self._reconciled.clear()
        return await self.referrers.list(repo, subject, artifact_type)

    async def reconcile(self, repo: str) -> int:
        """Index the manifests of ``repo`` that the reference registry stored (they have no
        reverse-index directory): referrers entries first, then their tags and the marker.
        Costs two listings when there are none; each foreign manifest is indexed once."""
        foreign: set[Digest] = set()
        for algorithm in ("sha256", "sha512"):
            indexed = await self.tags.indexed_digests(repo, algorithm)
            for d in await self._revisions(repo, algorithm):
                if d.hex not in indexed:
                    foreign.add(d)
        for d in foreign:
            await self._index_referrer(repo, d)
        await self.tags.adopt(repo, foreign)
        return len(foreign)

    async def _describe_referrer(self, repo: str, d: Digest) -> dict | None:
        """The referrers-index descriptor of manifest ``d``, from its stored bytes."""
        try:
            body = await self.blobs.get_small(d)
            m = mf.parse_stored(body, str(d))
        except (PathNotFound, RegistryError):
            return None
        return m.referrer_descriptor().to_dict() if m.subject else None

    async def _index_referrer(self, repo: str, d: Digest) -> bool:
        try:
            body = await self.blobs.get_small(d)
        except PathNotFound:
            return False
        m = mf.parse_stored(body, str(d))
        subject = try_digest(m.subject.digest) if m.subject else None
        if subject is None:
            return False
        await self.referrers.add(repo, subject, d, m.referrer_descriptor().to_dict())
        return True

    async def rebuild_indexes(self, repo: str) -> dict[str, int]:
        """Recreate our indexes of ``repo`` (reverse tags, referrers, its catalog entry, the
        ``linkedfrom`` hints of its blobs) from the manifests and links, e.g. after the reference
        registry wrote to the same storage, or after a power cut took entries that are not made
        durable on their own. Idempotent."""
        revisions = await self._revisions(repo, "sha256") + await self._revisions(repo, "sha512")
        referrers = 0
        if revisions:
            await self.driver.put_contents([[self.tags.marker_write(repo, d) for d in revisions]])
        for d in revisions:
            referrers += await self._index_referrer(repo, d)
        tags = await self.tags.reindex(repo)
        if revisions:
            await self.catalog.record(repo, force=True)
        hints = await self._rebuild_hints(repo)
        return {"manifests": len(revisions), "tags": tags, "referrers": referrers, "hints": hints}

    async def _rebuild_hints(self, repo: str) -> int:
        """Write ``linkedfrom`` for the blobs linked in ``repo`` whose hint is missing or unreadable."""
        writes = []
        for algorithm in ("sha256", "sha512"):
            try:
                entries = await self.driver.list(f"{paths.layers_dir(repo)}/{algorithm}")
            except PathNotFound:
                continue
            for entry in entries:
                d = try_digest(f"{algorithm}:{paths.leaf(entry)}")
                if d is None or await self.blobs.stat_data(d) is None:
                    continue
                if await self.blobs._linked_from(d) is None:
                    writes.append(ContentWrite(paths.blob_linked_from(d), repo.encode(), durable=False))
        if writes:
            await self.driver.put_contents([writes])
        return len(writes)

    async def _revisions(self, repo: str, algorithm: str) -> list[Digest]:
        try:
            entries = await self.driver.list(paths.revisions_dir(repo, algorithm))
        except PathNotFound:
            return []
        found = (try_digest(f"{algorithm}:{paths.leaf(e)}") for e in entries)
        return [d for d in found if d is not None]

    async def forget_repository(self, repo: str) -> None:
        """Tell the descriptor cache that ``repo`` is gone (a repository delete or a collector's
        sweep: call before and after removing it). Raises StateUnavailable when it cannot."""
        if self.cache is not None:
            await self.cache.forget_repository(repo)

    async def forget_blob(self, d: Digest) -> None:
        """Tell the descriptor cache that blob ``d``'s data is gone (garbage collection)."""
        if self.cache is not None:
            await self.cache.forget_blob(d)
