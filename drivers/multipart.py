"""Streaming, resumable writers on object stores' native multipart mechanisms.

An object store cannot append, and fsspec's ``open(path, "wb")`` buffers whole files. What does
stream is each backend's own multipart upload: S3 UploadPart, a GCS resumable session, Azure
staged blocks. :class:`PartWriter` is the shared machinery; a backend supplies four calls
(start, upload a part, complete, abort) and a part-size rule.

Why the state lives in a sidecar object: a blob upload's PATCHes may land on different registry
instances, or on one that restarted. On :meth:`PartWriter.close` the multipart state (upload id
and parts, session URI, block list) and the bytes not yet uploaded (less than one part, because
S3 and GCS refuse short middle parts) are written to ``<key>@writer``. The ``@`` keeps it out of
driver paths (and so out of listings), while a recursive delete of the upload directory still
removes it. Any instance resumes with ``writer(path, append=True)`` without re-reading parts.

Memory: a writer holds at most one part in memory. Across all writers of the process a
:class:`MemoryBudget` caps what part buffers may hold; a buffer that cannot get budget spills to
a temporary file, and a spilled part is read back for its upload only when budget frees up.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import io
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from .base import FileWriter, PathNotFound, StorageError

SIDECAR_SUFFIX = "@writer"
_GROW_STEP = 1 << 20
DEFAULT_MEMORY_BUDGET = 256 << 20


class MemoryBudget:
    """Bytes that in-memory part buffers may hold in this process, across all uploads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def try_take(self, n: int) -> bool:
        if self.used + n > self.limit or self._waiters:
            return False
        self._add(n)
        return True

    async def take(self, n: int) -> None:
        """Wait (first come, first served) until ``n`` bytes fit; a lone request always fits."""
        if not self._waiters and (self.used + n <= self.limit or self.used == 0):
            self._add(n)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.give(n)  # granted while we were being cancelled
            else:
                self._waiters = [w for w in self._waiters if w[1] is not fut]
                self._wake()
            raise

    def give(self, n: int) -> None:
        self.used -= n
        self._wake()

    def _add(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.pop(0)
                continue
            if self.used + n > self.limit and self.used > 0:
                return
            self._waiters.pop(0)
            self._add(n)
            fut.set_result(None)


_budget = MemoryBudget(int(os.environ.get("PYREGISTRY_UPLOAD_MEMORY", DEFAULT_MEMORY_BUDGET)))


def memory_budget() -> MemoryBudget:
    return _budget


def set_memory_budget(limit: int) -> None:
    """Change the process-wide cap (config key ``uploadmemorybudget`` of the cloud drivers)."""
    _budget.limit = limit
    _budget._wake()


class PartBuffer:
    """The bytes of the part being filled: in memory while the budget allows, else in a file."""

    def __init__(self, budget: MemoryBudget, spool_dir: str | None = None) -> None:
        self._budget = budget
        self._spool_dir = spool_dir
        self._mem = bytearray()
        self._reserved = 0
        self._file: Any = None
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def spilled(self) -> bool:
        return self._file is not None

    async def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        if self._file is None:
            need = len(self._mem) + n - self._reserved
            if need > 0:
                grow = -(-need // _GROW_STEP) * _GROW_STEP
                if self._budget.try_take(grow):
                    self._reserved += grow
                else:
                    await self._spill()
        if self._file is None:
            self._mem += data
        else:
            await asyncio.to_thread(self._file.write, bytes(data))
        self._len += n

    async def _spill(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="registry-part-", dir=self._spool_dir)
        if self._mem:
            mem, self._mem = self._mem, bytearray()
            await asyncio.to_thread(self._file.write, mem)
        self._release()

    async def content(self, as_file: bool = False) -> tuple[Any, int]:
        """All buffered bytes and the budget taken to hold them (give it back after use).
        With ``as_file`` a spilled buffer comes as its file, at position 0, costing no memory."""
        if self._file is None:
            return self._mem, 0
        if as_file:
            await asyncio.to_thread(self._rewind)
            return self._file, 0
        await self._budget.take(self._len)
        try:
            return await asyncio.to_thread(self._read_file), self._len
        except BaseException:
            self._budget.give(self._len)
            raise

    def _rewind(self) -> None:
        self._file.flush()
        self._file.seek(0)

    def _read_file(self) -> bytes:
        self._file.seek(0)
        return self._file.read()

    def clear(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = bytearray()
        self._release()
        self._len = 0

    def _release(self) -> None:
        if self._reserved:
            self._budget.give(self._reserved)
            self._reserved = 0


class PartStore(abc.ABC):
    """What a backend provides to :class:`PartWriter`: its multipart calls and small-object I/O."""

    #: the backend's name, for errors
    name: str = "object"

    @abc.abstractmethod
    async def get_small(self, key: str) -> bytes:
        """Content of a small object; FileNotFoundError if missing."""

    @abc.abstractmethod
    async def put_small(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    async def delete_key(self, key: str) -> None:
        """Delete one object; silent when missing."""

    @abc.abstractmethod
    async def put_whole(self, key: str, data: bytes | bytearray) -> None:
        """Write a complete object in one request (an upload smaller than one part)."""

    @abc.abstractmethod
    async def mpu_start(self, key: str) -> dict[str, Any]:
        """Begin a multipart upload; return its JSON-able state."""

    @abc.abstractmethod
    async def mpu_part(
        self, key: str, state: dict[str, Any], offset: int, data: bytes | bytearray, final: bool
    ) -> None:
        """Upload ``data`` at ``offset``; record what completion needs in ``state``.
        ``final`` marks the last part (only then may it be shorter than a part)."""

    @abc.abstractmethod
    async def mpu_complete(self, key: str, state: dict[str, Any], size: int) -> None: ...

    @abc.abstractmethod
    async def mpu_abort(self, key: str, state: dict[str, Any]) -> None:
        """Throw the upload away; best effort, silent when already gone."""

    #: whether :meth:`put_small_if` really is conditional (the backend refuses a write whose
    #: precondition failed); without it the sidecar is written unconditionally
    conditional_writes: bool = False

    async def get_small_tagged(self, key: str) -> tuple[bytes, str | None]:
        """Content of a small object and its version tag (ETag) for :meth:`put_small_if`."""
        return await self.get_small(key), None

    async def put_small_if(self, key: str, data: bytes, tag: str | None) -> str | None:
        """Write ``data`` if the object still has version ``tag`` (unconditionally when None);
        the new version's tag. Raises :class:`drivers.base.Conflict` when it changed."""
        await self.put_small(key, data)
        return None

    async def discard_leftover(self, key: str) -> None:
        """A fresh writer starts from zero: abort the upload an earlier writer left at ``key``."""
        try:
            raw = await self.get_small(sidecar_key(key))
        except (FileNotFoundError, PathNotFound):
            return
        try:
            state = json.loads(raw.partition(b"\n")[0]).get("state")
        except (ValueError, AttributeError):
            state = None
        if state:
            with contextlib.suppress(Exception):
                await self.mpu_abort(key, state)
        await self.delete_key(sidecar_key(key))

    #: whether mpu_part and put_whole take a seekable binary file as ``data`` too (a part that
    #: spilled to disk then goes out from its file instead of being read back into memory)
    takes_files: bool = False
    #: whether a part must be a multiple of this (GCS: 256 KiB); 1 for none
    part_alignment: int = 1
    #: whether a short part can be uploaded at close instead of kept in the sidecar (Azure)
    short_parts_ok: bool = False
    #: with ``short_parts_ok``, the smallest part uploaded at close; a shorter tail stays in the
    #: sidecar (Swift serves large objects of many tiny segments slowly)
    short_part_min: int = 1


class BufferReader(io.RawIOBase):
    """A seekable read-only file over a buffer, without copying it.

    SDKs copy a ``bytes``/``bytearray`` body once or twice on the way to the socket (botocore
    wraps it in BytesIO, aiohttp then unshares that); a file they read piece by piece."""

    def __init__(self, buffer: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(buffer).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, target: Any) -> int:
        n = max(0, min(len(target), len(self._view) - self._pos))
        target[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return out

    def __len__(self) -> int:
        return len(self._view)


def sidecar_key(key: str) -> str:
    return key + SIDECAR_SUFFIX


class PartWriter(FileWriter):
    """A resumable writer that streams parts of ``part_size`` bytes into a multipart upload.

    One part uploads while the next fills (so at most two parts per writer), in order.
    Life cycle as :class:`drivers.base.FileWriter` says: commit, close or cancel, once.
    """

    def __init__(
        self,
        store: PartStore,
        path: str,
        key: str,
        part_size: int,
        *,
        budget: MemoryBudget | None = None,
        state: dict[str, Any] | None = None,
        uploaded: int = 0,
    ) -> None:
        if part_size % store.part_alignment:
            raise ValueError(f"part size {part_size} is not a multiple of {store.part_alignment}")
        self._store = store
        self._path = path
        self._key = key
        self._part_size = part_size
        self._budget = budget or _budget
        self._buffer = PartBuffer(self._budget)
        self._state = state  # None until the first part goes out
        self._uploaded = uploaded  # bytes handed to uploads (done or in flight)
        self._pending: asyncio.Future[None] | None = None
        self._status = "open"
        self._final_size: int | None = None  # the size once the writer is finished
        self._dirty = True  # whether the sidecar must be (re)written on close
        self._lock = asyncio.Lock()
        #: the sidecar's version when this writer read it (conditional writes: see resume)
        self._tag: str | None = None

    @classmethod
    async def resume(
        cls, store: PartStore, path: str, key: str, part_size: int, budget: MemoryBudget | None = None
    ) -> "PartWriter":
        """The writer some instance closed at ``key``; PathNotFound when there is none."""
        try:
            raw, tag = await store.get_small_tagged(sidecar_key(key))
        except (FileNotFoundError, PathNotFound):
            raise PathNotFound(store.name, path) from None
        header, _, tail = raw.partition(b"\n")
        try:
            meta = json.loads(header)
            uploaded = int(meta["uploaded"])
            state = meta["state"]
            saved_part_size = int(meta["part_size"])
            if int(meta["tail"]) != len(tail):
                raise ValueError("truncated tail")
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(store.name, path, f"unreadable upload state: {exc}") from None
        writer = cls(store, path, key, saved_part_size, budget=budget, state=state, uploaded=uploaded)
        await writer._buffer.append(tail)
        writer._dirty = False  # closing it unchanged (a status query) needs no write
        writer._tag = tag
        return writer

    async def claim(self) -> None:
        """Write the state read at resume again, conditionally, as a new version: from here on
        every writer that resumed before this one (a paused process) finds its close refused
        (:class:`drivers.base.Conflict`), however late it comes. Conflict when someone closed
        after our resume (resume again). No-op where the backend has no conditional writes."""
        async with self._lock:
            self._require("claim")
            if self._tag is None or not self._store.conditional_writes:
                return
            await self._with_content(self._buffer, self._save, files=False)

    # --- FileWriter ----------------------------------------------------------------------

    @property
    def size(self) -> int:
        if self._final_size is not None:
            return self._final_size
        return self._uploaded + len(self._buffer)

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        total = view.nbytes
        async with self._lock:
            self._require("write")
            self._dirty = self._dirty or total > 0
            while view:
                room = self._part_size - len(self._buffer)
                await self._buffer.append(view[:room])
                view = view[room:]
                if len(self._buffer) >= self._part_size:
                    await self._send_part()
        return total

    async def close(self) -> None:
        """Persist the state (and the short tail) so any instance can append later."""
        async with self._lock:
            if self._status == "failed":
                self._buffer.clear()  # a failed writer gives its memory (or spill file) back
                return
            if self._status != "open":
                return
            self._status = "closed"
            self._final_size = self.size
            try:
                await self._wait_pending()
                if not self._dirty:
                    return
                if self._store.short_parts_ok and len(self._buffer) >= max(1, self._store.short_part_min):
                    await self._send_part()
                    await self._wait_pending()
                await self._with_content(self._buffer, self._save, files=False)
            except BaseException:
                self._status = "failed"
                raise
            finally:
                self._buffer.clear()

    async def commit(self) -> None:
        async with self._lock:
            self._require("commit")
            self._status = "committed"
            self._final_size = self.size
            try:
                await self._wait_pending()
                if self._state is None:
                    await self._with_content(self._buffer, lambda c: self._store.put_whole(self._key, c))
                else:
                    if len(self._buffer) or not self._store.short_parts_ok:
                        offset = self._uploaded
                        self._uploaded += len(self._buffer)
                        await self._upload(self._buffer, offset, final=True)
                    await self._store.mpu_complete(self._key, self._state, self._uploaded)
            except BaseException:
                self._status = "failed"  # cancel still aborts the multipart upload
                raise
            finally:
                self._buffer.clear()
            await self._store.delete_key(sidecar_key(self._key))

    async def cancel(self) -> None:
        """Allowed while open and after a failure: the multipart upload a failed writer started
        is aborted here, or its parts would stay (and be billed) on the store."""
        async with self._lock:
            if self._status != "failed":
                self._require("cancel")
            self._status = "cancelled"
            self._final_size = self.size
            with contextlib.suppress(Exception):
                await self._wait_pending()
            self._buffer.clear()
            if self._state is not None:
                await self._store.mpu_abort(self._key, self._state)
            await self._store.delete_key(sidecar_key(self._key))

    # --- internals -----------------------------------------------------------------------

    def _require(self, op: str) -> None:
        if self._status != "open":
            raise StorageError(self._store.name, self._path, f"cannot {op}: writer is {self._status}")

    @property
    def failed(self) -> bool:
        """Whether a write, part upload or finish of this writer raised."""
        return self._status == "failed"

    async def _send_part(self) -> None:
        """Start uploading the full buffer; the previous part must finish first."""
        await self._wait_pending()
        if self._state is None:
            self._state = await self._store.mpu_start(self._key)
        buffer, self._buffer = self._buffer, PartBuffer(self._budget)
        offset = self._uploaded
        self._uploaded += len(buffer)
        self._pending = asyncio.ensure_future(self._upload(buffer, offset, final=False))

    async def _upload(self, buffer: PartBuffer, offset: int, final: bool) -> None:
        assert self._state is not None
        state = self._state
        try:
            await self._with_content(
                buffer, lambda c: self._store.mpu_part(self._key, state, offset, c, final)
            )
        finally:
            buffer.clear()

    async def _with_content(
        self, buffer: PartBuffer, use: Callable[[Any], Awaitable[None]], files: bool | None = None
    ) -> None:
        content, taken = await buffer.content(self._store.takes_files if files is None else files)
        try:
            await use(content)
        finally:
            if taken:
                self._budget.give(taken)

    async def _wait_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except BaseException:
                self._status = "failed"
                raise

    async def _save(self, tail: bytes | bytearray) -> None:
        meta = {
            "v": 1,
            "uploaded": self._uploaded,
            "part_size": self._part_size,
            "tail": len(tail),
            "state": self._state,
            # each write is a new version (with identical content S3's ETag would not change)
            "nonce": os.urandom(8).hex(),
        }
        data = json.dumps(meta).encode() + b"\n" + bytes(tail)
        self._tag = await self._store.put_small_if(sidecar_key(self._key), data, self._tag)
