"""The generic storage driver over an fsspec filesystem, and the buffered writer it and
other backends share.

:class:`FsspecDriver` holds every behaviour the backends have in common: mapping driver
paths to fsspec keys under a root prefix, translating exceptions into typed errors that name
the driver, and list/stat/walk/move/delete/get/put/reader/writer on top of plain fsspec
calls. A backend is a thin subclass that builds its filesystem and overrides only what its
native API does better. The extension points, in the order a new backend usually needs them:

``_open_writer(path, key, append)``
    Return the backend's :class:`FileWriter`. The default streams into a file object of a
    *synchronous* fsspec filesystem (``fs.open(key, "ab"/"wb")`` in a worker thread): right
    for local and memory files. Object stores plug in their native resumable upload here
    (S3 multipart, GCS resumable session, Azure blocks), usually by subclassing
    :class:`BufferedFileWriter` and implementing its four hooks.
``_read_range(key, start, end)``
    Fetch ``[start, end)`` of an object (default ``cat_file`` with a range); the reader asks
    for ``read_block`` bytes at a time.
``_url_for(key, method)``
    A presigned URL for ``redirect_url`` (default None: serve through the registry).
``_file_modified(entry)``
    The modification time from an fsspec info dict, when the generic parsing misses it.
``_prune_parents(key)``
    Remove directories a delete or move left empty; only backends with real directories
    (``real_directories = True``) need it.

Filesystems may be async (``fs.async_impl`` and ``fs.asynchronous``: the ``_method``
coroutines are awaited on the running loop) or sync (methods run in a worker thread, in
``executor`` when given). Configure object-store filesystems without listings caches so
that two driver instances on one bucket see each other's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import posixpath
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import Any, TypeVar

from fsspec.spec import AbstractFileSystem

from .base import (
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
    StorageError,
    Unsupported,
    check_dir,
    classify,
    is_valid_component,
    is_valid_path,
    walk_key,
)

T = TypeVar("T")

_perf = time.perf_counter

_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


class BufferedFileWriter(FileWriter):
    """A :class:`FileWriter` that gathers writes into blocks and enforces the life cycle.

    Small writes (an HTTP body arrives in 64 KiB pieces) are collected until at least
    ``flush_size`` bytes wait; then a whole multiple of ``flush_size`` goes to :meth:`_flush`
    while the caller keeps writing into a fresh buffer (one flush in flight at a time, in
    order). The rest, the *tail*, is handed to :meth:`_commit` or :meth:`_close`, so a
    backend whose blocks must be aligned (S3 parts >= 5 MiB, GCS chunks of 256 KiB) can keep
    or upload it as it must. Subclasses implement the four hooks; each may assume it is
    called once per writer, after every earlier flush finished.
    """

    #: bytes gathered before a flush; the blocks given to _flush are multiples of it
    flush_size: int = 4 << 20

    def __init__(self, driver: str, path: str, size: int = 0) -> None:
        self.driver = driver
        self.path = path
        self._flushed = size  # bytes given to _flush (done or in flight), earlier sessions included
        self._buf = bytearray()
        self._pending: asyncio.Future[None] | None = None
        self._state = "open"

    # -- hooks -----------------------------------------------------------------------
    async def _flush(self, block: bytearray) -> None:
        """Persist ``block`` (a multiple of ``flush_size`` bytes) after everything before it."""
        raise NotImplementedError

    async def _commit(self, tail: bytearray) -> None:
        """Persist ``tail`` (maybe empty) and publish the whole file at the path."""
        raise NotImplementedError

    async def _close(self, tail: bytearray) -> None:
        """Persist ``tail`` (maybe empty) so that a later ``writer(path, append=True)`` in any
        process resumes with every byte; release resources."""
        raise NotImplementedError

    async def _cancel(self) -> None:
        """Remove the data and any upload state; release resources."""
        raise NotImplementedError

    async def _release(self) -> None:
        """Release the resources of a writer that failed (a flush or a finish raised), keeping
        whatever the backend already persisted; must not raise. Default: nothing to release."""

    # -- FileWriter --------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._flushed + len(self._buf)

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self._require_open("write")
        n = memoryview(data).nbytes
        self._buf += data
        if len(self._buf) >= self.flush_size:
            await self._wait_pending()
            cut = len(self._buf) - len(self._buf) % self.flush_size
            if cut == len(self._buf):
                block, self._buf = self._buf, bytearray()
            else:
                block = self._buf[:cut]
                del self._buf[:cut]
            self._flushed += len(block)
            self._pending = asyncio.ensure_future(self._flush(block))
        return n

    async def commit(self) -> None:
        self._require_open("commit")
        await self._finish("committed", self._commit)

    async def close(self) -> None:
        if self._state == "open":
            await self._finish("closed", self._close)
        elif self._state == "failed":
            await self._give_up()

    async def cancel(self) -> None:
        """Allowed while open and after a failure (a failed writer still holds its file or
        multipart upload, which only cancel or close release)."""
        if self._state != "failed":
            self._require_open("cancel")
        self._state = "cancelled"
        with contextlib.suppress(Exception):
            await self._wait_pending()
        self._buf = bytearray()
        await self._cancel()

    async def _finish(self, state: str, hook: Callable[[bytearray], Any]) -> None:
        self._state = state
        try:
            await self._wait_pending()
            tail, self._buf = self._buf, bytearray()
            self._flushed += len(tail)
            await hook(tail)
        except BaseException:
            self._state = "failed"
            await self._give_up()
            raise

    async def _give_up(self) -> None:
        """A failed writer's resources go (its data stays for a resume or a cancel)."""
        self._buf = bytearray()
        try:
            await self._release()
        except Exception:  # noqa: BLE001 - releasing is best effort; the first error is what counts
            pass

    async def _wait_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except BaseException:
                self._state = "failed"
                raise

    def _require_open(self, op: str) -> None:
        if self._state != "open":
            raise StorageError(self.driver, self.path, f"cannot {op}: writer is {self._state}")

    @property
    def failed(self) -> bool:
        """Whether a write, flush or finish of this writer raised (its size may then count
        bytes that never reached the backend)."""
        return self._state == "failed"


