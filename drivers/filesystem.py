"""The ``filesystem`` driver: blobs as files under ``rootdirectory`` on local disk.

It keeps the generic driver's listing, stat, walk and delete (LocalFileSystem calls in
worker threads) and does natively what matters for speed and safety:

- writes go straight into the file at the path, about 4 MiB per ``writev`` of the caller's
  own pieces (no copy), so an upload's ``data`` file is what a resumed writer (this or another
  process, or the reference registry on the same directory) appends to; each write starts its
  writeback at once (``sync_file_range``), so the fsync at commit overlaps the receive;
- ``put_content`` writes a temporary file beside the target and ``os.replace``-s it, so a
  reader never sees half a link or manifest; missing parent directories are built under a
  temporary name around the file and renamed into place, so a directory (a new tag, a new
  repository) never appears without the file it was made for, not even after a kill -9.
  Temporary names carry ``~``, which no driver path may hold, so listings never show them
  (and remove the ones a crash left, once they are old);
- a directory is deleted by renaming it to a hidden name first, then removing that: the tree
  disappears at once for readers and for writers racing the delete;
- directory creation survives concurrent pruning: a prune only removes empty directories, our
  temporary entries keep the directories we are about to use non-empty, and a directory
  removed on our way anyway (a delete) just means starting over;
- reads are 1 MiB ``pread`` calls on one open file; ``local_path`` lets the HTTP layer
  serve a blob with sendfile;
- moves are ``os.replace``; directories left empty by delete or move are removed, also when
  a crash's temporary file is all they still hold (it would keep a deleted tag listed).

Blocking calls run in the driver's own thread pool (``maxthreads``), never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import datetime as dt
import errno
import os
import posixpath
import random
import re
import shutil
import stat
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fsspec.implementations.local import LocalFileSystem

from . import crashpoints

from .base import (
    ContentWrite, DriverConfigError, FileInfo, FileWriter, InvalidOffset, PathNotFound, StorageError,
    check_dir, is_valid_component, walk_key,
)
from .generic import FileObjectWriter, FsspecDriver
from .params import Params

T = TypeVar("T")

DEFAULT_ROOT = "/var/lib/registry"
_RETRIES = 100  # attempts when a concurrent delete removes a parent directory we just made (each is cheap; racing deletes and writers of one tree are finite)
#: attempts made at once before each further one waits a random moment (worker threads only):
#: writers and deletes that keep undoing each other in lockstep drift apart instead
_RETRIES_AT_ONCE = 4
#: directories whose listing is remembered (per process), and how old a directory's mtime must be
#: before its listing is: a change within the same timestamp tick must not be able to hide
_LIST_CACHE_SIZE = 256
#: files up to this size (links, manifests, hash states) are read, and paths stat'ed, on the event
#: loop: a bounded open/fstat/read from the page cache costs less than a hop to a worker thread
_INLINE_READ = 64 * 1024
_LIST_CACHE_MIN_AGE = 2.0
#: temporary names of put_content and delete (``~`` is in no driver path, so listings skip them)
_LEFTOVER_RE = re.compile(r"~[0-9a-f]{32}~(?:tmp|del)$")
#: seconds after which such an entry is a crash's leftover, removed when a listing meets it
_LEFTOVER_MIN_AGE = 600.0
#: seconds after which a temporary file no longer holds up a prune of its directory: a live
#: small write renames its file within milliseconds, so a younger one may still be in use (and
#: dropping it would make its writer start over, again and again under a racing delete)
_PRUNE_TEMPORARY_MIN_AGE = 5.0
#: worker threads a bulk listing or bulk delete keeps busy at once
_BULK_THREADS = 16


def check_root(root: str) -> bool:
    """Whether the root directory exists; DriverConfigError when it is not a writable directory
    or cannot be created. Writes nothing: like distribution, a missing root (with its parents)
    is created by the first write (``registry serve`` creates it at start)."""
    key = "storage.filesystem.rootdirectory"
    existing = root
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = f"{root} exists but" if existing == root else f"cannot create {root}: {existing}"
        raise DriverConfigError(f"{key}: {where} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = f"{root} is" if existing == root else f"cannot create {root}: {existing} is"
        raise DriverConfigError(f"{key}: {where} not writable")
    return existing == root


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2) from libc, or None where it does not exist."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()
#: threads that only run fsync calls, so the fsyncs of one put_contents run at once: the journal
#: of ext4 or xfs commits concurrent fsyncs together (4 at once cost about what 1 costs here)
_SYNC_THREADS = 32
_sync_pool: ThreadPoolExecutor | None = None
_sync_pool_lock = threading.Lock()


def _fsync_all(fds: Sequence[int]) -> None:
    """fsync every descriptor, all at once; raises the first failure after every call ended."""
    if not fds:
        return
    global _sync_pool
    if len(fds) == 1:
        os.fsync(fds[0])
        return
    with _sync_pool_lock:
        if _sync_pool is None:
            _sync_pool = ThreadPoolExecutor(max_workers=_SYNC_THREADS, thread_name_prefix="fs-sync")
        pool = _sync_pool
    futures = [pool.submit(os.fsync, fd) for fd in fds[1:]]
    failure: OSError | None = None
    try:
        os.fsync(fds[0])
    except OSError as exc:
        failure = exc
    for future in futures:
        try:
            future.result()
        except OSError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def _fsync_dirs(directories: Sequence[str]) -> None:
    """Make the entries just renamed into ``directories`` durable (a directory deleted
    meanwhile has nothing left to make durable)."""
    fds = []
    try:
        for directory in directories:
            try:
                fds.append(os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            except (FileNotFoundError, NotADirectoryError):
                continue
        _fsync_all(fds)
    finally:
        for fd in fds:
            os.close(fd)


@dataclasses.dataclass
class _Pending:
    """A temporary file, or a temporary copy of a missing directory holding several files, of
    one :meth:`FilesystemDriver.put_contents` run, waiting for its fsync and rename."""

    tmp: str
    #: where ``tmp`` goes: the file's path, or the outermost missing directory
    final: str
    stage: int
    #: (os path, data, durable) of every file inside
    writes: list[tuple[str, bytes, bool]] = dataclasses.field(default_factory=list)
    #: open descriptors of the durable files, fsynced before the rename
    fds: list[int] = dataclasses.field(default_factory=list)

    @property
    def durable(self) -> bool:
        return any(durable for _, _, durable in self.writes)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


_BARRIER = object()
_SYNC_FILE_RANGE_WRITE = 2
_IOV_MAX = 1024


def _writev_all(fd: int, pieces: list[bytes]) -> None:
    """Write every piece, in order, with as few ``writev`` calls as the kernel allows."""
    views = [memoryview(p) for p in pieces if len(p)]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while written and views:
            if written >= views[0].nbytes:
                written -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][written:]
                written = 0


class _LocalFileWriter(FileObjectWriter):
    """Writes keep the caller's pieces (an HTTP body arrives in 64-256 KiB ``bytes``) in a list
    instead of copying them into the gathering buffer; a worker thread writes a list of about
    ``flush_size`` bytes in one hop, one list in flight. Each flush also starts the writeback of
    what it wrote (sync_file_range, without waiting), so the fsync at commit finds the data mostly
    on disk and disk writes overlap the receive instead of following it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pieces: list[bytes] = []
        self._pieces_size = 0

    @property
    def size(self) -> int:
        return super().size + self._pieces_size

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self._require_open("write")
        n = memoryview(data).nbytes
        if n:
            # bytes are immutable: kept as they are; anything else may be reused by the caller
            self._pieces.append(data if isinstance(data, bytes) else bytes(data))
            self._pieces_size += n
            if self._pieces_size >= self.flush_size:
                await self._write_pieces()
        return n

    async def _write_pieces(self) -> None:
        """Hand the pieces gathered so far to the worker thread (after the previous hand-over)."""
        await self._wait_pending()
        pieces, size = self._pieces, self._pieces_size
        self._pieces, self._pieces_size = [], 0
        self._flushed += size
        self._pending = asyncio.ensure_future(self._flush_list(pieces))

    async def _flush_list(self, pieces: list[bytes]) -> None:
        with self._driver._errors(self.path):
            await self._driver._run(self._write_list, pieces)

    def _write_list(self, pieces: list[bytes]) -> None:
        _writev_all(self._file.fileno(), pieces)
        self._start_writeback()

    def _write_all(self, data: bytearray) -> None:
        super()._write_all(data)
        self._start_writeback()

    def _start_writeback(self) -> None:
        if _sync_file_range is not None:
            _sync_file_range(self._file.fileno(), 0, 0, _SYNC_FILE_RANGE_WRITE)

    async def commit(self) -> None:
        self._require_open("commit")
        if self._pieces:
            try:
                await self._write_pieces()
            except BaseException:
                self._state = "failed"
                await super().close()  # releases the file
                raise
        await super().commit()

    async def close(self) -> None:
        if self._state == "open" and self._pieces:
            try:
                await self._write_pieces()
            except BaseException:
                self._state = "failed"
                raise
            finally:
                await super().close()
            return
        await super().close()

    async def cancel(self) -> None:
        self._pieces, self._pieces_size = [], 0
        await super().cancel()

    def _sync(self) -> None:
        os.fsync(self._file.fileno())


