"""One scan of the storage: every file below ``repositories/`` and ``blobs/``, classified.

Two prefix listings (``list_files``: one paginated listing per prefix on object stores, a
``scandir`` walk on local disk) give every link, tag, revision and blob with its size and
modification time; nothing is stat'ed one by one. The paths are read back through
:mod:`registry.store.paths`, the one home of the layout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable

from drivers.base import FileInfo, PathNotFound, StorageDriver

from ..reference import Digest, try_digest
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
    #: every file in the blob's directory, ``data`` included
    files: list[FileInfo]

    @property
    def size(self) -> int:
        return self.data.size if self.data is not None else 0


@dataclasses.dataclass
class Inventory:
    repositories: dict[str, Repository]
    blobs: dict[Digest, Blob]
    #: files below blobs/ that name no blob (left alone)
    stray_blob_files: int = 0

    def revision_count(self) -> int:
        return sum(len(r.revisions) for r in self.repositories.values())


async def scan(driver: StorageDriver, on_files: Callable[[int], None] | None = None, *,
               link_times: bool = True) -> Inventory:
    """List both prefixes concurrently and classify every file. Without ``link_times`` the files
    below repositories/ may come without sizes and times (offline collection needs neither)."""
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
