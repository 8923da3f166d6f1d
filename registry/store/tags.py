"""Tags: distribution's ``current``/``index`` links, plus a reverse index digest -> tags.

The reverse index (``_tagsbydigest``) lets a delete by digest find the manifest's tags in
O(its own tags). Entries may be stale (the tag moved on or was deleted); every use re-checks the
tag's current link. A manifest with no entry at all (stored by the reference registry) falls back
to a scan of all tags. Tags the reference adds to a manifest we stored are not in it:
:meth:`TagStore.reindex` (``Store.rebuild_indexes``) rebuilds it.
Write order for a tag: reverse entry, current link, index link -- so a tag is listed only once it
resolves, and never without its reverse entry. (distribution writes the index link before the
current one; nothing in it depends on that order, and ours keeps a new tag out of listings until
it resolves, on every backend: the filesystem driver makes a new directory appear only with its
first file.) Deleted by tag, a tag is removed index first, current link last, so a crash in
between leaves a tag that still resolves; removed with its manifest, its current link goes first
(see :meth:`TagStore.untag_digest`) and a crash may leave its history behind, which listings
ignore.

Several tags pushed in one request (``PUT .../manifests/<digest>?tag=a&tag=b``) move together:
:meth:`TagStore.point_all` writes their current links at once and puts back the ones written when
another fails, so a request applies all of them or none. While it runs, readers in this process
that ask for one of those tags (or the whole list) wait for its outcome: none of them sees some of
the tags moved and others not. Readers in other processes sharing the storage may, for the few
milliseconds the writes take.

Listings count a tag only when its current link is readable (a leftover of a crash or of another
registry writing index links first is ignored): each name is checked once per process, and names
already known complete cost nothing on later listings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

from drivers.base import ContentWrite, PathNotFound, StorageDriver

from ..errors import ErrorCode, RegistryError
from ..reference import Digest, is_valid_tag, try_digest
from . import paths


log = logging.getLogger(__name__)


def manifest_unknown(ref: object) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": str(ref)})


def name_unknown(repo: str) -> RegistryError:
    return RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})


#: repositories whose complete tag names are remembered (per process)
_COMPLETE_CACHE_SIZE = 1024


class TagStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        #: repository -> the tag sets being moved together right now, each with its "done" event
        self._moving: dict[str, list[tuple[frozenset[str], asyncio.Event]]] = {}
        #: repository -> tag names seen with a readable current link (see the module docstring)
        self._complete: OrderedDict[str, set[str]] = OrderedDict()

    async def resolve(self, repo: str, tag: str) -> Digest:
        """The digest ``tag`` points at, or MANIFEST_UNKNOWN."""
        d = await self.current(repo, tag)
        if d is None:
            raise manifest_unknown(tag)
        return d

    async def current(self, repo: str, tag: str) -> Digest | None:
        if repo in self._moving:
            await self._settled(repo, tag)
        try:
            raw = await self.driver.get_content(paths.tag_current_link(repo, tag))
        except PathNotFound:
            return None
        return try_digest(raw.decode("ascii", "replace").strip())

    async def tag(self, repo: str, tag: str, d: Digest) -> None:
        """Point ``tag`` at ``d``: the three steps below, in this order."""
        await self.add_reverse_entry(repo, tag, d)
        await self.point(repo, tag, d)
        await self.record(repo, tag, d)

    async def add_reverse_entry(self, repo: str, tag: str, d: Digest) -> None:
        await self.driver.put_contents([[self.reverse_entry_write(repo, tag, d)]])

    @staticmethod
    def reverse_entry_write(repo: str, tag: str, d: Digest) -> ContentWrite:
        """The reverse entry of ``tag`` -> ``d``: rebuildable from the current links
        (:meth:`reindex`), so not made durable on its own; the stage order of a batch (and
        the journal's order after a power cut) keeps it ahead of the tag's current link."""
        return ContentWrite(paths.digest_tag_entry(repo, d, tag), str(d).encode(), durable=False)

    @staticmethod
    def link_writes(repo: str, tag: str, d: Digest) -> list[ContentWrite]:
        """The tag's current link and its history entry (durable: neither can be rebuilt)."""
        return [ContentWrite(paths.tag_current_link(repo, tag), str(d).encode()),
                ContentWrite(paths.tag_index_link(repo, tag, d), str(d).encode())]

    async def point(self, repo: str, tag: str, d: Digest) -> None:
        """The tag's current link: from here on the tag resolves to ``d``."""
        await self.driver.put_content(paths.tag_current_link(repo, tag), str(d).encode())

    async def record(self, repo: str, tag: str, d: Digest) -> None:
        """The tag's history entry (distribution's tag index)."""
        await self.driver.put_content(paths.tag_index_link(repo, tag, d), str(d).encode())

    async def point_all(self, repo: str, d: Digest, previous: Mapping[str, Digest | None], *,
                        before: Sequence[Sequence[ContentWrite]] = (), also: Sequence[ContentWrite] = ()) -> None:
        """Point every tag of ``previous`` (tag -> the digest it points at now, None for a new tag)
        at ``d``, all or none: the current links and history entries go in one stage of one
        batch, after the stages ``before`` (the manifest's own writes, its reverse entries) and
        with ``also``; if the batch fails after some current links were written, those tags go
        back to ``previous`` (a new tag is removed) before the error propagates."""
        async with self._moving_together(repo, previous.keys()):
            links = [w for t in previous for w in self.link_writes(repo, t, d)]
            try:
                await self.driver.put_contents([*(stage for stage in before if stage), [*links, *also]])
            except BaseException as exc:
                written = getattr(exc, "visible", frozenset())
                undo = [t for t in previous
                        if previous[t] is None or paths.tag_current_link(repo, t) in written]
                if undo:
                    await self._put_back(repo, {t: previous[t] for t in undo}, d)
                raise

    async def _put_back(self, repo: str, previous: Mapping[str, Digest | None], d: Digest) -> None:
        """Undo current links of a failed :meth:`point_all` (no reads: readers wait on us)."""

        async def restore(tag: str, before: Digest | None) -> None:
            try:
                if before is None:
                    await self._delete_quietly(paths.tag_dir(repo, tag))
                else:
                    await self.point(repo, tag, before)
                    if before != d:  # the history entry written with the failed link
                        await self._delete_quietly(paths.tag_index_link(repo, tag, d))
            except Exception:
                log.exception("repository %s: tag %s could not be put back to %s", repo, tag, before)

        await asyncio.gather(*(restore(t, b) for t, b in previous.items()))

    @contextlib.asynccontextmanager
    async def _moving_together(self, repo: str, tags: Collection[str]) -> AsyncIterator[None]:
        if len(tags) < 2:  # one link write is atomic by itself
            yield
            return
        entry = (frozenset(tags), asyncio.Event())
        self._moving.setdefault(repo, []).append(entry)
        try:
            yield
        finally:
            entry[1].set()
            moving = self._moving[repo]
            moving.remove(entry)
            if not moving:
                del self._moving[repo]

    async def _settled(self, repo: str, tag: str | None) -> None:
        """Wait until no tag set holding ``tag`` (any, when None) is being moved in ``repo``."""
        for tags, done in list(self._moving.get(repo, ())):
            if tag is None or tag in tags:
                await done.wait()

    async def untag(self, repo: str, tag: str) -> Digest:
        """Remove ``tag`` (its history first, its current link last); MANIFEST_UNKNOWN if absent.
        The reverse entry stays (stale entries are checked on use and dropped with the digest)."""
        d = await self.resolve(repo, tag)
        await self._remove(repo, tag)
        return d

    async def _remove(self, repo: str, tag: str) -> None:
        self._forget(repo, tag)
        await self._delete_quietly(paths.tag_index_dir(repo, tag))
        await self._delete_quietly(paths.tag_dir(repo, tag))

    async def mark_indexed(self, repo: str, d: Digest) -> None:
        """Record that manifest ``d`` was stored here untagged: its (empty) reverse index is
        complete. A tagged push needs no marker: its reverse entry is the evidence."""
        await self.driver.put_contents([[self.marker_write(repo, d)]])

    @staticmethod
    def marker_write(repo: str, d: Digest) -> ContentWrite:
        """The marker of :meth:`mark_indexed` (rebuildable: ``Store.rebuild_indexes``)."""
        return ContentWrite(paths.digest_tags_marker(repo, d), b"", durable=False)

    async def tags_of(self, repo: str, d: Digest, *, scan: bool = True) -> list[str]:
        """Tags that point at ``d`` now: from the reverse index (stale entries dropped), or, when
        ``d`` has no reverse entry at all (stored by another registry) and ``scan`` is true, by
        scanning every tag."""
        try:
            entries = await self.driver.list(paths.digest_tags_dir(repo, d))
        except PathNotFound:
            entries = []
        if not entries:
            if not scan:
                return []
            return [t for t in await self._all_or_none(repo) if await self.current(repo, t) == d]
        marker = paths.digest_tags_marker(repo, d)
        found = []
        for entry in entries:
            tag = paths.leaf(entry)
            if entry == marker:
                continue
            if is_valid_tag(tag) and await self.current(repo, tag) == d:
                found.append(tag)
        return found

    async def adopt(self, repo: str, digests: set[Digest]) -> None:
        """Index manifests another registry stored: their current tags, found by one scan of
        all tags, become reverse entries, and each gets the marker. Idempotent."""
        if not digests:
            return
        for tag in await self._all_or_none(repo):
            d = await self.current(repo, tag)
            if d in digests:
                await self.add_reverse_entry(repo, tag, d)
        for d in digests:
            await self.mark_indexed(repo, d)

    async def indexed(self, repo: str, d: Digest) -> bool:
        try:
            return bool(await self.driver.list(paths.digest_tags_dir(repo, d)))
        except PathNotFound:
            return False

    async def indexed_digests(self, repo: str, algorithm: str) -> set[str]:
        """Hex digests of the manifests that have reverse-index entries (ours or adopted)."""
        try:
            return {paths.leaf(p) for p in await self.driver.list(paths.digest_tags_root(repo, algorithm))}
        except PathNotFound:
            return set()

    async def _all_or_none(self, repo: str) -> list[str]:
        try:
            return await self.list(repo)
        except RegistryError:
            return []

    async def untag_digest(self, repo: str, d: Digest, *, scan: bool = True) -> list[str]:
        """Remove every tag pointing at ``d``; O(tags of d). Each tag is re-read right before it
        goes, so a tag moved on to another manifest meanwhile is left alone. ``scan`` as for
        :meth:`tags_of`."""
        removed = []
        for tag in await self.tags_of(repo, d, scan=scan):
            if await self._remove_if(repo, tag, d):
                removed.append(tag)
        return removed

    async def _remove_if(self, repo: str, tag: str, d: Digest) -> bool:
        """Remove ``tag`` if it points at ``d``: the current link goes right after it is read (one
        write, so a PUT in another process moving the tag meanwhile has the least chance to land
        in between), then the history. The tag's directory itself is never deleted as a whole
        here: a current link written after ours went must survive."""
        if await self.current(repo, tag) != d:
            return False
        self._forget(repo, tag)
        await self._delete_quietly(paths.tag_current_link(repo, tag))
        await self._delete_quietly(paths.tag_index_dir(repo, tag))
        return True

    async def drop_reverse_index(self, repo: str, d: Digest) -> None:
        """Remove the reverse index of a deleted manifest, except the entries of tags that point
        at it again: a PUT in another process may have tagged it anew meanwhile, and a present
        manifest's entries must never be incomplete. Each entry is removed, then its tag re-read
        (and the entry restored); the PUT re-checks its entry after its current link, so one of
        the two always sees the other."""
        try:
            entries = await self.driver.list(paths.digest_tags_dir(repo, d))
        except PathNotFound:
            return
        for entry in entries:
            await self._delete_quietly(entry)
            tag = paths.leaf(entry)
            if entry != paths.digest_tags_marker(repo, d) and is_valid_tag(tag) and await self.current(repo, tag) == d:
                await self.add_reverse_entry(repo, tag, d)

    async def has_reverse_entry(self, repo: str, tag: str, d: Digest) -> bool:
        return await self._exists(paths.digest_tag_entry(repo, d, tag))

    async def list(self, repo: str) -> list[str]:
        """All tags of ``repo`` that resolve, sorted; NAME_UNKNOWN when the repository does not exist."""
        if repo in self._moving:
            await self._settled(repo, None)
        try:
            children = await self.driver.list(paths.tags_dir(repo))
        except PathNotFound:
            if await self._exists(paths.manifests_dir(repo)) or await self._exists(paths.layers_dir(repo)):
                return []
            raise name_unknown(repo) from None
        names = [t for t in (paths.leaf(c) for c in children) if is_valid_tag(t)]
        return sorted(await self._complete_tags(repo, names))

    async def _complete_tags(self, repo: str, names: list[str]) -> list[str]:
        """The ``names`` whose current link is readable: names seen complete before are taken as
        they are, the others are read (bounded in parallel)."""
        known = self._complete.get(repo)
        if known is None:
            known = set()
        else:
            self._complete.move_to_end(repo)
        unknown = [t for t in names if t not in known]
        if unknown:
            limit = asyncio.Semaphore(32)

            async def complete(tag: str) -> bool:
                async with limit:
                    return await self.current(repo, tag) is not None

            for tag, ok in zip(unknown, await asyncio.gather(*(complete(t) for t in unknown))):
                if ok:
                    known.add(tag)
        present = set(names)
        known &= present  # a name gone from the listing is checked again if it comes back
        self._complete[repo] = known
        self._complete.move_to_end(repo)
        while len(self._complete) > _COMPLETE_CACHE_SIZE:
            self._complete.popitem(last=False)
        return [t for t in names if t in known]

    def _forget(self, repo: str, tag: str) -> None:
        known = self._complete.get(repo)
        if known is not None:
            known.discard(tag)

    async def reindex(self, repo: str) -> int:
        """Rebuild the reverse index from the current links (e.g. after the reference wrote tags,
        or after a power cut took entries that were not yet durable)."""
        writes = []
        for tag in await self.list(repo):
            d = await self.current(repo, tag)
            if d is not None:
                writes.append(self.reverse_entry_write(repo, tag, d))
        if writes:
            await self.driver.put_contents([writes])
        return len(writes)

    async def _exists(self, path: str) -> bool:
        try:
            await self.driver.stat(path)
            return True
        except PathNotFound:
            return False

    async def _delete_quietly(self, path: str) -> None:
        try:
            await self.driver.delete(path)
        except PathNotFound:
            pass
