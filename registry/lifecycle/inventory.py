"""One scan of the storage: every file below ``repositories/`` and ``blobs/``, classified.

Two ways, chosen by the driver's :attr:`~drivers.base.StorageDriver.cheap_listing`:

- **full** (object stores): two prefix listings (``list_files``: one paginated listing per
  prefix) give every link, tag, revision and blob with its size and modification time; nothing
  is stat'ed one by one. The paths are read back through :mod:`registry.store.paths`.
- **names only** (local disk, where a listing costs what a stat costs): the layout's depth is
  known, so it lists directories level by level (``blobs/<alg>/<xx>/`` names every blob,
  ``<repo>/_layers/<alg>/`` every layer link, ``_manifests/revisions/<alg>/`` every revision,
  ``_manifests/tags/`` every tag...), one batch of listings per level, and stats only each
  blob's ``data``, each revision link and each tag's ``current`` link. The inventory is then
  *partial*: the other files of a blob's directory and the times of layer links and index
  entries are not known; :func:`complete_blobs` and :func:`details` fetch them for the few
  items the sweep may delete. It finds the same blobs, revisions, tags, links and index
  entries as the full scan (tested).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Iterator

from drivers.base import FileInfo, PathNotFound, StorageDriver

from ..reference import DIGEST_ALGORITHMS, Digest, try_digest
from ..store import paths


@dataclasses.dataclass
class Repository:
    name: str
    #: manifest digest -> its revision link
    revisions: dict[Digest, FileInfo] = dataclasses.field(default_factory=dict)
    #: manifest digest -> the other files of its revision directory (signed schema 1 bytes)
    revision_extras: dict[Digest, list[FileInfo]] = dataclasses.field(default_factory=dict)
    #: tag -> its current link (the digest is read by :func:`read_tags`)
    tags: dict[str, FileInfo] = dataclasses.field(default_factory=dict)
    #: tag -> the digest its current link names (None: unreadable or malformed)
    tag_targets: dict[str, Digest | None] = dataclasses.field(default_factory=dict)
    #: manifest digest -> the tag history entries naming it, as (tag, file)
    tag_index: dict[Digest, list[tuple[str, FileInfo]]] = dataclasses.field(default_factory=dict)
    #: blob digest -> its ``_layers`` link
    layers: dict[Digest, FileInfo] = dataclasses.field(default_factory=dict)
    #: manifest digest -> our reverse tag index files for it (entries and marker)
    reverse: dict[Digest, list[FileInfo]] = dataclasses.field(default_factory=dict)
    #: referrer digest -> our referrers-index entries naming it
    referrer_entries: dict[Digest, list[FileInfo]] = dataclasses.field(default_factory=dict)
    uploads: dict[str, list[FileInfo]] = dataclasses.field(default_factory=dict)
    other: list[FileInfo] = dataclasses.field(default_factory=list)

    def all_files(self) -> list[FileInfo]:
        out: list[FileInfo] = [*self.revisions.values(), *self.tags.values(), *self.layers.values(), *self.other]
        for group in (self.revision_extras, self.reverse, self.referrer_entries, self.uploads):
            for files in group.values():
                out.extend(files)
        for entries in self.tag_index.values():
            out.extend(f for _, f in entries)
        return out


@dataclasses.dataclass
class Blob:
    digest: Digest
    #: the ``data`` file (None when only other files are left in the blob's directory)
    data: FileInfo | None
    #: every file in the blob's directory, ``data`` included (a partial scan: only ``data``
    #: until :func:`complete_blobs` lists the directory)
    files: list[FileInfo]
    listed: bool = True

    @property
    def size(self) -> int:
        return self.data.size if self.data is not None else 0

    def found_data(self, info: FileInfo) -> None:
        """A partial scan found the ``data`` file."""
        self.data = info
        self.files = [info]


@dataclasses.dataclass
class Inventory:
    repositories: dict[str, Repository]
    blobs: dict[Digest, Blob]
    #: files below blobs/ that name no blob (left alone)
    stray_blob_files: int = 0
    #: a names-only scan (see the module docstring): revision extras unknown, blob directories
    #: unlisted, layer links and index entries without sizes and times
    partial: bool = False

    def revision_count(self) -> int:
        return sum(len(r.revisions) for r in self.repositories.values())


async def scan(driver: StorageDriver, on_files: Callable[[int], None] | None = None, *,
               link_times: bool = True, names_only: bool = False) -> Inventory:
    """List both prefixes concurrently and classify every file. Without ``link_times`` the files
    below repositories/ may come without sizes and times (offline collection needs neither).
    With ``names_only`` (for a driver with cheap listings) a partial inventory by names."""
    if names_only:
        return await _scan_names(driver, on_files)
    repositories: dict[str, Repository] = {}
    blobs: dict[Digest, Blob] = {}
    stray = 0

    async def repos() -> None:
        async for page in driver.list_files(paths.REPOSITORIES, details=link_times):
            for info in page:
                _add_repository_file(repositories, info)
            if on_files:
                on_files(len(page))

    async def blob_files() -> None:
        nonlocal stray
        async for page in driver.list_files(paths.blobs_root()):
            for info in page:
                parsed = paths.parse_blob_file(info.path)
                if parsed is None:
                    stray += 1
                    continue
                d, name = parsed
                blob = blobs.get(d)
                if blob is None:
                    blob = blobs[d] = Blob(d, None, [])
                blob.files.append(info)
                if name == "data":
                    blob.data = info
            if on_files:
                on_files(len(page))

    await asyncio.gather(repos(), blob_files())
    return Inventory(repositories, blobs, stray)


_Handler = Callable[[list[str]], None]


class _Walk:
    """A breadth-first walk by names: the next level's directories, each with what to do with its
    children's names (which adds the level after), and the files to stat at the end."""

    def __init__(self) -> None:
        self.next: dict[str, _Handler] = {}
        #: path -> what to do with its details (not called when it is missing or a directory)
        self.to_stat: dict[str, Callable[[FileInfo], None]] = {}

    async def run(self, driver: StorageDriver, on_files: Callable[[int], None] | None) -> None:
        while self.next:
            level, self.next = self.next, {}
            listed = await driver.list_children(list(level))
            for directory, names in listed.items():
                level[directory](names)
            if on_files:
                on_files(sum(len(n) for n in listed.values()))
        for path, info in (await driver.stat_many(list(self.to_stat))).items():
            if not info.is_dir:
                self.to_stat[path](info)


