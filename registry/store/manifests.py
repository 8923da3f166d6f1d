"""Manifests in a repository: revision links, tags and referrers, written in a crash-safe order.

PUT: manifest bytes and reverse-index marker or entries -> revision link -> tags' current links
and index links (all or none), referrers and catalog entries, in one batch of the driver
(:meth:`~drivers.base.StorageDriver.put_contents`: stage after stage, the durable files fsynced
together; index entries, which can be rebuilt, are not made durable on their own). DELETE by digest: its tags -> signed
bytes -> revision link -> (tags again) -> referrers entry -> reverse index. A crash between any
two writes leaves either nothing visible or a visible, consistent manifest (index entries may be
stale; a manifest whose reverse index is gone is treated like one the reference registry stored,
and re-indexed).

Linearizable per repository: in one process, :class:`~registry.store.locks.RepositoryLocks`
orders the operations (a PUT holds its tags, a delete by digest the whole repository). Between
processes on one storage the order of writes and two re-checks keep every outcome one that some
order of the operations would give, and never leave a tag pointing at a deleted manifest:

- a tagging PUT writes the reverse entries before the current links, and after them checks that
  the revision link, the tags and their reverse entries are still there; when a delete removed
  one meanwhile, it writes them again (the PUT then counts as after the delete);
- a delete by digest, after removing the revision link, looks once more for tags that point at
  the manifest (through reverse entries, which a racing PUT wrote before its current links) and
  removes them (the PUT then counts as before the delete); removing the reverse index last, it
  re-reads each entry's tag and keeps the entries of tags that point at the manifest again.

Whichever of the two runs its check later sees the other's write. What needs a lock shared
between processes is only this: a tag *moved* to another manifest by another process in the
instant between a delete's last read of that tag and the removal of its current link is removed
with the old manifest's tags (never left dangling).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

from drivers.base import ContentWrite, PathNotFound, StorageDriver

from .. import manifests as mf
from .. import mediatypes as mt
from ..errors import ErrorCode, RegistryError
from ..reference import Digest, try_digest
from . import paths
from .blobs import BlobStore
from .catalog import Catalog
from .locks import RepositoryLocks, tag_key
from .referrers import ReferrerStore
from .tags import TagStore, manifest_unknown
from .uses import blob_key, guarded
from .uses import tag_key as claim_tag_key


log = logging.getLogger(__name__)

#: rounds a tagging PUT writes again when deletes from other processes keep removing its manifest
WRITE_ROUNDS = 8


@dataclasses.dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    body: bytes
    media_type: str


class ManifestStore:
    def __init__(self, driver: StorageDriver, blobs: BlobStore, tags: TagStore, referrers: ReferrerStore,
                 events: Any = None, locks: RepositoryLocks | None = None,
                 catalog: Catalog | None = None, immutability: Any = None) -> None:
        self.driver = driver
        #: the catalog index, told of each repository a manifest is stored in
        self.catalog = catalog
        #: tags that may not move or go (registry.lifecycle.rules.ImmutabilityPolicy; None: none)
        self.immutability = immutability if immutability else None
        self.blobs = blobs
        self.tags = tags
        self.referrers = referrers
        #: orders this repository's manifest and tag operations in this process
        self.locks = locks or RepositoryLocks()
        #: told of each completed push, pull and delete (registry.events.notifier.Notifier)
        self.events = events if events is not None else blobs.events

    async def exists(self, repo: str, d: Digest) -> bool:
        try:
            await self.driver.stat(paths.revision_link(repo, d))
            return True
        except PathNotFound:
            return False

    async def resolve(self, repo: str, ref: str | Digest) -> Digest:
        """The digest of a tag or digest reference that names a manifest of ``repo`` (its
        revision link from the descriptor cache when it is on: this is the pull path)."""
        d = ref if isinstance(ref, Digest) else await self.tags.resolve(repo, ref)
        cache = self.blobs.cache
        generation = -1
        if cache is not None:
            hit, generation = await cache.has_revision(repo, d)
            if hit:
                return d
        if not await self.exists(repo, d):
            raise manifest_unknown(ref)
        if cache is not None:
            await cache.fill_revision(repo, d, generation)
        return d

    async def _body(self, d: Digest) -> bytes:
        cache = self.blobs.cache
        if cache is None:
            return await self.blobs.get_small(d)
        body, generation = await cache.manifest_body(d)
        if body is None:
            body = await self.blobs.get_small(d)
            await cache.fill_manifest_body(d, body, generation)
        return body

    async def get(self, repo: str, ref: str | Digest) -> StoredManifest:
        """The manifest a client pulls (the pull event is emitted here)."""
        stored = await self.read(repo, ref)
        events = self.events
        count = events.count_manifest_pull
        if count is not None:  # metrics on, no endpoints: a pull is only counted
            count(stored.media_type)
        elif events.active:
            await events.manifest_pulled(repo, stored, None if isinstance(ref, Digest) else ref)
        return stored

    async def find(self, repo: str, ref: str | Digest) -> StoredManifest:
        """The manifest as a pusher checks for it (HEAD): guarded so that a running garbage
        collection keeps it, and its revision link refreshed when older than the barrier's
        ``refresh`` (see :meth:`BlobStore.find`)."""
        barrier = self.blobs.barrier
        if barrier is None:
            return await self.read(repo, ref)
        d = ref if isinstance(ref, Digest) else await self.tags.resolve(repo, ref)

        async def use() -> StoredManifest:
            stored = await self.read(repo, d)
            link = paths.revision_link(repo, d)
            try:
                modified = (await self.driver.stat(link)).modified
            except PathNotFound:
                modified = None
            if modified is not None:
                age = (dt.datetime.now(dt.timezone.utc) - modified).total_seconds()
                await barrier.refresh_link(link, age, str(d).encode())
            return stored

        return await guarded(barrier, [blob_key(d)], use)

    async def read(self, repo: str, ref: str | Digest) -> StoredManifest:
        """The manifest as the registry itself reads it (the web UI): checked against its digest,
        neither counted nor notified as a pull."""
        d = await self.resolve(repo, ref)
        try:
            body = await self._body(d)
        except PathNotFound:
            raise manifest_unknown(ref) from None
        media_type = mf.detect_media_type(body)
        if mf.manifest_digest(body, media_type, d.algorithm) != str(d):  # damaged on disk: never serve it
            log.error("repository %s: stored manifest %s does not match its digest", repo, d)
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, "the stored manifest is damaged (digest mismatch)",
                                detail={"digest": str(d)})
        if media_type in mt.SCHEMA1_MEDIA_TYPES:
            try:  # we keep a signed manifest's original bytes beside its revision link
                body = await self.driver.get_content(paths.signed_manifest(repo, d))
                media_type = mf.detect_media_type(body)
            except PathNotFound:
                pass
        return StoredManifest(d, body, media_type)

    async def put(self, repo: str, manifest: mf.Manifest, tags: Sequence[str] = (), *,
                  child_required: Callable[[dict[str, Any] | None], bool] | None = None,
                  check_references: bool = True) -> Digest:
        """Store a validated manifest after checking what it references exists in ``repo``, and
        point every tag of ``tags`` at it, all or none (:meth:`TagStore.point_all`). Index children
        must exist unless ``child_required`` (validation.manifests.indexes) says otherwise.
        ``check_references=False``: the pull-through cache stores a manifest before the blobs
        and children it names, which it fetches when they are asked for.

        Writes go in stages of one batch (one worker-thread hop and two journal commits on local
        disk): [bytes, signed bytes, reverse-index entries or marker] -> revision link -> [the
        tags' current links and index links, referrers entry, catalog index entry].
        """
        d = try_digest(manifest.digest)
        assert d is not None
        tags = list(dict.fromkeys(tags))
        # what this push relies on: a running garbage collection must keep all of it
        claims = [blob_key(d), *(blob_key(x.digest) for x in manifest.required_blobs()),
                  *(blob_key(x.digest) for x in manifest.required_manifests()), *(claim_tag_key(repo, t) for t in tags)]
        async with self.locks.shared(repo, *(tag_key(t) for t in tags)):
            await guarded(self.blobs.barrier, claims,
                          lambda: self._put(repo, manifest, d, tags, child_required, check_references))
        if self.events.active:
            for tag in tags or [None]:
                await self.events.manifest_pushed(repo, manifest, tag)
        return d

    async def _put(self, repo: str, manifest: mf.Manifest, d: Digest, tags: list[str],
                   child_required: Callable[[dict[str, Any] | None], bool] | None, check_references: bool) -> None:
        exists, _, _ = await asyncio.gather(
            self.exists(repo, d),
            self._check_references(repo, manifest, child_required) if check_references else asyncio.sleep(0),
            self._check_immutable(repo, d, tags),
        )
        for attempt in range(WRITE_ROUNDS):
            moved = await self._write(repo, manifest, d, tags, exists, rewrite=attempt > 0)
            if not moved or await self._intact(repo, d, moved):
                return
            log.info("repository %s: %s was deleted while it was tagged; writing again", repo, d)
            exists = False
        raise RegistryError(
            ErrorCode.UNAVAILABLE,
            "the manifest kept being deleted while it was tagged; retry",
            detail={"digest": str(d)},
            headers={"Retry-After": "1"},
        )

    async def _check_immutable(self, repo: str, d: Digest | None, tags: Sequence[str]) -> None:
        """DENIED when an immutable tag would move to another manifest (``d``) or go (``d`` None);
        pushing the manifest it names again is fine."""
        if self.immutability is None:
            return
        ruled = [(t, r) for t in tags if (r := self.immutability.rule_for(repo, t)) is not None]
        currents = await asyncio.gather(*(self.tags.current(repo, t) for t, _ in ruled))
        for (tag, rule), current in zip(ruled, currents):
            if current is not None and current != d:
                raise _immutable(repo, tag, current, rule, "deleted" if d is None else "moved")
    async def _intact(self, repo: str, d: Digest, tags: Sequence[str]) -> bool:
        """After the tags' writes: a delete in another process took nothing from under them (the
        manifest, a tag, or a tag's reverse entry); a tag moved on by another PUT is fine."""
        if not await self.exists(repo, d):
            return False
        for tag in tags:
            current = await self.tags.current(repo, tag)
            if current is None or (current == d and not await self.tags.has_reverse_entry(repo, tag, d)):
                return False
        return True

    async def _write(self, repo: str, manifest: mf.Manifest, d: Digest, tags: Sequence[str], exists: bool,
                     *, rewrite: bool = False) -> list[str]:
        """One round of writes; returns the tags whose links were written (they need the re-check).
        ``rewrite``: write them even when they already name ``d`` (a delete may have removed their
        reverse entries)."""
        currents = await asyncio.gather(*(self.tags.current(repo, t) for t in tags))
        #: the tags that move (or appear), with the digest each pointed at before
        moves = {t: prev for t, prev in zip(tags, currents) if rewrite or prev != d}
        # signed schema 1: the canonical payload at the digest path, as the reference stores it;
        # written (or checked) even when the revision exists: the data may have been lost since
        first: list[ContentWrite] = []
        blob = await self.blobs.small_write(d, manifest.canonical if manifest.canonical is not None else manifest.body)
        if blob is not None:
            first.append(blob)
        if manifest.canonical is not None:
            first.append(ContentWrite(paths.signed_manifest(repo, d), manifest.body))
        if not exists and not moves:
            first.append(self.tags.marker_write(repo, d))
        if moves:
            if exists and not await self.tags.indexed(repo, d):
                await self.tags.adopt(repo, {d})  # stored by the reference: index its tags first
            first += [self.tags.reverse_entry_write(repo, t, d) for t in moves]
        second = [] if exists else [ContentWrite(paths.revision_link(repo, d), str(d).encode())]
        third: list[ContentWrite] = []
        subject = try_digest(manifest.subject.digest) if manifest.subject else None
        if subject is not None:  # also on a re-push: completes an entry a crash left out
            third.append(self.referrers.entry_write(repo, subject, d, manifest.referrer_descriptor().to_dict()))
        # after the revision link: an entry implies the repository
        entry = self.catalog.record_write(repo) if self.catalog is not None else None
        if entry is not None:
            third.append(entry)
        # one batch: [bytes, reverse entries] -> revision link -> [tags, referrers and catalog entries]
        if moves:
            await self.tags.point_all(repo, d, moves, before=[first, second], also=third)
        else:
            await self.driver.put_contents([stage for stage in (first, second, third) if stage])
        if entry is not None:
            self.catalog.recorded(repo)
        elif self.catalog is not None:
            await self.catalog.record(repo)  # the first entry of a new index (or written lately: nothing)
        return list(moves)

    async def _check_references(self, repo: str, manifest: mf.Manifest,
                                child_required: Callable[[dict[str, Any] | None], bool] | None = None) -> None:
        """Blobs must be linked here; index children must be manifests here, those whose platform
        ``child_required`` (validation.manifests.indexes) names when given (sparse indexes)."""
        limit = asyncio.Semaphore(16)

        async def blob_missing(desc: mf.Descriptor) -> str | None:
            d = try_digest(desc.digest)
            async with limit:
                if d is None or not await self.blobs.is_linked(repo, d):
                    return desc.digest
            return None

        async def child_missing(desc: mf.Descriptor) -> str | None:
            d = try_digest(desc.digest)
            async with limit:
                if d is None or not await self.exists(repo, d):
                    return desc.digest
            return None

        missing = await asyncio.gather(
            *(blob_missing(b) for b in manifest.required_blobs()),
            *(child_missing(m) for m in manifest.required_manifests()
              if child_required is None or child_required(m.platform)),
        )
        unknown = [m for m in missing if m is not None]
        if unknown:
            raise RegistryError(
                ErrorCode.MANIFEST_BLOB_UNKNOWN,
                "manifest references content unknown to this repository",
                detail={"digests": unknown[:20]},
            )

    async def delete(self, repo: str, ref: str | Digest) -> list[str]:
        """By tag: untag only. By digest: its tags, then the manifest. Returns the tags removed."""
        if not isinstance(ref, Digest):
            async with self.locks.shared(repo, tag_key(ref)):
                await self._check_immutable(repo, None, [ref])
                await self.tags.untag(repo, ref)
            if self.events.active:
                await self.events.tag_deleted(repo, ref)
            return [ref]
        async with self.locks.exclusive(repo):
            cache = self.blobs.cache
            if cache is None:
                removed = await self._delete_digest(repo, ref)
            else:
                from ..state.cache import repo_scope
                from .blobs import _dropping

                await _dropping(cache.before_delete(repo_scope(repo), f"r:{ref}"))
                try:
                    removed = await self._delete_digest(repo, ref)
                finally:
                    await cache.after_delete(repo_scope(repo), f"r:{ref}")
        if self.events.active:  # as distribution: the manifest, then each tag that pointed at it
            await self.events.manifest_deleted(repo, str(ref))
            for tag in removed:
                await self.events.tag_deleted(repo, tag)
        return removed

    async def _delete_digest(self, repo: str, d: Digest) -> list[str]:
        stored = await self.read(repo, d)
        if self.immutability is not None and self.immutability.covers_repository(repo):
            await self._check_immutable(repo, None, await self.tags.tags_of(repo, d))
        removed = await self.tags.untag_digest(repo, d)
        try:
            await self.driver.delete(paths.signed_manifest(repo, d))
        except PathNotFound:
            pass
        try:
            await self.driver.delete(paths.revision_link(repo, d))
        except PathNotFound:
            raise manifest_unknown(d) from None  # another process deleted it first
        # a tagging PUT in another process may have pointed a tag at it meanwhile (it wrote the
        # reverse entry first, which is why the reverse index goes last): that tag goes too
        removed += await self.tags.untag_digest(repo, d, scan=False)
        parsed = mf.parse_stored(stored.body, str(d))
        subject = try_digest(parsed.subject.digest) if parsed.subject else None
        if subject is not None:
            await self.referrers.remove(repo, subject, d)
        await self.tags.drop_reverse_index(repo, d)
        return removed


def _immutable(repo: str, tag: str, current: Digest, rule: Any, verb: str) -> RegistryError:
    return RegistryError(
        ErrorCode.DENIED,
        f"tag {tag} of {repo} is immutable: it names {current} and cannot be {verb} "
        "(pushing that same manifest again is allowed)",
        detail={"repository": repo, "tag": tag, "digest": str(current), "rule": rule.describe()},
    )
