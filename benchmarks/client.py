"""A minimal HTTP/1.1 client, fast enough that the registries, not the client, are measured.

Why not a library: a benchmark of servers that move 1-4 GB/s over loopback needs a client that sends
memoryview slices straight to ``sendall`` (no copies), reads bodies with ``recv_into`` into large
buffers, hashes on another thread while receiving, and, for small requests, costs a few
microseconds per request. Two clients share one response parser:

- :class:`Connection`: blocking, keep-alive, for large transfers (one thread per connection);
- :func:`run_small_requests`: N keep-alive connections on one asyncio (uv)loop, for request rates.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

RECV_BUFFER = 4 * 1024 * 1024
SEND_SLICE = 8 * 1024 * 1024
NO_BODY_STATUSES = {204, 304}


class HTTPError(Exception):
    """A protocol-level failure: connection closed early, malformed response."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    length: int = 0  # body bytes received (also when streamed into a sink and not kept)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response head (without the final blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HTTPError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), headers


def build_request(
    method: str, target: str, host: str, headers: dict[str, str] | None = None, length: int | None = None
) -> bytes:
    """The request head; ``length`` adds Content-Length (always sent for methods with a body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "User-Agent: pyregistry-bench/1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def path_of(location: str) -> str:
    """A Location header as a request target (registries answer absolute or relative URLs)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def add_query(target: str, query: str) -> str:
    return target + ("&" if "?" in target else "?") + query