async def _scan_names(driver: StorageDriver, on_files: Callable[[int], None] | None) -> Inventory:
    """The names-only scan: breadth first, one :meth:`list_children` batch per level of the
    layout, then one :meth:`stat_many` batch for the files whose existence and times matter."""
    repositories: dict[str, Repository] = {}
    blobs: dict[Digest, Blob] = {}
    stray = 0
    bw, rw = _Walk(), _Walk()  # blobs/ and repositories/: walked side by side
    #: encoded digest -> its one Digest (a layer is named by its blob and many repositories' links)
    interned: dict[str, Digest] = {}

    def digest(alg: str, enc: str) -> Digest | None:
        d = interned.get(enc)
        if d is None or d.algorithm != alg:
            d = paths.digest_of(alg, enc)
            if d is not None:
                interned[enc] = d
        return d

    def digests(alg: str, names: list[str]) -> Iterator[Digest]:
        """The valid digests among directory names (others are not the layout's: skipped)."""
        for enc in names:
            d = digest(alg, enc)
            if d is not None:
                yield d

    def blob_prefixes(alg: str) -> _Handler:
        def on(names: list[str]) -> None:
            for prefix in names:
                if len(prefix) == 2:
                    bw.next[paths.blob_prefix_dir(alg, prefix)] = blob_dirs(alg, prefix)
        return on

    def blob_dirs(alg: str, prefix: str) -> _Handler:
        def on(names: list[str]) -> None:
            nonlocal stray
            for enc in names:
                d = digest(alg, enc)
                if d is None or enc[:2] != prefix:
                    stray += 1
                    continue
                blob = blobs[d] = Blob(d, None, [], listed=False)
                bw.to_stat[paths.blob_data(d)] = blob.found_data
        return on

    def per_algorithm(walk: _Walk, directory: Callable[[str], str], handler: Callable[[str], _Handler]) -> _Handler:
        """For a directory whose children are digest algorithms."""
        def on(names: list[str]) -> None:
            for alg in names:
                if alg in DIGEST_ALGORITHMS:
                    walk.next[directory(alg)] = handler(alg)
        return on

    def namespace(name: str, directory: str) -> _Handler:
        """A directory below repositories/: a repository when it holds ``_``-prefixed areas;
        its other children may be (or hold) nested repositories."""
        def on(names: list[str]) -> None:
            areas = [n for n in names if paths.is_repository_area(n)]
            if name and areas:
                repo = repositories[name] = Repository(name)
                for area in areas:
                    handler = _area_handler(repo, area)
                    if handler is not None:
                        rw.next[paths.repo_area(name, area)] = handler
            for child in names:
                if not paths.is_repository_area(child):
                    rw.next[f"{directory}/{child}"] = namespace(f"{name}/{child}" if name else child, f"{directory}/{child}")
        return on

    def _area_handler(repo: Repository, area: str) -> _Handler | None:
        name = repo.name
        if area == paths.LAYERS_AREA:
            return per_algorithm(rw, lambda a: paths.layers_root(name, a), lambda a: layer_links(repo, a))
        if area == paths.MANIFESTS_AREA:
            def manifests(children: list[str]) -> None:
                if "revisions" in children:
                    rw.next[paths.revisions_root(name)] = per_algorithm(
                        rw, lambda a: paths.revisions_dir(name, a), lambda a: revision_links(repo, a))
                if "tags" in children:
                    rw.next[paths.tags_dir(name)] = tags(repo)
            return manifests
        if area == paths.TAGSBYDIGEST_AREA:
            return per_algorithm(rw, lambda a: paths.digest_tags_root(name, a), lambda a: reverse_dirs(repo, a))
        if area == paths.REFERRERS_AREA:
            return per_algorithm(rw, lambda a: paths.referrers_root(name, a), lambda a: subjects(repo, a))
        return None  # uploads and anything else: the collector never deletes them

    def layer_links(repo: Repository, alg: str) -> _Handler:
        def on(names: list[str]) -> None:
            for d in digests(alg, names):
                repo.layers[d] = FileInfo(paths.layer_link(repo.name, d), 0, None, False)
        return on

    def revision_links(repo: Repository, alg: str) -> _Handler:
        def on(names: list[str]) -> None:
            for d in digests(alg, names):
                rw.to_stat[paths.revision_link(repo.name, d)] = lambda info, _d=d: _file(repo.revisions, _d, info)
        return on

    def tags(repo: Repository) -> _Handler:
        def on(names: list[str]) -> None:
            for tag in names:
                rw.to_stat[paths.tag_current_link(repo.name, tag)] = lambda info, _t=tag: _file(repo.tags, _t, info)
                rw.next[paths.tag_index_dir(repo.name, tag)] = per_algorithm(
                    rw, lambda a, _t=tag: paths.tag_index_root(repo.name, _t, a),  # type: ignore[misc]
                    lambda a, _t=tag: tag_history(repo, _t, a))  # type: ignore[misc]
        return on

    def tag_history(repo: Repository, tag: str, alg: str) -> _Handler:
        def on(names: list[str]) -> None:
            for d in digests(alg, names):
                info = FileInfo(paths.tag_index_link(repo.name, tag, d), 0, None, False)
                repo.tag_index.setdefault(d, []).append((tag, info))
        return on

    def reverse_dirs(repo: Repository, alg: str) -> _Handler:
        def on(names: list[str]) -> None:
            for d in digests(alg, names):
                base = paths.digest_tags_dir(repo.name, d)
                rw.next[base] = lambda entries, _d=d, _b=base: repo.reverse.setdefault(_d, []).extend(
                    FileInfo(f"{_b}/{e}", 0, None, False) for e in entries)
        return on

    def subjects(repo: Repository, alg: str) -> _Handler:
        def on(names: list[str]) -> None:
            for subject in digests(alg, names):
                rw.next[paths.referrers_dir(repo.name, subject)] = referrer_entries(repo, subject)
        return on

    def referrer_entries(repo: Repository, subject: Digest) -> _Handler:
        def on(names: list[str]) -> None:
            for entry in names:
                referrer_alg, _, enc = entry.partition("-")
                d = digest(referrer_alg, enc)
                if d is not None:
                    info = FileInfo(paths.referrer_entry(repo.name, subject, d), 0, None, False)
                    repo.referrer_entries.setdefault(d, []).append(info)
        return on

    bw.next[paths.blobs_root()] = per_algorithm(bw, paths.blobs_algorithm_dir, blob_prefixes)
    rw.next[paths.REPOSITORIES] = namespace("", paths.REPOSITORIES)
    await asyncio.gather(bw.run(driver, on_files), rw.run(driver, on_files))
    return Inventory(repositories, blobs, stray, partial=True)


