"""The garbage collector: scan, retention, mark, sweep -- offline (distribution's semantics) or
online (safe beside serving registry instances; see docs/gc.md and :mod:`.barrier`).

One run: take the lease (not in a dry run) -> online, wait until every instance sees it -> scan
both prefixes -> read tags (when untagged manifests or retention matter) -> retention removes
tags -> read and parse every manifest once -> mark -> sweep untagged manifests, then unmarked
blobs, then links and index entries left pointing at nothing -> release the lease.

Sweeping goes in batches. Online, for each batch: write the doomed batch, list the claims,
re-check each item's modification times, delete what is unclaimed and still older than the grace,
remove the batch. Offline everything unmarked goes at once, whatever its age, as distribution's
collector does (with the registry stopped or read-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.base import FileInfo, PathNotFound, StorageDriver, StorageError

from ..errors import ErrorCode, RegistryError
from ..observe.metrics import METRICS
from ..reference import Digest
from ..state import StateUnavailable
from ..store import Store, paths
from ..store.locks import tag_key as lock_tag_key
from . import barrier as barriers
from .inventory import Inventory, Repository, complete_blobs, details, newest, read_tags, scan
from .lease import Lease, LeaseHeld, LeaseLost
from .marking import References, mark_blobs, reachable, read_references, tag_roots
from .progress import Progress
from .rules import ImmutabilityPolicy, RetentionPolicy

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GCOptions:
    dry_run: bool = False
    #: also delete manifests no tag reaches (distribution's ``-m``)
    delete_untagged: bool = False
    #: safe beside serving instances: grace, claims, re-checks
    online: bool = False
    #: online: only what was last written or used longer ago than this goes (seconds)
    grace: float = 3600.0
    #: online: registry instances refresh a blob link older than this on HEAD (seconds); the first
    #: delete waits until this long after the run started
    refresh: float = 15.0
    #: apply these retention rules first (None: none)
    retention: RetentionPolicy | None = None
    #: retention never removes these tags
    immutability: ImmutabilityPolicy = dataclasses.field(default_factory=ImmutabilityPolicy)
    #: items per sweep batch (and per bulk delete)
    batch: int = 1000
    #: concurrent reads (manifests, tags, re-checks)
    parallelism: int = 64
    #: online: seconds between taking the lease and scanning (instances see the lease by then)
    barrier_wait: float = barriers.BARRIER_WAIT
    #: seconds the lease lives without renewal
    lease_ttl: float = 30.0


@dataclasses.dataclass
class GCSummary:
    mode: str = "offline"
    run: str | None = None
    repositories: int = 0
    manifests: int = 0
    manifests_kept: int = 0
    manifests_deleted: int = 0
    manifests_missing_data: int = 0
    tags: int = 0
    tags_deleted: int = 0
    blobs: int = 0
    blobs_marked: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    links_deleted: int = 0
    index_entries_deleted: int = 0
    kept_by_grace: int = 0
    kept_in_use: int = 0
    seconds: float = 0.0
    #: what a dry run would delete (and what a real run deleted), as strings
    deleted: list[str] = dataclasses.field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("deleted")
        return out

    def lines(self) -> list[str]:
        verb = "would delete" if self.mode == "dry-run" else "deleted"
        out = [
            f"garbage collection ({self.mode}{', run ' + self.run if self.run else ''}) finished in {self.seconds:.2f}s",
            f"  repositories: {self.repositories}",
            f"  manifests:    {self.manifests} scanned, {self.manifests_kept} kept, {self.manifests_deleted} {verb}",
            f"  tags:         {self.tags} scanned, {self.tags_deleted} {verb} by retention rules",
            f"  blobs:        {self.blobs} scanned, {self.blobs_marked} marked, {self.blobs_deleted} {verb} "
            f"({human_bytes(self.bytes_freed)} {'to free' if self.mode == 'dry-run' else 'freed'})",
            f"  links and index entries: {self.links_deleted + self.index_entries_deleted} {verb}",
        ]
        if self.mode.startswith("online"):
            out.append(f"  kept as too recent (grace): {self.kept_by_grace}; kept as in use by a push: {self.kept_in_use}")
        if self.manifests_missing_data:
            out.append(f"  warning: {self.manifests_missing_data} manifest revision(s) whose data is missing (cannot be pulled)")
        return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@dataclasses.dataclass
class _Item:
    """One thing the sweep may delete: its claim key, the files to delete and to re-check."""

    key: str
    label: str
    files: list[str]
    #: re-checked online before deleting: each must be missing or older than the cutoff
    check: list[str]
    size: int = 0
    kind: str = "blob"
    digest: Digest | None = None


class Collector:
    def __init__(self, store: Store, options: GCOptions, progress: Progress | None = None) -> None:
        self.store = store
        self.driver: StorageDriver = store.driver
        self.o = options
        self.progress = progress or Progress()
        self.summary = GCSummary(mode="dry-run" if options.dry_run else ("online" if options.online else "offline"))
        self.lease: Lease | None = None
        self._started_mono = 0.0
        self._cutoff: dt.datetime | None = None
        self._batch_no = 0
        #: False for ``registry retention``: tags and untagged manifests only, blobs stay
        self.sweep_blobs = True
        #: blobs this run deleted
        self._swept: set[Digest] = set()
        #: online: the run waited for live instances to see its lease (none live: no wait)
        self.waited_for_instances = False
        #: the lease's read-back (Lease.settle), which runs beside the scan
        self._settling: asyncio.Future[None] | None = None

    # --- the run -----------------------------------------------------------------------------
    async def run(self) -> GCSummary:
        """One run; records ``registry_gc_runs_total{outcome}`` (completed, dry-run, skipped: the
        lease is held, failed) and ``registry_gc_freed_bytes_total`` (also what a failed run freed)."""
        outcome = "failed"
        try:
            summary = await self._run()
        except LeaseHeld:
            outcome = "skipped"
            raise
        else:
            outcome = "dry-run" if self.o.dry_run else "completed"
            return summary
        finally:
            METRICS.gc_runs.inc((outcome,))
            if self.summary.bytes_freed and not self.o.dry_run:
                METRICS.gc_freed.inc((), self.summary.bytes_freed)

    async def _run(self) -> GCSummary:
        started = time.monotonic()
        self._started_mono = started
        if not self.o.dry_run:
            # written now, settled (read back: no other collector wrote after us) while the scan
            # runs: nothing is changed before it settled (see _sweep)
            self.lease = await Lease.write(self.driver, online=self.o.online, ttl=self.o.lease_ttl)
            self.summary.run = self.lease.run
            self._settling = asyncio.ensure_future(self.lease.settle())
        try:
            start_wall = dt.datetime.now(dt.timezone.utc)
            if self.o.online:
                self._cutoff = start_wall - dt.timedelta(seconds=self.o.grace)
                if self.o.barrier_wait > 0 and not self.o.dry_run and await barriers.wait_needed(self.driver):
                    self.progress.phase("waiting for registry instances to see the collection")
                    self.waited_for_instances = True
                    await asyncio.sleep(self.o.barrier_wait)
            await self._collect(start_wall)
            await self._settled()
        finally:
            ours = self.lease is not None and await self._lease_settled()
            if ours:
                await self._cleanup_run()
            if self.lease is not None:
                await self.lease.release()  # only if it is ours
            self.progress.close()
        self.summary.seconds = time.monotonic() - started
        if ours:
            await self._record_last()
        return self.summary

    async def _settled(self) -> None:
        """Wait until the lease is surely ours (LeaseHeld if another collector won it)."""
        if self._settling is not None:
            await self._settling

    async def _lease_settled(self) -> bool:
        try:
            await self._settled()
        except LeaseHeld:
            return False
        return True

    async def _collect(self, now: dt.datetime) -> None:
        o, s = self.o, self.summary
        self.progress.phase("scanning storage")
        inv = await scan(self.driver, self.progress.advance, link_times=self._needs_link_times(),
                         names_only=self.driver.cheap_listing)
        s.repositories = len(inv.repositories)
        s.manifests = inv.revision_count()
        s.blobs = sum(1 for b in inv.blobs.values() if b.data is not None)
        s.tags = sum(len(r.tags) for r in inv.repositories.values())
        if self._needs_tags(inv):
            self.progress.phase("reading tags", s.tags)
            await read_tags(self.driver, inv, o.parallelism, self.progress.advance)
            if o.retention is not None:
                await self._retention(inv, now)
        self.progress.phase("reading manifests", len({d for r in inv.repositories.values() for d in r.revisions}))
        refs = await read_references(
            self.store.blobs, (d for r in inv.repositories.values() for d in r.revisions), o.parallelism,
            self.progress.advance,
        )
        s.manifests_missing_data = sum(
            1 for r in inv.repositories.values() for d in r.revisions if refs.get(d) is None
        )
        kept = {name: self._kept_manifests(repo, refs, now) for name, repo in inv.repositories.items()}
        await self._sweep_manifests(inv, kept, refs)
        s.manifests_kept = sum(len(k) for k in kept.values())
        marked = mark_blobs(inv, kept, refs)
        s.blobs_marked = sum(1 for d in marked if d in inv.blobs and inv.blobs[d].data is not None)
        if self.sweep_blobs:
            await self._sweep_blobs(inv, marked)
            await self._sweep_leftovers(inv, kept)

    def _needs_link_times(self) -> bool:
        """Online runs judge links by age; so do retention rules (tag and manifest ages)."""
        return self.o.online or self.o.retention is not None

    def _needs_tags(self, inv: Inventory) -> bool:
        if self.o.delete_untagged:
            return True
        retention = self.o.retention
        return retention is not None and any(retention.rule_for(name) for name in inv.repositories)

    def _kept_manifests(self, repo: Repository, refs: dict[Digest, References | None], now: dt.datetime) -> set[Digest]:
        rule = self.o.retention.rule_for(repo.name) if self.o.retention else None
        untagged_age = None if self.o.delete_untagged else (rule.untagged_olderthan if rule else None)
        if not self.o.delete_untagged and untagged_age is None:
            return set(repo.revisions)
        roots = tag_roots(repo)
        if untagged_age is not None:  # retention keeps untagged manifests younger than its age
            limit = now - dt.timedelta(seconds=untagged_age)
            roots |= {d for d, info in repo.revisions.items() if info.modified is None or info.modified >= limit}
        if self._cutoff is not None:  # online: never a manifest pushed within the grace
            young = {d for d, info in repo.revisions.items() if not self._old(info)}
            self.summary.kept_by_grace += len(young - reachable(repo, refs, roots))
            roots |= young
        return reachable(repo, refs, roots)

    def _old(self, info: FileInfo | dt.datetime | None) -> bool:
        """Older than the online cutoff (always true offline); unknown times count as new."""
        if self._cutoff is None or info is None:
            return True
        modified = info if isinstance(info, dt.datetime) else info.modified
        return modified is not None and modified < self._cutoff

    # --- retention ---------------------------------------------------------------------------
    async def _retention(self, inv: Inventory, now: dt.datetime) -> None:
        assert self.o.retention is not None
        items: list[_Item] = []
        for name, repo in inv.repositories.items():
            rule = self.o.retention.rule_for(name)
            if rule is None or not rule.tags:
                continue
            times = {t: info.modified for t, info in repo.tags.items() if repo.tag_targets.get(t) is not None}
            immutable = lambda tag, _n=name: self.o.immutability.rule_for(_n, tag) is not None  # noqa: E731
            for tag in sorted(rule.tags_to_remove(times, now, immutable)):
                items.append(_Item(
                    key=barriers.tag_key(name, tag), label=f"tag {name}:{tag}", kind="tag",
                    files=[paths.tag_current_link(name, tag)], check=[],
                ))  # fmt: skip
        if not items:
            return
        self.progress.phase("removing tags (retention rules)", len(items))
        done = await self._sweep(items, self._delete_tags(inv))
        self.summary.tags_deleted += len(done)

    def _delete_tags(self, inv: Inventory) -> Callable[[list[_Item]], Awaitable[list[_Item]]]:
        async def delete(items: list[_Item]) -> list[_Item]:
            gone = []
            for item in items:
                name, tag = _split_tag_key(item.key)
                repo = inv.repositories[name]
                try:  # the tag must still name what retention judged (a push may have moved it)
                    async with self.store.locks.shared(name, lock_tag_key(tag)):  # ordered with tag writes
                        if await self.store.tags.current(name, tag) != repo.tag_targets.get(tag):
                            self.summary.kept_in_use += 1
                            continue
                        await self.store.tags.untag(name, tag)
                except RegistryError as exc:
                    if exc.code is ErrorCode.UNAVAILABLE:  # the lock could not be had: the next run
                        log.warning("garbage collection: tag %s:%s kept: %s", name, tag, exc.message)
                        self.summary.kept_in_use += 1
                        continue
                    # removed meanwhile
                else:
                    if self.store.events.active:  # as a DELETE of the tag through the API
                        await self.store.events.tag_deleted(name, tag)
                repo.tag_targets.pop(tag, None)
                repo.tags.pop(tag, None)
                for d, entries in list(repo.tag_index.items()):
                    repo.tag_index[d] = [(t, f) for t, f in entries if t != tag]
                gone.append(item)
            return gone

        return delete

    # --- manifests -------------------------------------------------------------------------
    async def _sweep_manifests(self, inv: Inventory, kept: dict[str, set[Digest]],
                               refs: dict[Digest, References | None]) -> None:
        items: list[_Item] = []
        for name, repo in inv.repositories.items():
            for d, info in repo.revisions.items():
                if d in kept[name]:
                    continue
                if inv.partial:  # not listed: its signed bytes, if any (a missing file is skipped)
                    files = [info.path, paths.signed_manifest(name, d)]
                else:
                    files = [info.path, *(f.path for f in repo.revision_extras.get(d, ()))]
                files += [f.path for _, f in repo.tag_index.get(d, ())]
                files += [f.path for f in repo.reverse.get(d, ())]
                files += [f.path for f in repo.referrer_entries.get(d, ())]
                items.append(_Item(str(d), f"manifest {name}@{d}", files, [info.path], kind=f"manifest:{name}"))
        if not items:
            return
        self.progress.phase("deleting untagged manifests" if not self.o.dry_run else "untagged manifests", len(items))
        deleted = await self._sweep(items, self._invalidating(
            self._delete_in_order(first=lambda i: i.files[:1]), lambda i: {i.kind.split(":", 1)[1]},
        ))
        gone = {(i.kind.split(":", 1)[1], i.key) for i in deleted}
        self.summary.manifests_deleted += len(deleted)
        # what was not deleted (claimed by a push, or re-checked as new) stays: a push that claimed
        # an index or re-pushed a manifest claimed what it names too, so nothing it needs went
        for name, repo in inv.repositories.items():
            kept[name] = {d for d in repo.revisions if (name, str(d)) not in gone}
            for d in list(repo.revisions):
                if (name, str(d)) in gone:
                    repo.revisions.pop(d)
                    repo.revision_extras.pop(d, None)
                    repo.tag_index.pop(d, None)
                    repo.reverse.pop(d, None)
                    repo.referrer_entries.pop(d, None)

    # --- blobs -------------------------------------------------------------------------------
    async def _sweep_blobs(self, inv: Inventory, marked: set[Digest]) -> None:
        candidates = [d for d, blob in inv.blobs.items() if d not in marked and blob.data is not None]
        wanted = set(candidates)
        links: dict[Digest, list[FileInfo]] = {}
        linked_in: dict[Digest, list[Repository]] = {}
        repo_names: dict[Digest, set[str]] = {}
        for name, repo in inv.repositories.items():
            for group, is_layer in ((repo.layers, True), (repo.revisions, False)):  # a revision "links" its blob
                for d in wanted.intersection(group):
                    links.setdefault(d, []).append(group[d])
                    repo_names.setdefault(d, set()).add(name)
                    if is_layer:
                        linked_in.setdefault(d, []).append(repo)
        if inv.partial:  # only the candidates' directories are listed, and online their links' times read
            await complete_blobs(self.driver, inv, candidates)
            if self._cutoff is not None:
                got = await details(self.driver, [i for d in candidates for i in links.get(d, ())])
                for d in candidates:
                    if d in links:
                        links[d] = [got[i.path] for i in links[d] if i.path in got]
        items: list[_Item] = []
        for d in candidates:
            blob = inv.blobs[d]
            if blob.data is None:
                continue
            blob_links = links.get(d, [])
            if self._cutoff is not None and (
                not self._old(newest(blob.data, *blob_links)) or not all(self._old(i) for i in blob.files)
            ):
                self.summary.kept_by_grace += 1
                continue
            files = [f.path for f in blob.files] + [i.path for i in blob_links]
            items.append(_Item(str(d), f"blob {d}", files, files, size=blob.size, digest=d))
        self.progress.phase("deleting unreferenced blobs" if not self.o.dry_run else "unreferenced blobs", len(items))
        deleted = await self._sweep(items, self._invalidating(
            self._delete_in_order(first=_data_files), lambda i: repo_names.get(i.digest, set()) if i.digest else set(),
        ))
        self.summary.blobs_deleted += len(deleted)
        self.summary.bytes_freed += sum(i.size for i in deleted)
        for item in deleted:
            assert item.digest is not None
            self._swept.add(item.digest)
            inv.blobs[item.digest].data = None
            for repo in linked_in.get(item.digest, ()):
                repo.layers.pop(item.digest, None)

    # --- leftovers: links and index entries that point at nothing ------------------------------
    async def _sweep_leftovers(self, inv: Inventory, kept: dict[str, set[Digest]]) -> None:
        if inv.partial:
            await self._complete_leftovers(inv)
        items: list[_Item] = []
        for name, repo in inv.repositories.items():
            for d, info in repo.layers.items():
                blob = inv.blobs.get(d)
                if (blob is None or blob.data is None) and self._old(info):
                    items.append(_Item(str(d), f"link {name}: {d} (no data)", [info.path], [info.path], kind="link"))
            stale: dict[Digest, list[FileInfo]] = {}
            for d, entries in repo.tag_index.items():
                if d not in repo.revisions:
                    stale.setdefault(d, []).extend(f for _, f in entries)
            for d, files in repo.reverse.items():
                if d not in repo.revisions:
                    stale.setdefault(d, []).extend(files)
            for d, files in repo.referrer_entries.items():
                if d not in repo.revisions:
                    stale.setdefault(d, []).extend(files)
            for d, files in stale.items():
                if all(self._old(f) for f in files):
                    items.append(_Item(str(d), f"index entries {name}: {d} (no manifest)", [f.path for f in files],
                                       [f.path for f in files], kind="index"))
        for d, blob in inv.blobs.items():  # a blob directory without data (ours: ``linkedfrom``)
            if blob.data is None and d not in self._swept and blob.files and all(self._old(f) for f in blob.files):
                items.append(_Item(str(d), f"blob directory {d} (no data)", [f.path for f in blob.files],
                                   [f.path for f in blob.files], kind="link"))
        if not items:
            return
        self.progress.phase("removing dangling links and index entries", len(items))
        deleted = await self._sweep(items, self._delete_in_order(first=lambda i: []))
        self.summary.links_deleted += sum(len(i.files) for i in deleted if i.kind == "link")
        self.summary.index_entries_deleted += sum(len(i.files) for i in deleted if i.kind == "index")

    async def _complete_leftovers(self, inv: Inventory) -> None:
        """Of a names-only scan: the files the leftover sweep judges, with their times (and only
        those that exist), as the full scan would have found them."""
        await complete_blobs(self.driver, inv, [d for d, b in inv.blobs.items() if b.data is None and d not in self._swept])
        wanted: list[FileInfo] = []
        for repo in inv.repositories.values():
            for d, info in repo.layers.items():
                blob = inv.blobs.get(d)
                if blob is None or blob.data is None:
                    wanted.append(info)
            for d, entries in repo.tag_index.items():
                if d not in repo.revisions:
                    wanted.extend(f for _, f in entries)
            for group in (repo.reverse, repo.referrer_entries):
                for d, files in group.items():
                    if d not in repo.revisions:
                        wanted.extend(files)
        if not wanted:
            return
        got = await details(self.driver, wanted)
        for repo in inv.repositories.values():
            for d, info in list(repo.layers.items()):
                if info.modified is None:
                    if info.path in got:
                        repo.layers[d] = got[info.path]
                    elif d not in inv.blobs or inv.blobs[d].data is None:
                        del repo.layers[d]
            for d, entries in list(repo.tag_index.items()):
                if d not in repo.revisions:
                    found = [(t, got[f.path]) for t, f in entries if f.path in got]
                    if found:
                        repo.tag_index[d] = found
                    else:
                        del repo.tag_index[d]
            for group in (repo.reverse, repo.referrer_entries):
                for d, files in list(group.items()):
                    if d not in repo.revisions:
                        existing = [got[f.path] for f in files if f.path in got]
                        if existing:
                            group[d] = existing
                        else:
                            del group[d]

    # --- the sweep machinery ----------------------------------------------------------------------
    def _invalidating(self, delete: Callable[[list[_Item]], Awaitable[list[_Item]]],
                      repos_of: Callable[[_Item], set[str]]) -> Callable[[list[_Item]], Awaitable[list[_Item]]]:
        """``delete`` holding the exclusive lock of every repository a batch touches (in name order,
        so two holders never wait on each other; across instances with Redis), and making every
        instance forget what the descriptor cache holds about those repositories and the batch's
        blobs before and after. A batch whose locks or first invalidation cannot be had (Redis
        away, lock wait over) is kept whole, deleting nothing: the next run takes it."""

        async def delete_invalidated(items: list[_Item]) -> list[_Item]:
            repos = sorted({r for i in items for r in repos_of(i)})
            blobs = [i.digest for i in items if i.digest is not None]
            try:
                async with contextlib.AsyncExitStack() as stack:
                    for repo in repos:
                        await stack.enter_async_context(self.store.locks.exclusive(repo))
                    await self._forget(repos, blobs)
                    try:
                        return await delete(items)
                    finally:
                        try:
                            await self._forget(repos, blobs)
                        except StateUnavailable as exc:
                            log.warning("garbage collection: the cache invalidation after a delete did not reach "
                                        "Redis (%s); instances may serve deleted entries until they expire", exc)
            except (RegistryError, StateUnavailable) as exc:
                if isinstance(exc, RegistryError) and exc.code is not ErrorCode.UNAVAILABLE:
                    raise
                why = exc.message if isinstance(exc, RegistryError) else str(exc)
                log.warning("garbage collection: %d item(s) kept for the next run: %s", len(items), why)
                self.summary.kept_in_use += len(items)
                return []

        return delete_invalidated

    async def _forget(self, repos: list[str], blobs: list[Digest]) -> None:
        for repo in repos:
            await self.store.forget_repository(repo)
        for d in blobs:
            await self.store.forget_blob(d)

    def _delete_in_order(self, first: Callable[[_Item], list[str]]) -> Callable[[list[_Item]], Awaitable[list[_Item]]]:
        """Delete each item's ``first`` files for the whole batch, then the rest: a crash in between
        leaves only entries pointing at nothing, which the next run removes."""

        async def delete(items: list[_Item]) -> list[_Item]:
            head = [p for i in items for p in first(i)]
            head_set = set(head)
            if head:
                await self.driver.delete_files(head)
            tail = [p for i in items for p in i.files if p not in head_set]
            if tail:
                await self.driver.delete_files(tail)
            return items

        return delete

    async def _sweep(self, items: list[_Item],
                     delete: Callable[[list[_Item]], Awaitable[list[_Item]]]) -> list[_Item]:
        """Delete ``items`` batch by batch (online: doomed batch, claims, re-check first)."""
        done: list[_Item] = []
        if self.o.dry_run:
            for item in items:
                self.progress.note(f"eligible for deletion: {item.label}")
                self.summary.deleted.append(item.label)
                self.progress.advance()
            return items
        await self._settled()  # the first change to the storage: the lease must be ours
        if self.o.online and any(i.kind != "tag" for i in items):
            await self._wait_refresh()
        for start in range(0, len(items), self.o.batch):
            batch = items[start : start + self.o.batch]
            assert self.lease is not None
            self.lease.check()
            if self.o.online:
                done += await self._online_batch(batch, delete)
            else:
                done += await delete(batch)
            self.progress.advance(len(batch))
        for item in done:
            self.summary.deleted.append(item.label)
        return done

    async def _wait_refresh(self) -> None:
        """A push that found a blob with HEAD before the run refreshed its link if it was older
        than ``refresh``: waiting until ``refresh`` after the start makes the grace cover it."""
        remaining = self._started_mono + self.o.refresh - time.monotonic()
        if remaining > 0:
            log.info("garbage collection: waiting %.1fs before the first delete", remaining)
            await asyncio.sleep(remaining)

    async def _online_batch(self, batch: list[_Item],
                            delete: Callable[[list[_Item]], Awaitable[list[_Item]]]) -> list[_Item]:
        assert self.lease is not None
        run = self.lease.run
        self._batch_no += 1
        doomed = paths.gc_doomed_batch(run, self._batch_no)
        await self.driver.put_content(doomed, json.dumps(sorted({i.key for i in batch})).encode())
        try:
            claimed = await self._claims(run)
            fresh = await self._recheck([i for i in batch if barriers.claim_key_file(i.key) not in claimed])
            go = [i for i in batch if barriers.claim_key_file(i.key) not in claimed and i.key not in fresh]
            self.summary.kept_in_use += sum(1 for i in batch if barriers.claim_key_file(i.key) in claimed)
            self.summary.kept_by_grace += len(fresh)
            self.lease.check()
            return await delete(go) if go else []
        finally:
            try:
                await self.driver.delete(doomed)
            except PathNotFound:
                pass

    async def _claims(self, run: str) -> set[str]:
        try:
            return {paths.leaf(p) for p in await self.driver.list(paths.gc_claims_dir(run))}
        except PathNotFound:
            return set()

    async def _recheck(self, items: list[_Item]) -> set[str]:
        """Keys of items whose files were written since the scan (or within the grace): one
        :meth:`~drivers.base.StorageDriver.stat_many` for the batch (a missing file is no news)."""
        found = await self.driver.stat_many([p for i in items for p in i.check])
        return {i.key for i in items if any(p in found and not self._old(found[p]) for p in i.check)}

    async def _cleanup_run(self) -> None:
        """Remove this run's claims and batches, and (while the lease is surely ours) those of
        runs that died."""
        assert self.lease is not None
        runs = [paths.gc_run_dir(self.lease.run)]
        try:
            self.lease.check()
            runs += [r for r in await self.driver.list(paths.gc_runs_dir()) if r not in runs]
        except (LeaseLost, PathNotFound, StorageError):
            pass
        for run_dir in runs:
            try:
                await self.driver.delete(run_dir)
            except PathNotFound:
                pass
            except StorageError as exc:
                log.warning("garbage collection: cannot remove %s: %s", run_dir, exc)

    async def _record_last(self) -> None:
        record = {"finished": dt.datetime.now(dt.timezone.utc).isoformat(), **self.summary.to_json()}
        try:
            await self.driver.put_content(paths.gc_last_run(), json.dumps(record).encode())
        except StorageError as exc:
            log.warning("garbage collection: cannot record the run: %s", exc)


def _data_files(item: _Item) -> list[str]:
    return [p for p in item.files if p.endswith("/data")]


def _split_tag_key(key: str) -> tuple[str, str]:
    _, rest = key.split(":", 1)
    name, tag = rest.rsplit(":", 1)
    return name, tag


async def collect(store: Store, options: GCOptions, progress: Progress | None = None) -> GCSummary:
    """Run one collection (see :class:`GCOptions`); raises LeaseHeld when another one runs."""
    return await Collector(store, options, progress).run()
