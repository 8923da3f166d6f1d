"""The event loop the server runs on: uvloop when installed, taught to ``sendfile``.

aiohttp serves a local blob with ``loop.sendfile()``. uvloop does not implement it, so aiohttp
falls back to reading the file in chunks on a thread and copying each into the socket: twice the
CPU per MB pulled of the standard loop's zero-copy path (measured by ``benchmarks.compare``),
while uvloop is cheaper for everything else. :class:`SendfileLoop` restores the zero-copy path:
``os.sendfile`` runs in a dedicated thread pool, waiting with ``poll()`` while the socket buffer
is full. The thread works on duplicates of the socket and file descriptors and closes them
itself, so a client that disconnects (uvloop then closes its descriptor, whose number the next
accepted connection may get) can never make the thread write into another client's socket.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

#: seconds a client may keep its receive window shut before the download is abandoned
STALL_TIMEOUT = 300.0
#: bytes per sendfile call (Linux caps a call at about 2 GiB anyway)
_MAX_CALL = 1 << 30
#: concurrent zero-copy sends; a send beyond them waits for a free thread
_THREADS = 64

_pool: ThreadPoolExecutor | None = None


class ClientStalled(ConnectionResetError):
    """The client kept its receive window shut for :data:`STALL_TIMEOUT` seconds."""


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="sendfile")
    return _pool


def _send(sock_fd: int, file_fd: int, offset: int, count: int, cancelled: threading.Event) -> int:
    """Send ``count`` bytes of ``file_fd`` from ``offset``; closes both (duplicated) descriptors."""
    try:
        poller = select.poll()
        poller.register(sock_fd, select.POLLOUT)
        sent = 0
        while sent < count and not cancelled.is_set():
            try:
                n = os.sendfile(sock_fd, file_fd, offset + sent, min(count - sent, _MAX_CALL))
            except BlockingIOError:
                if not poller.poll(STALL_TIMEOUT * 1000):
                    raise ClientStalled("the client stopped reading") from None
                continue
            if n == 0:
                break  # the file is shorter than announced
            sent += n
        return sent
    finally:
        os.close(sock_fd)
        os.close(file_fd)


def _sendfile_loop_class() -> type | None:
    try:
        import uvloop
    except ImportError:
        return None

    class SendfileLoop(uvloop.Loop):  # type: ignore[misc,name-defined]
        """uvloop with a zero-copy ``sendfile`` for plain TCP transports."""

        async def sendfile(
            self, transport: Any, file: IO[bytes], offset: int = 0, count: int | None = None, *, fallback: bool = True
        ) -> int:
            sock = transport.get_extra_info("socket")
            if (
                sock is None
                or not hasattr(os, "sendfile")
                or transport.is_closing()
                or transport.get_write_buffer_size()  # the headers must be out before the body
                or transport.get_extra_info("sslcontext") is not None
            ):
                # uvloop's own answer: NotImplementedError, which makes aiohttp copy instead
                return await super().sendfile(transport, file, offset, count, fallback=fallback)
            if count is None:
                count = os.fstat(file.fileno()).st_size - offset
            if count <= 0:
                return 0
            cancelled = threading.Event()
            sock_fd, file_fd = os.dup(sock.fileno()), os.dup(file.fileno())
            work = self.run_in_executor(_executor(), _send, sock_fd, file_fd, offset, count, cancelled)
            try:
                # shielded: the thread must run even when we are cancelled, to close the duplicates
                sent = await asyncio.shield(work)
            except ClientStalled:
                stalled = getattr(transport.get_protocol(), "send_stalled", None)
                if stalled is not None:  # the server's connection guard reports it
                    stalled()
                raise
            except BaseException:
                cancelled.set()
                raise
            if sent < count:
                transport.abort()  # the announced length cannot be met: end the connection
                raise ConnectionResetError(f"sent {sent} of {count} bytes")
            file.seek(offset + sent)
            return sent

    return SendfileLoop


_LOOP_CLASS = _sendfile_loop_class()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A :class:`SendfileLoop` (uvloop); the standard loop when uvloop is not installed."""
    if _LOOP_CLASS is None:
        return asyncio.new_event_loop()
    return _LOOP_CLASS()


def uvloop_available() -> bool:
    return _LOOP_CLASS is not None