def _file(into: dict, key: object, info: FileInfo) -> None:
    into[key] = info


async def complete_blobs(driver: StorageDriver, inventory: Inventory, digests: Iterable[Digest]) -> None:
    """Of a partial inventory: list (and stat) the directories of these blobs, so that each
    :class:`Blob` holds every file of its directory, as the full scan finds them."""
    todo = [b for b in (inventory.blobs.get(d) for d in digests) if b is not None and not b.listed]
    if not todo:
        return
    listed = await driver.list_children([paths.blob_dir(b.digest) for b in todo])
    found = {b.digest: [f"{paths.blob_dir(b.digest)}/{n}" for n in listed.get(paths.blob_dir(b.digest), ())]
             for b in todo}
    stats = await driver.stat_many([p for files in found.values() for p in files])
    for b in todo:
        b.files = [stats[p] for p in found[b.digest] if p in stats and not stats[p].is_dir]
        b.data = next((i for i in b.files if paths.leaf(i.path) == "data"), None)
        b.listed = True


async def details(driver: StorageDriver, infos: Iterable[FileInfo]) -> dict[str, FileInfo]:
    """Sizes and times of names-only entries (``modified`` None), by path; the ones that are
    gone (or are directories) are left out. Entries that have their details are kept as they are."""
    have: dict[str, FileInfo] = {}
    want: list[str] = []
    for info in infos:
        if info.modified is None:
            want.append(info.path)
        else:
            have[info.path] = info
    if want:
        for path, info in (await driver.stat_many(want)).items():
            if not info.is_dir:
                have[path] = info
    return have


