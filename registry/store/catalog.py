"""The repository catalog: directories under ``repositories/`` holding ``_manifests``.

Like the reference: names nest, ``_``-prefixed directories are never entered, and the order is
path-component order (``a``, ``a/b``, ``a-c``), which is the order of a depth-first walk. Only
listings are used (no stat per entry), and subtrees entirely before ``last`` are pruned.

The walk costs one listing per directory, so one per repository at least. For the UI, which
shows, searches and counts the whole catalog, :class:`Catalog` also keeps an **index**: one entry
per repository under ``repositories/_catalog/`` (``_``-prefixed, so the reference's walk skips
it), written when a manifest is stored. :meth:`Catalog.names` is then one listing. The index is
built from the walk when it was never completed (a store that predates it: at start, see
:meth:`Catalog.prepare`; storage without repositories is completed by its first entry, so
nothing is written before a push), rebuilt on ``registry reindex``, and repositories that
another registry created at the top level are adopted by a cheap check (one listing of
``repositories/``) at most every :data:`RECONCILE_INTERVAL` seconds.

Entry names: the repository name with each ``/`` written as ``..`` (a name never holds ``..``,
so this reverses exactly); a name whose entry would be longer than :data:`MAX_ENTRY` is entered
as ``H<sha256 of the name>`` holding the name (upper case never occurs in names).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import contextlib
from typing import TYPE_CHECKING

from drivers.base import ContentWrite, PathNotFound, StorageDriver

from ..state import StateUnavailable

from ..reference import is_valid_name
from . import paths

log = logging.getLogger(__name__)

#: longest entry name written as the encoded repository name (filesystems allow 255 bytes)
MAX_ENTRY = 200
#: present once the index holds every repository the walk finds
COMPLETE_MARKER = ".complete"
#: seconds between two checks of ``repositories/`` for top-level names the index lacks
RECONCILE_INTERVAL = 30.0
#: seconds a process trusts the entry it wrote for a repository before a push writes it again
RECORD_INTERVAL = 600.0
_HASHED = "H"
#: the shared-state cache scope of entries written lately (repository -> when, epoch seconds)
_SCOPE = "catalog"

if TYPE_CHECKING:
    from ..state import State


def _components_le(name: str, last: list[str]) -> bool:
    """Whether repository path ``name`` sorts at or before ``last`` in walk order."""
    return name.split("/") <= last


def catalog_order(name: str) -> list[str]:
    """Sort key of the catalog: path-component order, as the walk yields names."""
    return name.split("/")


def entry_name(repo: str) -> str:
    """The index entry of repository ``repo``."""
    encoded = repo.replace("/", "..")
    if len(encoded) <= MAX_ENTRY:
        return encoded
    return _HASHED + hashlib.sha256(repo.encode()).hexdigest()


class Catalog:
    def __init__(self, driver: StorageDriver, state: "State | None" = None) -> None:
        """``state``: a shared :mod:`registry.state` (Redis) in which the instances remember
        which entries were written lately, so that one instance's write spares the others and
        :meth:`forget` (a repository deleted) makes every instance write the entry again."""
        self.driver = driver
        self.state = state if state is not None and state.shared else None
        #: repositories whose entry this process wrote lately (skips rewriting on every push), and when
        self._recorded: dict[str, float] = {}
        #: top-level directories without any repository, last time they were walked
        self._empty_tops: set[str] = set()
        self._checked = -RECONCILE_INTERVAL
        self._rebuilding = asyncio.Lock()
        #: this process found the storage without any repository: its first entry completes the index
        self._fresh = False

    # --- the walk (the API's catalog, as the reference's) -------------------------------------

    async def list(self, n: int, last: str | None = None) -> tuple[list[str], bool]:
        """Up to ``n`` repository names after ``last``, and whether more follow."""
        found: list[str] = []
        last_parts = last.split("/") if last else None
        await self._visit(paths.REPOSITORIES, "", n + 1, last_parts, found)
        return found[:n], len(found) > n

    async def _visit(self, directory: str, prefix: str, limit: int, last: list[str] | None, found: list[str]) -> None:
        try:
            children = await self.driver.list(directory)
        except PathNotFound:
            return
        names = [paths.leaf(c) for c in children]
        if prefix and "_manifests" in names:
            repo = prefix[:-1]
            if last is None or not _components_le(repo, last):
                found.append(repo)
                if len(found) >= limit:
                    return
        for name in sorted(names):
            if name.startswith("_"):
                continue
            sub = prefix + name
            if last is not None:
                parts = sub.split("/")
                # prune subtrees that end before `last`: none of their names can follow it
                if parts < last[: len(parts)]:
                    continue
            await self._visit(f"{directory}/{name}", sub + "/", limit, last, found)
            if len(found) >= limit:
                return

    # --- the index (the UI's catalog) -----------------------------------------------------------

    async def record(self, repo: str, *, force: bool = False) -> None:
        """Enter ``repo`` in the index (after its first revision link: an entry implies the
        repository existed). Idempotent; written at most every :data:`RECORD_INTERVAL` seconds
        per repository and process (so an entry another process dropped comes back)."""
        now = time.monotonic()
        if not force and self.state is None and now - self._recorded.get(repo, -RECORD_INTERVAL) < RECORD_INTERVAL:
            return
        # with shared state only its answer counts (another instance may have forgotten the entry)
        generation = await self._shared_recently(repo)
        if generation is None and not force:
            self._recorded[repo] = now
            return
        stages = [[self._entry_write(repo)]]
        if self._fresh:  # after the entry: a complete index never lacks a repository
            stages.append([ContentWrite(paths.catalog_entry(COMPLETE_MARKER), b"", durable=False)])
        await self.driver.put_contents(stages)
        self._fresh = False
        if self.state is not None and generation is not None and generation >= 0:
            with contextlib.suppress(StateUnavailable):
                await self.state.cache_fill(_SCOPE, repo, str(time.time()).encode(), generation)
        self.recorded(repo)

    def record_write(self, repo: str) -> ContentWrite | None:
        """The entry :meth:`record` would write now, for a caller that batches it with its own
        writes (then :meth:`recorded` once written); None when it was written lately, when it
        would be the first entry (:meth:`record` also marks the index complete then) and with
        shared state (whose answer :meth:`record` must ask first). Entries are rebuildable (the
        walk), so not made durable on their own."""
        if self.state is not None or self._fresh:
            return None
        if time.monotonic() - self._recorded.get(repo, -RECORD_INTERVAL) < RECORD_INTERVAL:
            return None
        return self._entry_write(repo)

    @staticmethod
    def _entry_write(repo: str) -> ContentWrite:
        entry = entry_name(repo)
        body = repo.encode() if entry.startswith(_HASHED) else b""
        return ContentWrite(paths.catalog_entry(entry), body, durable=False)

    def recorded(self, repo: str) -> None:
        """``repo``'s entry was just written (see :meth:`record_write`)."""
        if len(self._recorded) > 100_000:
            self._recorded.clear()
        self._recorded[repo] = time.monotonic()

    async def _shared_recently(self, repo: str) -> int | None:
        """None when another instance wrote ``repo``'s entry lately (nothing to write), else the
        generation to fill with (-1: no shared state, or it is away)."""
        if self.state is None:
            return -1
        try:
            value, generation = await self.state.cache_get(_SCOPE, repo)
        except StateUnavailable:
            return -1
        try:
            if value is not None and time.time() - float(value) < RECORD_INTERVAL:
                return None
        except ValueError:
            pass
        return generation

    async def forget(self, repo: str) -> None:
        """``repo``'s entry was dropped (the repository was deleted): the next push of it writes
        the entry again, on every instance. Raises StateUnavailable when Redis is away."""
        self._recorded.pop(repo, None)
        if self.state is not None:
            await self.state.cache_drop(_SCOPE, (repo,))

    async def names(self) -> list[str]:
        """Every repository name, in catalog order: one listing of the index (plus, at most every
        :data:`RECONCILE_INTERVAL` seconds, one of ``repositories/``). Entries may be stale (a
        repository emptied since), never missing for a repository stored through us."""
        leaves = await self._leaves()
        if COMPLETE_MARKER not in leaves:
            async with self._rebuilding:  # one build; callers arriving meanwhile wait for it
                if not await self._complete():
                    if await self._empty():
                        return []  # nothing to index: nothing written (the first push completes it)
                    return await self._rebuild()
            leaves = await self._leaves()
        names = set(await self._decode(leaves))
        now = time.monotonic()
        if now - self._checked >= RECONCILE_INTERVAL:
            self._checked = now
            names |= set(await self._adopt_top_level(names))
        return sorted(names, key=catalog_order)

    async def prepare(self) -> None:
        """At start: build an index that was never completed (a store written before it existed,
        or by the reference alone), so no page view waits for the walk. Storage without any
        repository is left untouched; its first entry will complete the index."""
        if await self._complete():
            return
        async with self._rebuilding:
            if not await self._complete() and not await self._empty():
                await self._rebuild()

    async def _empty(self) -> bool:
        """Whether ``repositories/`` holds no repository directory (then remembered as fresh)."""
        try:
            children = await self.driver.list(paths.REPOSITORIES)
        except PathNotFound:
            children = []
        empty = all(paths.leaf(c).startswith("_") for c in children)
        self._fresh = self._fresh or empty
        return empty

    async def _leaves(self) -> list[str]:
        try:
            return [paths.leaf(e) for e in await self.driver.list(paths.catalog_index_dir())]
        except PathNotFound:
            return []

    async def _complete(self) -> bool:
        try:
            await self.driver.stat(paths.catalog_entry(COMPLETE_MARKER))
            return True
        except PathNotFound:
            return False

    async def _decode(self, leaves: list[str]) -> list[str]:
        out: list[str] = []
        for leaf in leaves:
            if leaf.startswith("."):
                continue
            if leaf.startswith(_HASHED):
                try:
                    name = (await self.driver.get_content(paths.catalog_entry(leaf))).decode("utf-8", "replace")
                except PathNotFound:
                    continue
            else:
                name = leaf.replace("..", "/")
            if is_valid_name(name):
                out.append(name)
        return out

    async def _adopt_top_level(self, known: set[str]) -> list[str]:
        """Repositories under top-level directories the index knows nothing of (another
        registry created them): walked and entered."""
        try:
            children = await self.driver.list(paths.REPOSITORIES)
        except PathNotFound:
            return []
        tops = {n.split("/", 1)[0] for n in known}
        found: list[str] = []
        for child in children:
            top = paths.leaf(child)
            if top.startswith("_") or top in tops or top in self._empty_tops:
                continue
            sub: list[str] = []
            await self._visit(child, top + "/", 1 << 30, None, sub)
            if not sub:
                if len(self._empty_tops) > 10_000:
                    self._empty_tops.clear()
                self._empty_tops.add(top)
            for repo in sub:
                await self.record(repo)
            found.extend(sub)
        if found:
            log.info("catalog index: adopted %d repositories another registry created", len(found))
        return found

    async def rebuild(self) -> list[str]:
        """Make the index equal to the walk: enter what it lacks, drop entries whose repository
        is gone (re-checked just before), then mark it complete. Returns the names."""
        async with self._rebuilding:
            return await self._rebuild()

    async def _rebuild(self) -> list[str]:
        walked: list[str] = []
        await self._visit(paths.REPOSITORIES, "", 1 << 62, None, walked)
        leaves = await self._leaves()
        present = set(leaves)
        wanted = {entry_name(r): r for r in walked}
        missing = [repo for entry, repo in wanted.items()
                   if entry not in present or (entry.startswith(_HASHED) and await self._decode([entry]) != [repo])]
        if self.state is not None:
            for repo in missing:
                await self.record(repo, force=True)
        elif missing:  # one batch (one worker-thread hop on local disk), not one call per entry
            await self.driver.put_contents([[self._entry_write(repo) for repo in missing]])
            self._fresh = False
            for repo in missing:
                self.recorded(repo)
        for leaf in leaves:
            if leaf.startswith(".") or leaf in wanted:
                continue
            stale = await self._decode([leaf])
            if stale and await self._is_repository(stale[0]):
                walked.append(stale[0])  # created while we walked
                continue
            if stale:
                self._recorded.pop(stale[0], None)
            try:
                await self.driver.delete(paths.catalog_entry(leaf))
            except PathNotFound:
                pass
        await self.driver.put_contents([[ContentWrite(paths.catalog_entry(COMPLETE_MARKER), b"", durable=False)]])
        self._checked = time.monotonic()
        log.info("catalog index built: %d repositories", len(walked))
        return sorted(set(walked), key=catalog_order)

    async def _is_repository(self, repo: str) -> bool:
        try:
            await self.driver.stat(paths.manifests_dir(repo))
            return True
        except PathNotFound:
            return False
