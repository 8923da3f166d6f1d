"""One upstream GET of a blob, written into storage while every waiting client reads it.

A :class:`BlobFetch` is the single flight for one digest in this process: the first request for
an uncached blob starts it, every request for the same digest meanwhile joins it, and none of them
asks the upstream again. The fetch runs as its own task (a client that goes away does not stop
it: the blob is cached anyway). Its bytes go two ways:

1. the **spool**, an unlinked temporary file (its blocks allocated upfront) the upstream's body
   is appended to as it arrives: clients read from there, each at its own pace and from its own
   offset (a client that joins late starts from byte 0, a ranged GET from its offset), so memory
   stays flat whatever the size and the number of clients;
2. the **store**: a second task hands the spooled bytes, as they arrive, to the store's ordinary
   blob write path (:meth:`UploadStore.put_whole`), which hashes them and commits only a blob that
   matches its digest. It tells the fetch when the digest matched (before its commit's fsync).

The last byte is released to the clients only then: when the upstream sends different bytes,
every client's response ends short of its ``Content-Length`` (the connection is cut, so no client
can take a damaged blob for a complete one), and nothing is stored.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import ErrorCode, RegistryError
from ..reference import Digest
from ..store.blobs import BlobInfo
from .upstream import Upstream, UpstreamError

if TYPE_CHECKING:
    from ..store.blobs import BlobStore
    from ..store.uploads import UploadStore

log = logging.getLogger(__name__)

#: bytes gathered from the upstream before they are spooled and handed to the store
BATCH = 2 << 20
#: batches being written to the spool at once
SPOOL_IN_FLIGHT = 3
#: bytes a client's reader takes from the spool at a time (one more read ahead per client)
READ_CHUNK = 1 << 20
#: bytes the store's writer takes from the spool at a time
STORE_CHUNK = 4 << 20


class BlobFetch:
    def __init__(self, *, blobs: "BlobStore", uploads: "UploadStore", upstream: Upstream, remote: str,
                 digest: Digest, size: int, repo: str, spool_dir: str, error_for: Callable[[UpstreamError], RegistryError],
                 on_finished: Callable[["BlobFetch"], None]) -> None:
        self.blobs = blobs
        self.uploads = uploads
        self.upstream = upstream
        self.remote = remote
        self.digest = digest
        self.size = size
        #: local repositories to link the blob into once stored (the first one writes it)
        self.repos: list[str] = [repo]
        self.spool_dir = spool_dir
        self._error_for = error_for
        self._on_finished = on_finished
        #: bytes the readers may read from the spool (the last one waits for the digest check)
        self.readable = 0
        self.received = 0
        self.error: RegistryError | None = None
        self.finished = False
        self.stored = False
        self._fd: int | None = None
        self._readers = 0
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"proxy fetch {self.digest}")

    def add_repo(self, repo: str) -> None:
        if repo not in self.repos:
            self.repos.append(repo)

    # --- the producer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        resp: aiohttp.ClientResponse | None = None
        store: asyncio.Task[None] | None = None
        label = self.upstream.config.label
        try:
            self._fd = await loop.run_in_executor(None, _open_spool, self.spool_dir, self.size)
            resp = await self.upstream.open_blob(self.remote, self.digest)
            if resp.content_length is not None and resp.content_length != self.size:
                raise UpstreamError("invalid", f"the upstream announced {resp.content_length} bytes for "
                                    f"{self.digest}, its HEAD said {self.size}")
            store = asyncio.create_task(self._store(), name=f"proxy store {self.digest}")
            timeout = self.upstream.config.cachewritetimeout
            try:
                async with asyncio.timeout(timeout):
                    await self._receive(resp)
                    resp.close()
                    resp = None
                    await asyncio.shield(store)
            except TimeoutError:
                raise UpstreamError("unavailable", f"fetching {self.digest} took longer than cachewritetimeout "
                                    f"({timeout:g}s)") from None
            self.stored = True
            for repo in self.repos[1:]:
                await self.blobs.link(repo, self.digest)
            log.info("proxy %s: cached %s (%d bytes) for %s", label, self.digest, self.size, self.repos[0])
        except _Mismatch as exc:
            log.error("proxy %s: the upstream sent %s with another digest (%s): not stored, clients aborted",
                      label, self.digest, exc)
            self.error = RegistryError(ErrorCode.BLOB_UNKNOWN, "the upstream sent this blob with another digest: "
                                       "it was not stored", detail={"digest": str(self.digest)}, status=502)
        except RegistryError as err:
            self.error = err
        except UpstreamError as exc:
            log.warning("proxy %s: fetching %s failed: %s", label, self.digest, exc)
            self.error = self._error_for(exc)
        except asyncio.CancelledError:
            self.error = RegistryError(ErrorCode.UNAVAILABLE, "the registry is shutting down")
            raise
        except Exception:
            log.exception("proxy %s: fetching %s failed", label, self.digest)
            self.error = RegistryError(ErrorCode.UNKNOWN, "fetching the blob from the upstream failed")
        finally:
            if resp is not None:
                resp.close()  # a connection left mid-body must not be reused
            if store is not None and not store.done():
                store.cancel()  # nothing of a failed fetch is committed
                await asyncio.gather(store, return_exceptions=True)
            self.finished = True
            self._notify()
            self._on_finished(self)
            self._close_spool_if_idle()

    async def _receive(self, resp: aiohttp.ClientResponse) -> None:
        """The upstream body into the spool, in batches of about :data:`BATCH` bytes, up to
        :data:`SPOOL_IN_FLIGHT` of them being written while the next arrives; too many or too few
        bytes are an error (then nothing is stored)."""
        loop = asyncio.get_running_loop()
        content = resp.content
        fd = self._fd
        assert fd is not None
        writes: collections.deque[tuple[asyncio.Future[Any], int]] = collections.deque()

        def advance(_done: object) -> None:
            """Readers may read up to the end of the written batches that precede every unwritten one."""
            moved = False
            while writes and writes[0][0].done() and not writes[0][0].cancelled() and writes[0][0].exception() is None:
                self.received = writes.popleft()[1]
                moved = True
            if moved:
                self.readable = min(self.received, self.size - 1)
                self._notify()

        offset = 0  # bytes handed to the spool so far
        try:
            while True:
                parts: list[bytes] = []
                n = 0
                try:
                    while n < BATCH:
                        chunk = await content.readany()
                        if not chunk:
                            break
                        parts.append(chunk)
                        n += len(chunk)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    raise UpstreamError("unavailable", f"the upstream's blob body broke off after "
                                        f"{offset + n} of {self.size} bytes ({type(exc).__name__})") from None
                if not parts:
                    break
                if offset + n > self.size:
                    raise UpstreamError("invalid", f"the upstream sent more than the {self.size} bytes of {self.digest}")
                write = loop.run_in_executor(None, _write_at, fd, parts, offset)
                offset += n
                writes.append((write, offset))
                write.add_done_callback(advance)
                while len(writes) >= SPOOL_IN_FLIGHT:
                    await writes[0][0]  # raises a failed write
                    advance(None)
            while writes:
                await writes[0][0]
                advance(None)
        finally:
            if writes:
                await asyncio.wait([w for w, _ in writes])
        if self.received != self.size:
            raise UpstreamError("unavailable", f"the upstream's blob ended after {self.received} of {self.size} bytes")

    async def _store(self) -> None:
        """The spooled bytes through the store's blob write path, as they arrive."""
        try:
            await self.uploads.put_whole(self.repos[0], self.digest, self._spooled(), verified=self._verified)
        except RegistryError as err:
            if err.code is ErrorCode.DIGEST_INVALID:
                computed = err.detail.get("computed") if isinstance(err.detail, dict) else None
                raise _Mismatch(str(computed)) from None
            raise

    def _verified(self) -> None:
        self.readable = self.size  # the clients may have the last byte
        self._notify()

    async def _spooled(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        pos = 0
        while pos < self.size:
            fd = self._fd
            if self.error is not None or fd is None:
                raise RuntimeError("the fetch failed: nothing is stored")
            if pos < self.received:
                data = await loop.run_in_executor(None, os.pread, fd, min(STORE_CHUNK, self.received - pos), pos)
                if not data:
                    raise RuntimeError("the proxy's spool file is shorter than its writes")
                pos += len(data)
                yield data
                continue
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the readers ----------------------------------------------------------------------------

    async def read(self, start: int, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        """``length`` bytes from ``start`` as they become readable; raises the fetch's
        :class:`RegistryError` if it fails first."""
        loop = asyncio.get_running_loop()
        pos, end = start, start + length
        ahead: tuple[int, asyncio.Future[bytes]] | None = None
        self._readers += 1
        try:
            while pos < end:
                if self.error is not None:
                    raise self.error
                fd = self._fd
                if pos < self.readable and fd is not None:
                    if ahead is None or ahead[0] != pos:
                        ahead = (pos, self._pread(loop, fd, pos, min(max(chunk_size, READ_CHUNK),
                                                                     self.readable - pos, end - pos)))
                    data = await ahead[1]
                    ahead = None
                    if not data:
                        raise RegistryError(ErrorCode.UNKNOWN, "the proxy's spool file is shorter than announced")
                    pos += len(data)
                    if pos < min(self.readable, end):  # the next piece is read while this one is sent
                        ahead = (pos, self._pread(loop, fd, pos, min(max(chunk_size, READ_CHUNK),
                                                                     self.readable - pos, end - pos)))
                    yield data
                    continue
                if self.stored and fd is None:  # finished before this reader came: the stored blob
                    info = BlobInfo(self.digest, self.size, _blob_path(self.digest))
                    async for chunk in self.blobs.read(info, pos, end - pos, chunk_size=chunk_size):
                        yield chunk
                    return
                if self.finished and self.error is None and not self.stored:
                    raise RegistryError(ErrorCode.UNKNOWN, "the blob fetch ended without storing the blob")
                await self._changed.wait()
        finally:
            if ahead is not None:  # the spool stays open until the read in flight ends
                await asyncio.wait([ahead[1]])
            self._readers -= 1
            self._close_spool_if_idle()

    @staticmethod
    def _pread(loop: asyncio.AbstractEventLoop, fd: int, pos: int, n: int) -> asyncio.Future[bytes]:
        return loop.run_in_executor(None, os.pread, fd, n, pos)

    def _close_spool_if_idle(self) -> None:
        if self.finished and self._readers == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


class _Mismatch(Exception):
    """The upstream's bytes have another digest (the computed one is the message)."""


def _blob_path(d: Digest) -> str:
    from ..store import paths

    return paths.blob_data(d)


def _open_spool(directory: str, size: int) -> int:
    """An unlinked temporary file (nothing to clean up after a crash), its blocks allocated at
    once (appending into allocated blocks costs half the CPU of growing a file)."""
    f = tempfile.TemporaryFile(dir=directory, prefix="registry-proxy-")
    fd = os.dup(f.fileno())
    f.close()
    if size > 0:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            raise UpstreamError("unavailable", f"no room to spool {size} bytes in {directory}: {exc}") from None
    return fd


def _write_at(fd: int, parts: list[bytes], offset: int) -> None:
    total = sum(len(p) for p in parts)
    written = os.pwritev(fd, parts, offset)
    if written < total:  # a short write (rare): the rest one piece at a time
        rest = b"".join(parts)[written:]
        offset += written
        while rest:
            n = os.pwrite(fd, rest, offset)
            offset += n
            rest = rest[n:]