def _add_repository_file(repositories: dict[str, Repository], info: FileInfo) -> None:
    f = paths.parse_repository_file(info.path)
    if f is None:
        return
    repo = repositories.get(f.repo)
    if repo is None:
        repo = repositories[f.repo] = Repository(f.repo)
    d = f.digest
    if f.kind == "layer" and d is not None:
        repo.layers[d] = info
    elif f.kind == "revision" and d is not None:
        repo.revisions[d] = info
    elif f.kind == "signed" and d is not None:
        repo.revision_extras.setdefault(d, []).append(info)
    elif f.kind == "tag" and f.tag is not None:
        repo.tags[f.tag] = info
    elif f.kind == "tag_index" and d is not None and f.tag is not None:
        repo.tag_index.setdefault(d, []).append((f.tag, info))
    elif f.kind == "tagsbydigest" and d is not None:
        repo.reverse.setdefault(d, []).append(info)
    elif f.kind == "referrer" and d is not None:
        repo.referrer_entries.setdefault(d, []).append(info)
    elif f.kind == "upload" and f.upload is not None:
        repo.uploads.setdefault(f.upload, []).append(info)
    else:
        repo.other.append(info)


async def read_tags(driver: StorageDriver, inventory: Inventory, parallelism: int = 64,
                    on_tag: Callable[[], None] | None = None) -> None:
    """Read every tag's current link (what ``--delete-untagged`` and retention need)."""
    limit = asyncio.Semaphore(parallelism)

    async def one(repo: Repository, tag: str, info: FileInfo) -> None:
        async with limit:
            try:
                raw = await driver.get_content(info.path)
            except PathNotFound:  # deleted since the scan: it names nothing any more
                repo.tag_targets[tag] = None
            else:
                repo.tag_targets[tag] = try_digest(raw.decode("ascii", "replace").strip())
        if on_tag:
            on_tag()

    await asyncio.gather(
        *(one(r, t, i) for r in inventory.repositories.values() for t, i in r.tags.items())
    )


def newest(*infos: FileInfo | None) -> dt.datetime | None:
    """The latest modification time among files (None when none has one)."""
    times = [i.modified for i in infos if i is not None and i.modified is not None]
    return max(times) if times else None