class FileObjectWriter(BufferedFileWriter):
    """Writes through a synchronous binary file object in worker threads (local, memory)."""

    def __init__(self, driver: "FsspecDriver", path: str, key: str, fileobj: Any, size: int) -> None:
        super().__init__(driver.name, path, size)
        self._driver = driver
        self._key = key
        self._file = fileobj
        self.flush_size = driver.flush_size

    async def _flush(self, block: bytearray) -> None:
        with self._driver._errors(self.path):
            await self._driver._run(self._write_all, block)

    async def _close(self, tail: bytearray) -> None:
        with self._driver._errors(self.path):
            await self._driver._run(self._write_and_close, tail, False)

    async def _commit(self, tail: bytearray) -> None:
        with self._driver._errors(self.path):
            await self._driver._run(self._write_and_close, tail, True)

    async def _cancel(self) -> None:
        with self._driver._errors(self.path):
            await self._driver._run(self._file.close)
            with contextlib.suppress(FileNotFoundError):
                await self._driver._call("rm_file", self._key)
            await self._driver._prune_parents(self._key)

    async def _release(self) -> None:
        await self._driver._run(self._file.close)

    def _write_and_close(self, tail: bytearray, durable: bool) -> None:
        try:
            if tail:
                self._write_all(tail)
            if durable:
                self._sync()
        finally:
            self._file.close()

    def _write_all(self, data: bytearray) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[len(view) if written is None else written :]

    def _sync(self) -> None:
        """Make committed data durable; backends with an fsync override this."""