class FilesystemDriver(FsspecDriver):
    name = "filesystem"
    real_directories = True
    cheap_listing = True

    def __init__(self, rootdirectory: str = DEFAULT_ROOT, maxthreads: int = 100) -> None:
        root = os.path.abspath(rootdirectory)
        pool = ThreadPoolExecutor(max_workers=maxthreads, thread_name_prefix="fs-driver")
        super().__init__(LocalFileSystem(), root, executor=pool)
        self._listings: OrderedDict[str, tuple[tuple[int, int], tuple[str, ...]]] = OrderedDict()
        self._listings_lock = threading.Lock()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "FilesystemDriver":
        p = cls.params(params)
        root = p.path("rootdirectory", DEFAULT_ROOT) or DEFAULT_ROOT
        root = os.path.abspath(root)  # relative to the working directory, like ./data
        check_root(root)
        return cls(root, p.int("maxthreads", 100, minimum=1))

    def local_path(self, path: str) -> str | None:
        return self._key(self.check(path))

    async def list(self, path: str) -> list[str]:
        """Names only (``os.listdir``, no stat per entry): a tag list of 1000 tags took 90 ms
        through fsspec's detailed listing, 1.5 ms this way. Same rules as the generic list."""
        check_dir(self.name, path)
        with self._errors(path, "list"):
            remembered = self._remembered(path)  # on the loop: one stat and a lookup
            if remembered is not None:
                return remembered
            return await self._run(self._list_names, path)

    def _remembered(self, path: str) -> list[str] | None:
        """The cached listing of ``path`` if the directory is unchanged since, else None."""
        key = self._key(path)
        try:
            st = os.stat(key)
        except OSError:
            return None  # the thread path raises the right error
        with self._listings_lock:
            cached = self._listings.get(key)
            if cached is None or cached[0] != (st.st_mtime_ns, st.st_ino):
                return None
            self._listings.move_to_end(key)
            return list(cached[1])

    def _list_names(self, path: str) -> list[str]:
        """The listing, from the per-process cache while the directory's mtime and inode are those
        it was read under (stat'ed before reading: a change during the read is a miss next time)."""
        key = self._key(path)
        try:
            st = os.stat(key)
        except FileNotFoundError:
            if path == "/":
                return []
            raise PathNotFound(self.name, path) from None
        except NotADirectoryError:
            raise PathNotFound(self.name, path) from None
        if not stat.S_ISDIR(st.st_mode):
            raise PathNotFound(self.name, path, "is a file")
        version = (st.st_mtime_ns, st.st_ino)
        with self._listings_lock:
            cached = self._listings.get(key)
            if cached is not None and cached[0] == version:
                self._listings.move_to_end(key)
                return list(cached[1])
        result = self._read_names(path, key)
        if time.time() - st.st_mtime_ns / 1e9 > _LIST_CACHE_MIN_AGE:
            with self._listings_lock:
                self._listings[key] = (version, tuple(result))
                self._listings.move_to_end(key)
                while len(self._listings) > _LIST_CACHE_SIZE:
                    self._listings.popitem(last=False)
        return result

    def _read_names(self, path: str, key: str) -> list[str]:
        try:
            names = os.listdir(key)
        except FileNotFoundError:
            if path == "/":
                return []
            raise PathNotFound(self.name, path) from None
        except NotADirectoryError:
            raise PathNotFound(self.name, path, "is a file") from None
        base = "" if path == "/" else path.rstrip("/")
        if any("~" in name for name in names):
            _remove_stale_leftovers(key, names)
        names = sorted(name for name in names if is_valid_component(name))  # one level: name order is walk order
        if not names and path != "/":
            raise PathNotFound(self.name, path)  # an empty directory does not exist
        return [f"{base}/{name}" for name in names]

    async def stat(self, path: str) -> FileInfo:
        self.check(path)
        with self._errors(path, "stat"):
            return _file_info(path, os.stat(self._key(path)))  # one bounded syscall: inline

    async def get_content(self, path: str) -> bytes:
        self.check(path)
        key = self._key(path)
        with self._errors(path, "get_content"):
            data = _read_small(key, _INLINE_READ)
            if data is None:
                data = await self._run(_read_whole, key)
        return data

    async def _children(self, path: str) -> list[FileInfo]:
        """One ``os.scandir`` per directory for walk (fsspec's detailed listing is slower)."""
        check_dir(self.name, path)
        with self._errors(path, "list"):
            return await self._run(self._scan, path)

    def _scan(self, path: str) -> list[FileInfo]:
        base = "" if path == "/" else path
        out = []
        try:
            with os.scandir(self._key(path)) as entries:
                for entry in entries:
                    if not is_valid_component(entry.name):
                        if "~" in entry.name:
                            _remove_stale_leftovers(self._key(path), [entry.name])
                        continue
                    try:
                        out.append(_file_info(f"{base}/{entry.name}", entry.stat()))
                    except FileNotFoundError:
                        continue  # deleted while we looked
        except FileNotFoundError:
            if path == "/":
                return []
            raise
        except NotADirectoryError:
            raise PathNotFound(self.name, path, "is a file") from None
        if not out and path != "/":
            raise PathNotFound(self.name, path)  # an empty directory does not exist
        out.sort(key=lambda info: walk_key(info.path))
        return out

    async def list_files(self, path: str, *, details: bool = True) -> AsyncIterator[list[FileInfo]]:
        """``os.scandir`` walks in worker threads, :data:`_BULK_THREADS` subtrees at once (a
        metadata call costs milliseconds on a busy disk; in parallel they overlap); without
        ``details`` no file is stat'ed."""
        check_dir(self.name, path)
        base = "" if path == "/" else path
        with self._errors(path):
            files, frontier = await self._run(_scan_dir, self._key(path), base, details)
        if files:
            yield files
        for _ in range(3):  # widen the frontier: blobs/ has one child (sha256) but 256 below it
            if len(frontier) >= _BULK_THREADS or not frontier:
                break
            level = await asyncio.gather(*(self._run(_scan_dir, key, sub, details) for key, sub in frontier))
            frontier = []
            for found, dirs in level:
                if found:
                    yield found
                frontier.extend(dirs)
        limit = asyncio.Semaphore(_BULK_THREADS)

        async def subtree(key: str, sub: str) -> list[FileInfo]:
            async with limit:
                return await self._run(lambda: [i for page in _scan_tree(key, sub, details=details) for i in page])

        for done in asyncio.as_completed([subtree(k, s) for k, s in frontier]):
            with self._errors(path):
                found = await done
            if found:
                yield found

    async def list_children(self, directories: Sequence[str]) -> dict[str, list[str]]:
        """One worker-thread job of ``os.listdir`` calls (names only, no stat per entry)."""
        keys = [(d, self._key(check_dir(self.name, d))) for d in directories]
        if not keys:
            return {}
        with self._errors(directories[0]):
            return await self._run(_list_all, keys)

    async def stat_many(self, paths: Sequence[str]) -> dict[str, FileInfo]:
        """One worker-thread job of ``os.stat`` calls."""
        keys = [(p, self._key(self.check(p))) for p in paths]
        if not keys:
            return {}
        with self._errors(paths[0]):
            return await self._run(_stat_all, keys)

    async def delete_files(self, paths: list[str]) -> None:
        """Unlinks in worker threads, :data:`_BULK_THREADS` batches at once, then the directories
        left empty (each unlink or rmdir is a journaled metadata write: parallel ones overlap)."""
        keys = [self._key(self.check(p)) for p in paths]
        batch = 64
        limit = asyncio.Semaphore(_BULK_THREADS)

        async def run(chunk: list[str]) -> None:
            async with limit:
                with self._errors(self._path(chunk[0])):
                    await self._run(self._unlink_all, chunk)

        await asyncio.gather(*(run(keys[i : i + batch]) for i in range(0, len(keys), batch)))

    def _unlink_all(self, keys: list[str]) -> None:
        parents = set()
        for key in keys:
            try:
                os.unlink(key)
            except FileNotFoundError:
                continue
            except IsADirectoryError:
                raise StorageError(self.name, self._path(key), "is a directory") from None
            parents.add(posixpath.dirname(key))
        for parent in sorted(parents, key=len, reverse=True):  # deepest first
            self._prune(posixpath.join(parent, "-"))  # _prune starts at the parent of its argument

    # -- helpers -------------------------------------------------------------------------
    def _with_parent(self, os_path: str, fn: Callable[[], T]) -> T:
        """Run ``fn``, creating ``os_path``'s parents when it fails for want of them.

        A concurrent delete or prune may remove an empty parent at any moment: between our
        makedirs and ``fn``, or inside makedirs itself (it creates one level after the other,
        and a prune can remove a level it just made). Both just mean "try again"."""
        for attempt in range(_RETRIES):
            try:
                return fn()
            except FileNotFoundError:
                _back_off(attempt)
                self._makedirs(os.path.dirname(os_path))
        return fn()

    def _makedirs(self, directory: str) -> None:
        try:
            os.makedirs(directory, exist_ok=True)
        except FileNotFoundError:
            pass  # a prune removed a level we had just made: the caller's next attempt makes it again
        except (FileExistsError, NotADirectoryError) as exc:
            raise StorageError(self.name, self._path(directory), "a parent is a file") from exc

    def _first_missing(self, directory: str) -> str | None:
        """The outermost missing directory on the way from the root to ``directory`` (None when
        ``directory`` exists). StorageError when a file stands where a directory should be."""
        top = None
        current = directory
        while len(current) > len(self.root):
            try:
                st = os.stat(current)
            except FileNotFoundError:
                top, current = current, posixpath.dirname(current)
                continue
            except NotADirectoryError:
                raise StorageError(self.name, self._path(directory), "a parent is a file") from None
            if not stat.S_ISDIR(st.st_mode):
                raise StorageError(self.name, self._path(directory), "a parent is a file")
            return top
        if top is not None:
            os.makedirs(self.root, exist_ok=True)  # the root itself is never pruned
        return top

    def _place(self, os_path: str, build: Callable[[str], None]) -> None:
        """Make the file ``build(tmp)`` writes appear at ``os_path`` in one step, parents included.

        When the parent exists, ``build`` writes a temporary file beside the target, which is then
        renamed over it. When directories are missing, ``build`` writes into a temporary copy of
        the outermost missing one, which is then renamed into place: a directory never appears
        without the file it was made for, not even after a crash (a leftover carries ``~`` in its
        name, which listings skip). Every temporary entry sits in a directory that exists, so a
        concurrent prune (``rmdir`` of an emptied directory) cannot remove a directory we are
        about to use, except one holding nothing but temporary files (a prune drops those, so
        a crash's leftover never keeps a directory); when a prune or a concurrent delete
        removes one anyway, we start over."""
        for attempt in range(_RETRIES):
            _back_off(attempt)
            top = self._first_missing(posixpath.dirname(os_path))
            tmp = f"{top or os_path}~{uuid.uuid4().hex}~tmp"
            try:
                if top is None:
                    build(tmp)
                    crashpoints.reached("fs.put.before_rename", os_path)
                    os.replace(tmp, os_path)
                else:
                    os.mkdir(tmp)
                    inner = tmp + os_path[len(top):]
                    os.makedirs(posixpath.dirname(inner), exist_ok=True)
                    build(inner)
                    crashpoints.reached("fs.put.before_rename", os_path)
                    os.rename(tmp, top)
                crashpoints.reached("fs.put.after", os_path)
                return
            except FileNotFoundError:
                _remove_quietly(tmp)  # a directory on our way was deleted meanwhile: start over
                if top is None and posixpath.dirname(os_path) == self.root:
                    os.makedirs(self.root, exist_ok=True)  # the root itself (never pruned) is missing
            except OSError as exc:
                _remove_quietly(tmp)
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and top is not None:
                    continue  # another writer made that directory first: use it
                if exc.errno in (errno.ENOTDIR, errno.EISDIR):
                    raise StorageError(self.name, self._path(os_path), "a parent is a file, or the path a directory") from exc
                raise
            except BaseException:
                _remove_quietly(tmp)
                raise
        raise StorageError(self.name, self._path(os_path), "its directories kept being removed while it was written")

    # -- overrides -------------------------------------------------------------------------
    async def put_content(self, path: str, data: bytes) -> None:
        self.check(path)
        with self._errors(path):
            await self._run(self._put, self._key(path), bytes(data))

    def _put(self, os_path: str, data: bytes) -> None:
        def write(target: str) -> None:
            with open(target, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

        self._place(os_path, write)

    async def put_contents(self, stages: Sequence[Sequence[ContentWrite]]) -> None:
        """Every file of every stage in one worker-thread hop: the files are written to temporary
        names first (those of a new directory into one temporary copy of it), the durable ones
        fsynced all at once, then renamed in stage order, then their directories fsynced all at
        once. Two journal commits in all, where a put_content per file costs one each and the
        stages follow one another. Visibility keeps the stage order exactly (the renames are
        made in that order by one thread); after a power cut the journal of ext4 or xfs replays
        metadata operations in the order they were made, so a file that survives implies the
        files of earlier stages survive too. A write into a directory that an earlier stage of
        the same run creates waits for that stage's rename (one more round, only then)."""
        planned = [[(self._key(self.check(w.path)), bytes(w.data), w.durable) for w in stage] for stage in stages]
        first = next((w.path for stage in stages for w in stage), "/")
        visible: list[str] = []  # os paths renamed into place (filled by the worker thread)
        try:
            with self._errors(first):
                await self._run(self._put_many, planned, visible)
        except StorageError as exc:
            exc.visible = frozenset(self._path(v) for v in visible)
            raise

    def _put_many(self, stages: list[list[tuple[str, bytes, bool]]], visible: list[str]) -> None:
        pending: list[_Pending] = []
        by_top: dict[str, _Pending] = {}
        try:
            for number, stage in enumerate(stages):
                for os_path, data, durable in stage:
                    built = self._build(os_path, data, durable, number, by_top)
                    if built is _BARRIER:  # its directory comes with an earlier stage: publish that first
                        self._publish(pending, visible)
                        pending.clear()
                        by_top.clear()
                        built = self._build(os_path, data, durable, number, by_top)
                    if isinstance(built, _Pending):
                        pending.append(built)
            self._publish(pending, visible)
            pending.clear()
        except BaseException:
            for p in pending:
                p.close()
                _remove_quietly(p.tmp)
            raise

    def _build(self, os_path: str, data: bytes, durable: bool, stage: int,
               by_top: dict[str, _Pending]) -> _Pending | object | None:
        """Write one file under a temporary name; returns its new :class:`_Pending`, None when it
        joined one of the same stage (same missing directory), or ``_BARRIER``."""
        fresh = False  # after a failure inside a joined directory (a delete took it): a new one
        for attempt in range(_RETRIES):
            _back_off(attempt)
            top = self._first_missing(posixpath.dirname(os_path))
            joined = by_top.get(top) if top is not None and not fresh else None
            if joined is not None and joined.stage != stage:
                return _BARRIER
            if joined is not None:
                target, new = joined.tmp + os_path[len(top):], None  # type: ignore[arg-type]
            elif top is None:
                new = _Pending(f"{os_path}~{uuid.uuid4().hex}~tmp", os_path, stage)
                target = new.tmp
            else:
                new = _Pending(f"{top}~{uuid.uuid4().hex}~tmp", top, stage)
                target = new.tmp + os_path[len(top):]
            owner = joined or new
            assert owner is not None
            try:
                if new is not None and top is not None:
                    os.mkdir(new.tmp)
                if target != owner.tmp:
                    os.makedirs(posixpath.dirname(target), exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except (FileNotFoundError, FileExistsError):
                # a directory on our way was deleted meanwhile (makedirs says "exists" when the
                # one it just made is renamed away by a delete before it checks): again
                if new is not None:
                    _remove_quietly(new.tmp)
                fresh = True
                continue
            except (NotADirectoryError, IsADirectoryError) as exc:
                if new is not None:
                    _remove_quietly(new.tmp)
                raise StorageError(self.name, self._path(os_path), "a parent is a file, or the path a directory") from exc
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except BaseException:
                os.close(fd)
                if new is not None:
                    _remove_quietly(new.tmp)
                raise
            if durable:
                owner.fds.append(fd)
            else:
                os.close(fd)
            owner.writes.append((os_path, data, durable))
            if new is not None and top is not None:
                by_top[top] = new
            return new
        raise StorageError(self.name, self._path(os_path), "its directories kept being removed while it was written")

    def _publish(self, pending: list[_Pending], visible: list[str]) -> None:
        """fsync the durable files of ``pending`` at once, rename each into place in order,
        then fsync the directories that received a durable file at once."""
        try:
            _fsync_all([fd for p in pending for fd in p.fds])
        finally:
            for p in pending:
                p.close()
        directories: dict[str, None] = {}
        for index, p in enumerate(pending):
            for os_path, _, _ in p.writes:
                crashpoints.reached("fs.put.before_rename", os_path)
            try:
                os.rename(p.tmp, p.final)
            except OSError as exc:
                _remove_quietly(p.tmp)
                if exc.errno in (errno.ENOTDIR, errno.EISDIR):
                    for rest in pending[index + 1:]:
                        _remove_quietly(rest.tmp)
                    raise StorageError(self.name, self._path(p.final),
                                       "a parent is a file, or the path a directory") from exc
                if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                    for rest in pending[index + 1:]:
                        _remove_quietly(rest.tmp)
                    raise
                # a directory on the way was deleted, or another writer made ours first: each
                # file the one-file way (it starts over as often as needed)
                for os_path, data, _ in p.writes:
                    self._put(os_path, data)
            for os_path, _, _ in p.writes:
                visible.append(os_path)
                crashpoints.reached("fs.put.after", os_path)
            if p.durable:
                directories[posixpath.dirname(p.final)] = None
        _fsync_dirs(list(directories))

    async def reader(
        self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        self.check(path)
        with self._errors(path):
            fd, size = await self._run(_open_read, self._key(path))
        try:
            if offset < 0 or offset > size:
                raise InvalidOffset(self.name, path, offset)
            pos = offset
            while pos < size:
                with self._errors(path):
                    data = await self._run(os.pread, fd, min(chunk_size, size - pos), pos)
                if not data:
                    break  # truncated while we read
                pos += len(data)
                yield data
        finally:
            os.close(fd)

    async def _open_writer(self, path: str, key: str, append: bool) -> FileWriter:
        fileobj, size = await self._run(self._open_write, key, append)
        return _LocalFileWriter(self, path, key, fileobj, size)

    def _open_write(self, os_path: str, append: bool) -> tuple[Any, int]:
        if append:
            fd = os.open(os_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            fd = self._with_parent(os_path, lambda: os.open(os_path, flags, 0o644))
        try:
            size = os.fstat(fd).st_size
            return os.fdopen(fd, "ab" if append else "wb", buffering=0), size
        except BaseException:
            os.close(fd)
            raise

    async def _move_file(self, src: str, dst: str) -> None:
        await self._run(self._replace, src, dst)

    def _replace(self, src: str, dst: str) -> None:
        def replace() -> None:
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                if not os.path.lexists(src):
                    raise PathNotFound(self.name, self._path(src)) from None
                raise

        self._with_parent(dst, replace)

    async def _delete_tree(self, key: str) -> None:
        await self._run(self._detach_and_remove, key)

    def _detach_and_remove(self, key: str) -> None:
        """Delete a directory tree as one step for everyone else: rename it to a hidden name
        (``~`` is in no driver path), then remove that. Writers racing the delete never see half
        a tree, and an ``rmtree`` in place could fail with "Directory not empty" when one adds a
        file meanwhile, or pull a temporary file from under its rename. A crash (or a writer
        that still adds a file to the detached tree) leaves only a hidden leftover that listings
        skip and later remove."""
        detached = f"{key}~{uuid.uuid4().hex}~del"
        try:
            os.rename(key, detached)
        except FileNotFoundError:
            raise PathNotFound(self.name, self._path(key)) from None
        except OSError:
            detached = key  # e.g. no room for a new directory entry: remove it in place
        _remove_tree(detached)

    async def _prune_parents(self, key: str) -> None:
        await self._run(self._prune, key)

    def _prune(self, key: str) -> None:
        parent = posixpath.dirname(key)
        while parent.startswith(self.root + "/"):
            try:
                os.rmdir(parent)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY or not _drop_temporary_files(parent):
                    return
                try:
                    os.rmdir(parent)
                except OSError:
                    return
            parent = posixpath.dirname(parent)


def _file_info(path: str, st: os.stat_result) -> FileInfo:
    modified = dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)
    if stat.S_ISDIR(st.st_mode):
        return FileInfo(path, 0, modified, True)
    return FileInfo(path, st.st_size, modified, False)


def _read_small(os_path: str, limit: int) -> bytes | None:
    """The whole file when it holds at most ``limit`` bytes, else None (read it on a thread)."""
    fd, size = _open_read(os_path)
    try:
        if size > limit:
            return None
        parts = []
        total = 0
        while True:
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                return None  # grew since fstat
    finally:
        os.close(fd)


def _back_off(attempt: int) -> None:
    """Before attempt number ``attempt`` (from 0) of a write that racing deletes undid: the first
    :data:`_RETRIES_AT_ONCE` go at once, later ones after a random pause growing to ~10 ms (a
    worker thread's sleep; the event loop never runs this)."""
    if attempt >= _RETRIES_AT_ONCE:
        time.sleep(random.uniform(0, 0.0005 * min(attempt, 20)))


def _remove_quietly(path: str) -> None:
    """Remove a temporary file or directory tree if it is still there."""
    try:
        os.unlink(path)
    except IsADirectoryError:
        _remove_tree(path)
    except OSError:
        if os.path.isdir(path):
            _remove_tree(path)


def _remove_tree(path: str) -> None:
    """``rmtree`` that tolerates entries vanishing meanwhile and retries when one appears (a
    writer racing the delete); raises only when the tree cannot be removed at all."""
    failure: list[OSError] = []

    def on_error(_fn: Any, _path: str, exc_info: Any) -> None:
        exc = exc_info[1]
        if not isinstance(exc, FileNotFoundError):
            failure.append(exc)

    for _ in range(3):
        failure.clear()
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=lambda fn, p, exc: on_error(fn, p, (type(exc), exc, None)))
        else:
            shutil.rmtree(path, onerror=on_error)
        if not os.path.lexists(path):
            return
    if failure and not all(getattr(e, "errno", None) == errno.ENOTEMPTY for e in failure):
        raise failure[0]


def _drop_temporary_files(directory: str) -> bool:
    """Remove the temporary files in a directory that holds nothing else; whether it did.

    Such a directory is empty for every reader, but a crash's leftover (a small write killed
    before its rename) would keep it, and with it a name in its parent's listing (a deleted
    tag), for good. Only files older than ``_PRUNE_TEMPORARY_MIN_AGE`` count as leftovers: a
    younger one may belong to a writer about to rename it (one that is dropped anyway loses
    nothing: its rename fails and :meth:`FilesystemDriver._place` starts over). Temporary
    directories are left alone: they hold directories being built."""
    now = time.time()
    found: list[str] = []
    try:
        # it holds a directory (temporary ones are kept too), so it stays: one stat instead of
        # listing hundreds of entries after each delete of a bulk sweep (file systems that do not
        # count subdirectories in st_nlink report 1 and are listed)
        if os.stat(directory).st_nlink > 2:
            return False
        with os.scandir(directory) as entries:
            for e in entries:  # the first entry that is not an old temporary file ends it, unstat'ed
                if not (e.name.endswith("~tmp") and _LEFTOVER_RE.search(e.name)
                        and e.is_file(follow_symlinks=False)
                        and now - e.stat(follow_symlinks=False).st_mtime >= _PRUNE_TEMPORARY_MIN_AGE):
                    return False
                found.append(e.path)
    except OSError:
        return False
    if not found:
        return False
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return True


def _remove_stale_leftovers(directory: str, names: list[str]) -> None:
    """Remove the temporary entries a crash left in ``directory`` (``<name>~<hex>~tmp|del``) once
    they are old enough that no writer can still be using them; listings never show them."""
    now = time.time()
    for name in names:
        if not _LEFTOVER_RE.search(name):
            continue
        path = os.path.join(directory, name)
        try:
            if now - os.lstat(path).st_mtime < _LEFTOVER_MIN_AGE:
                continue
            _remove_quietly(path)
        except OSError:
            continue


def _read_whole(os_path: str) -> bytes:
    with open(os_path, "rb") as f:
        return f.read()


def _open_read(os_path: str) -> tuple[int, int]:
    fd = os.open(os_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a file", os_path)
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise



def _list_all(keys: list[tuple[str, str]]) -> dict[str, list[str]]:
    """``{driver path: child names}`` of each existing directory (temporary entries skipped)."""
    out: dict[str, list[str]] = {}
    valid = is_valid_component
    for path, key in keys:
        try:
            names = os.listdir(key)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if any(not valid(n) for n in names):
            names = [n for n in names if valid(n)]
        if names:  # an empty directory does not exist
            out[path] = names
    return out


def _stat_all(keys: list[tuple[str, str]]) -> dict[str, FileInfo]:
    out: dict[str, FileInfo] = {}
    for path, key in keys:
        try:
            out[path] = _file_info(path, os.stat(key))
        except (FileNotFoundError, NotADirectoryError):
            continue
    return out


def _scan_dir(key: str, base: str, details: bool = True) -> tuple[list[FileInfo], list[tuple[str, str]]]:
    """The files of one OS directory and its subdirectories as ``(os path, driver path)``."""
    files: list[FileInfo] = []
    dirs: list[tuple[str, str]] = []
    try:
        with os.scandir(key) as entries:
            for entry in entries:
                if not is_valid_component(entry.name):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append((entry.path, f"{base}/{entry.name}"))
                    elif details:
                        files.append(_file_info(f"{base}/{entry.name}", entry.stat()))
                    else:
                        files.append(FileInfo(f"{base}/{entry.name}", 0, None, False))
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        pass
    return files, dirs


def _scan_tree(top: str, base: str, page_size: int = 4096, *, details: bool = True) -> Iterator[list[FileInfo]]:
    """Pages of the files below OS directory ``top`` (driver paths under ``base``), depth
    first; entries whose names are no valid path component (temporary files) are skipped."""
    page: list[FileInfo] = []
    stack = [(top, base)]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if not is_valid_component(entry.name):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, f"{prefix}/{entry.name}"))
                            continue
                        name = f"{prefix}/{entry.name}"
                        page.append(_file_info(name, entry.stat()) if details else FileInfo(name, 0, None, False))
                    except FileNotFoundError:
                        continue  # deleted while we looked
        except (FileNotFoundError, NotADirectoryError):
            continue
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page