class Connection:
    """One blocking keep-alive connection. Reconnects transparently after ``Connection: close``."""

    def __init__(self, host: str, port: int, recv_buffer: int = RECV_BUFFER) -> None:
        self.host, self.port = host, port
        self.authority = f"{host}:{port}"
        self.sock: socket.socket | None = None
        self.pending = bytearray()
        self.buffer = bytearray(recv_buffer)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.pending.clear()

    def _connect(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=600)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
        return self.sock

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | memoryview | None = None,
        sink: Callable[[memoryview], None] | None = None,
        expect_continue: bool = False,
        chunked: int | None = None,
    ) -> Response:
        """Send one request and read its response.

        ``body`` is sent in memoryview slices. With ``sink`` the response body is streamed into it
        instead of being kept. With ``expect_continue`` the body is sent only after a 100 answer;
        a final answer instead means the server did not want it (the body is not sent). With
        ``chunked`` the body goes with ``Transfer-Encoding: chunked`` in chunks of that many bytes
        and no length, as Go's HTTP client sends a body of unknown length (docker's PATCH of a
        whole layer: one chunk per 32 KiB ``io.Copy`` buffer).
        """
        sock = self._connect()
        headers = dict(headers or {})
        if expect_continue:
            headers["Expect"] = "100-continue"
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
            length = None
        else:
            length = None if body is None and method in ("GET", "HEAD", "DELETE") else len(body or b"")
        sock.sendall(build_request(method, target, self.authority, headers, length))
        if expect_continue and body:
            status, head = self._read_head()
            if status != 100:
                return self._finish(method, status, head, sink)
        if body is not None and chunked:
            try:
                self._send_chunked(sock, memoryview(body), chunked)
            except OSError:
                pass
        elif body:
            try:
                self._send_body(sock, memoryview(body))
            except OSError:
                # The server answered early and closed; read that answer if there is one.
                pass
        status, head = self._read_head()
        while status == 100:
            status, head = self._read_head()
        return self._finish(method, status, head, sink)

    @staticmethod
    def _send_body(sock: socket.socket, view: memoryview) -> None:
        for offset in range(0, len(view), SEND_SLICE):
            sock.sendall(view[offset : offset + SEND_SLICE])

    @staticmethod
    def _send_chunked(sock: socket.socket, view: memoryview, chunk: int) -> None:
        """The body as chunks of ``chunk`` bytes, then the last chunk; each ``sendmsg`` carries
        about :data:`SEND_SLICE` bytes of chunks (what goes on the wire is the same)."""
        per_call = max(1, SEND_SLICE // chunk)
        crlf = b"\r\n"
        offsets = range(0, len(view), chunk)
        for first in range(0, len(offsets), per_call):
            parts: list[bytes | memoryview] = []
            for offset in offsets[first : first + per_call]:
                piece = view[offset : offset + chunk]
                parts += [b"%x\r\n" % len(piece), piece, crlf]
            _sendmsg_all(sock, parts)
        sock.sendall(b"0\r\n\r\n")

    def _finish(
        self, method: str, status: int, head: dict[str, str], sink: Callable[[memoryview], None] | None
    ) -> Response:
        response = Response(status, head)
        chunked = "chunked" in head.get("transfer-encoding", "").lower()
        until_close = False
        if method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            pass
        elif chunked:
            response.body = self._read_chunked()
            response.length = len(response.body)
            if sink is not None:
                sink(memoryview(response.body))
        elif "content-length" in head:
            response.length = int(head["content-length"])
            response.body = self._read_exact(response.length, sink)
        else:
            until_close = True
            response.body = self._read_to_close(sink)
            response.length = len(response.body)
        if until_close or "close" in head.get("connection", "").lower():
            self.close()
        return response

    def _recv_more(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise HTTPError("connection closed by the server")
        self.pending += data

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while True:
            end = self.pending.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.pending[:end])
                del self.pending[: end + 4]
                return parse_head(head)
            self._recv_more()

    def _read_line(self) -> bytes:
        while True:
            end = self.pending.find(b"\r\n")
            if end >= 0:
                line = bytes(self.pending[:end])
                del self.pending[: end + 2]
                return line
            self._recv_more()

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():  # trailers end with an empty line
                    pass
                return bytes(out)
            out += self._read_exact(size, None)
            self._read_line()

    def _read_exact(self, n: int, sink: Callable[[memoryview], None] | None) -> bytes:
        """Read ``n`` body bytes; into ``sink`` (kept nowhere) or returned when no sink is given."""
        kept = bytearray() if sink is None else None
        take = min(n, len(self.pending))
        if take:
            if kept is not None:
                kept += self.pending[:take]
            else:
                sink(memoryview(bytes(self.pending[:take])))  # type: ignore[misc]
            del self.pending[:take]
            n -= take
        if n and kept is not None and n <= 1 << 20:
            while len(self.pending) < n:
                self._recv_more()
            kept += self.pending[:n]
            del self.pending[:n]
            return bytes(kept)
        view = memoryview(self.buffer)
        assert self.sock is not None
        while n:
            got = self.sock.recv_into(view, min(n, len(view)))
            if not got:
                raise HTTPError("connection closed in the middle of a body")
            if kept is not None:
                kept += view[:got]
            else:
                sink(view[:got])  # type: ignore[misc]
            n -= got
        return bytes(kept) if kept is not None else b""

    def _read_to_close(self, sink: Callable[[memoryview], None] | None) -> bytes:
        kept = bytearray(self.pending)
        self.pending.clear()
        assert self.sock is not None
        while True:
            data = self.sock.recv(RECV_BUFFER)
            if not data:
                break
            kept += data
        if sink is not None:
            sink(memoryview(kept))
        return bytes(kept)


class PipelinedHasher:
    """Hashes on a worker thread so that receiving and hashing overlap (hashlib drops the GIL).

    Use :meth:`pull_into` as the receive loop: it hands the hasher full buffers from a small ring.
    """

    def __init__(self, algorithm: str = "sha256", buffers: int = 4, size: int = RECV_BUFFER) -> None:
        self.hash = hashlib.new(algorithm)
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(buffers):
            self.free.put(bytearray(size))
        self.full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.full.get()
            if item is None:
                return
            buf, n = item
            self.hash.update(memoryview(buf)[:n])
            self.free.put(buf)

    def hexdigest(self) -> str:
        self.full.put(None)
        self.thread.join()
        return self.hash.hexdigest()


def _sendmsg_all(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """``sendmsg`` every part, resuming after partial sends."""
    views = [memoryview(p) for p in parts]
    i = 0
    while i < len(views):
        sent = sock.sendmsg(views[i : i + 1024])
        while sent and i < len(views):
            if sent >= views[i].nbytes:
                sent -= views[i].nbytes
                i += 1
            else:
                views[i] = views[i][sent:]
                sent = 0


def get_blob(conn: Connection, target: str, verify: bool) -> tuple[Response, str | None]:
    """GET a blob, discarding it, or hashing it on a second thread when ``verify``; follows one redirect."""
    if not verify:
        response = conn.request("GET", target, sink=lambda _view: None)
        if response.status in (301, 302, 307, 308):
            response = conn.request("GET", path_of(response.header("location")), sink=lambda _view: None)
        return response, None
    sock = conn._connect()
    sock.sendall(build_request("GET", target, conn.authority))
    status, head = conn._read_head()
    response = Response(status, head)
    if status != 200:
        return conn._finish("GET", status, head, None), None
    n = int(head["content-length"])
    response.length = n
    hasher = PipelinedHasher()
    take = min(n, len(conn.pending))
    if take:
        hasher.hash.update(bytes(conn.pending[:take]))
        del conn.pending[:take]
        n -= take
    while n:
        buf = hasher.free.get()
        view = memoryview(buf)
        filled = 0
        # Fill most of a buffer before handing it over: fewer, larger hash calls.
        while filled < len(buf) and n:
            got = sock.recv_into(view[filled:], min(n, len(buf) - filled))
            if not got:
                raise HTTPError("connection closed in the middle of a body")
            filled += got
            n -= got
        hasher.full.put((buf, filled))
    return response, hasher.hexdigest()


# --- many small requests on one event loop -------------------------------------------------------


@dataclass
class SmallResult:
    ops: int = 0
    errors: int = 0
    elapsed: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


def _try_parse(buf: bytearray, is_head: bool) -> tuple[int, int] | None:
    """(status, bytes consumed) when ``buf`` holds a whole response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    status, headers = parse_head(bytes(buf[:end]))
    start = end + 4
    if is_head or status in NO_BODY_STATUSES:
        return status, start
    if "content-length" in headers:
        total = start + int(headers["content-length"])
        return (status, total) if len(buf) >= total else None
    if "chunked" in headers.get("transfer-encoding", "").lower():
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n", pos)
                while trailer_end >= 0 and trailer_end != pos:  # skip trailers
                    pos = trailer_end + 2
                    trailer_end = buf.find(b"\r\n", pos)
                return (status, trailer_end + 2) if trailer_end >= 0 else None
            pos += size + 2
            if pos > len(buf):
                return None
    raise HTTPError("response without a length")


class _SmallProtocol(asyncio.Protocol):
    """One keep-alive connection; :meth:`roundtrip` sends one prebuilt request and awaits its answer."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.is_head = False
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            parsed = _try_parse(self.buf, self.is_head)
        except Exception as exc:  # noqa: BLE001 - surfaced to the caller as an error count
            self.waiter.set_exception(exc)
            return
        if parsed is not None:
            del self.buf[: parsed[1]]
            self.waiter.set_result(parsed[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HTTPError("connection closed"))

    async def roundtrip(self, request: bytes, is_head: bool) -> int:
        assert self.transport is not None
        self.is_head = is_head
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


RequestFactory = Callable[[int], tuple[bytes, bool, Sequence[int]]]
"""op number -> (request bytes, is HEAD, accepted statuses)."""


async def _small_requests(
    host: str, port: int, make: RequestFactory, concurrency: int, duration: float, max_ops: int | None
) -> SmallResult:
    loop = asyncio.get_running_loop()
    result = SmallResult()
    counter = iter(range(10**12))
    protocols = [
        (await loop.create_connection(_SmallProtocol, host, port))[1] for _ in range(concurrency)
    ]
    start = time.perf_counter()
    deadline = start + duration

    async def worker(proto: _SmallProtocol) -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            if max_ops is not None and n >= max_ops:
                return
            request, is_head, ok = make(n)
            try:
                status = await proto.roundtrip(request, is_head)
            except Exception:  # noqa: BLE001 - a failed request is counted, not fatal
                result.errors += 1
                if proto.closed:
                    return
                continue
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status in ok:
                result.ops += 1
            else:
                result.errors += 1

    await asyncio.gather(*(worker(p) for p in protocols))
    result.elapsed = time.perf_counter() - start
    for proto in protocols:
        if proto.transport is not None:
            proto.transport.close()
    return result


def run_small_requests(
    host: str,
    port: int,
    make: RequestFactory,
    concurrency: int = 16,
    duration: float = 3.0,
    max_ops: int | None = None,
) -> SmallResult:
    """Run ``make``'s requests on ``concurrency`` connections for ``duration`` seconds (or ``max_ops``)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in the `fast` extra
        runner = asyncio.run
    return runner(_small_requests(host, port, make, concurrency, duration, max_ops))