class FsspecDriver(StorageDriver):
    """A :class:`StorageDriver` over an fsspec filesystem below the key prefix ``root``.

    The driver path ``/a/b`` is the key ``root + "/a/b"``; ``root`` is stored without a
    trailing slash (for object stores it starts with the bucket).
    """

    name = "fsspec"
    #: the filesystem has directories of its own that must be removed when they empty
    real_directories = False
    #: bytes the default writer gathers per flush
    flush_size = 4 << 20
    #: bytes the default reader fetches per request
    read_block = 8 << 20
    #: the default writer's class (over a synchronous file object)
    file_writer: type[FileObjectWriter] = FileObjectWriter
    times_own_calls = True

    def __init__(self, fs: AbstractFileSystem, root: str, *, executor: Executor | None = None) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self._executor = executor
        self._native_async = bool(getattr(fs, "async_impl", False) and getattr(fs, "asynchronous", False))

    # -- plumbing ----------------------------------------------------------------------
    def _key(self, path: str) -> str:
        return self.root if path == "/" else self.root + path

    def _path(self, key: str) -> str:
        key = self.fs._strip_protocol(key)
        root = self.fs._strip_protocol(self.root) if self.root else ""
        rel = key[len(root):] if root and key.startswith(root) else key
        return "/" + rel.strip("/")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``fn`` in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call an fsspec method: its coroutine on async filesystems, else in a thread."""
        if self._native_async:
            return await getattr(self.fs, "_" + method)(*args, **kwargs)
        return await self._run(getattr(self.fs, method), *args, **kwargs)

    @contextlib.contextmanager
    def _errors(self, path: str, action: str | None = None) -> Iterator[None]:
        """Translate backend exceptions into typed errors naming this driver (:meth:`_translate`);
        with ``action`` (one of :data:`~.base.OWN_TIMED`), also time the call into
        :attr:`timings` when a metering decorator set them."""
        timings = self.timings if action is not None else None
        start = _perf() if timings is not None else 0.0
        try:
            yield
        except BaseException as exc:
            failure = self._translate(path, exc)
            if timings is not None:
                timings.failed(action, failure)  # type: ignore[arg-type]
            if failure is exc:
                raise
            raise failure
        finally:
            if timings is not None:
                timings.samples[action].append(_perf() - start)  # type: ignore[index]

    def _translate(self, path: str, exc: BaseException) -> BaseException:
        """The typed error to raise for ``exc`` (``exc`` itself when it already is one, or is
        not an error: cancellation); the original is its cause."""
        if isinstance(exc, StorageError) or not isinstance(exc, Exception):
            return exc
        if isinstance(exc, _MISSING):
            failure: StorageError = PathNotFound(self.name, path)
        else:  # every backend failure becomes a StorageError
            failure = classify(exc)(self.name, path, f"{type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        return failure

    async def _info(self, path: str) -> dict[str, Any]:
        with self._errors(path):
            return await self._call("info", self._key(path))

    def _file_info(self, path: str, entry: dict[str, Any]) -> FileInfo:
        if entry.get("type") == "directory":
            return FileInfo(path, 0, self._file_modified(entry), True)
        return FileInfo(path, int(entry.get("size") or 0), self._file_modified(entry), False)

    def _file_modified(self, entry: dict[str, Any]) -> dt.datetime | None:
        """The entry's modification time, whatever the backend calls it."""
        for field in ("mtime", "LastModified", "last_modified", "updated", "modified", "mtime_ns", "created"):
            value = entry.get(field)
            if value is None:
                continue
            if field == "mtime_ns":
                value = value / 1e9
            if isinstance(value, (int, float)):
                return dt.datetime.fromtimestamp(value, dt.timezone.utc)
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if isinstance(value, dt.datetime):
                if value.tzinfo is None:
                    value = value.replace(tzinfo=dt.timezone.utc)
                return value.astimezone(dt.timezone.utc)
        return None

    # -- the contract ------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        self.check(path)
        with self._errors(path, "get_content"):
            return bytes(await self._call("cat_file", self._key(path)))

    async def put_content(self, path: str, data: bytes) -> None:
        self.check(path)
        with self._errors(path):
            await self._call("pipe_file", self._key(path), bytes(data))

    async def reader(
        self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        self.check(path)
        info = await self.stat(path)
        if info.is_dir:
            raise PathNotFound(self.name, path, "is a directory")
        if offset < 0 or offset > info.size:
            raise InvalidOffset(self.name, path, offset)
        key = self._key(path)
        pos = offset
        while pos < info.size:
            with self._errors(path):
                block = await self._read_range(key, pos, min(pos + max(self.read_block, chunk_size), info.size))
            if not block:
                break  # shrank while we read
            pos += len(block)
            for i in range(0, len(block), chunk_size):
                yield bytes(block[i : i + chunk_size])

    async def _read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object at ``key`` (extension point)."""
        return await self._call("cat_file", key, start=start, end=end)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        self.check(path)
        with self._errors(path):
            return await self._open_writer(path, self._key(path), append)

    async def _open_writer(self, path: str, key: str, append: bool) -> FileWriter:
        """The backend's FileWriter for ``path`` (extension point; see the module docstring).

        The default needs a synchronous filesystem whose ``open(key, "ab")`` appends."""
        if self._native_async:
            raise Unsupported(self.name, path, "this backend must override _open_writer")
        size = 0
        if append:
            info = await self._call("info", key)
            if info.get("type") == "directory":
                raise PathNotFound(self.name, path)
            size = int(info["size"])
        fileobj = await self._call("open", key, "ab" if append else "wb")
        return self.file_writer(self, path, key, fileobj, size)

    async def stat(self, path: str) -> FileInfo:
        self.check(path)
        with self._errors(path, "stat"):
            entry = await self._call("info", self._key(path))
        return self._file_info(path, entry)

    async def list(self, path: str) -> list[str]:
        return [info.path for info in await self._children(path)]

    async def _children(self, path: str) -> list[FileInfo]:
        check_dir(self.name, path)
        key = self._key(path)
        try:
            with self._errors(path, "list"):
                entries = await self._call("ls", key, detail=True)
        except PathNotFound:
            if path == "/":
                return []
            raise
        out = []
        for entry in entries:
            child = self._path(entry["name"])
            if child.rstrip("/") == path.rstrip("/"):
                if entry.get("type") != "directory":
                    raise PathNotFound(self.name, path, "is a file")
                continue  # some stores list a directory marker
            name = child.rsplit("/", 1)[-1]
            if posixpath.dirname(child) != path.rstrip("/") and path != "/":
                continue
            if is_valid_component(name):
                out.append(self._file_info(child, entry))
        if not out and path != "/":
            raise PathNotFound(self.name, path)  # an empty directory does not exist
        out.sort(key=lambda info: walk_key(info.path))
        return out

    async def list_files(self, path: str, *, details: bool = True) -> AsyncIterator[list[FileInfo]]:
        """One recursive ``find`` below the prefix (a paginated listing on object stores)."""
        check_dir(self.name, path)
        key = self._key(path)
        prefix = self.fs._strip_protocol(key).rstrip("/") + "/"
        try:
            with self._errors(path):
                found = await self._call("find", key, detail=True)
        except PathNotFound:
            return
        page = []
        for name, entry in found.items():
            stripped = self.fs._strip_protocol(name)
            if not stripped.startswith(prefix) or entry.get("type") == "directory":
                continue
            child = self._path(name)
            if is_valid_path(child):  # skips sidecars (``@writer``) and temporary names
                page.append(self._file_info(child, entry))
        if page:
            yield page

    async def move(self, source: str, dest: str) -> None:
        self.check(source)
        self.check(dest)
        info = await self._info(source)
        if info.get("type") == "directory":
            raise Unsupported(self.name, source, "move of a directory")
        if source == dest:
            return
        with self._errors(source):
            await self._move_file(self._key(source), self._key(dest))
            await self._prune_parents(self._key(source))

    async def _move_file(self, src: str, dst: str) -> None:
        """Move one object (default: copy, then delete the source)."""
        await self._call("cp_file", src, dst)
        await self._call("rm_file", src)

    async def delete(self, path: str) -> None:
        self.check(path)
        key = self._key(path)
        info = await self._info(path)
        with self._errors(path):
            if info.get("type") != "directory":
                await self._call("rm_file", key)
            else:
                await self._delete_tree(key)
            await self._prune_parents(key)

    async def _delete_tree(self, key: str) -> None:
        """Delete every object below ``key`` (only below ``key + "/"``: never ``key``-prefixed
        siblings like ``/ab`` for ``/a``)."""
        prefix = self.fs._strip_protocol(key) + "/"
        found = await self._call("find", key)
        files = [f for f in found if self.fs._strip_protocol(f).startswith(prefix)]
        if files:
            await self._call("rm", files)
        if self.real_directories:
            with contextlib.suppress(FileNotFoundError):
                await self._call("rm", key, recursive=True)

    async def _prune_parents(self, key: str) -> None:
        """Remove the directories above ``key`` that are now empty, up to the root."""
        if not self.real_directories:
            return
        parent = posixpath.dirname(key)
        while len(parent) > len(self.root) and parent.startswith(self.root + "/"):
            try:
                await self._call("rmdir", parent)
            except OSError:
                return
            parent = posixpath.dirname(parent)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        self.check(path)
        self.check_redirect_method(path, method)
        with self._errors(path):
            return await self._url_for(self._key(path), method)

    async def _url_for(self, key: str, method: str) -> str | None:
        """A presigned URL for ``key`` (extension point; default: no redirects)."""
        return None

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
