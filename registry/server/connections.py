"""No connection can starve the server: a connection cap, timeouts, and quiet parser rejections.

Each connection is in one phase: **idle** (between requests, or connected and silent), **header**
(a request line and headers are arriving) or **active** (a request is being handled). The
:class:`ConnectionGuard` of a process keeps them in order and, once a second, closes

- idle connections after ``idle`` seconds (aiohttp's keep-alive timeout),
- connections whose request line and headers have not all arrived ``header`` seconds after their
  first byte (slowloris; a ``408`` is sent first), and TLS handshakes after the same time,
- active connections whose request body has not moved for ``body`` seconds while the server waits
  for it, or whose client has not read the response for as long (the server's own back-pressure,
  a handler busy with storage, does not count).

At the cap (``max_connections`` per process) a new connection first takes the place of the
longest-idle one, then of the oldest still sending its headers; only when every connection is
handling a request is the newcomer answered ``503`` with ``Retry-After`` and closed. Every
closing, eviction and refusal is logged through a :class:`~registry.server.reports.ThrottledLog`
(a line at once, then a count per 10 s).

A request aiohttp's parser rejects is answered ``400`` (an OCI error envelope, never the request's
bytes) and logged as one short warning naming the client and the parser's reason, throttled too;
it gets no access-log line. A client that went away mid-request is a debug line, not a traceback.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import math
import re
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError

from ..errors import ErrorCode, RegistryError
from .reports import ThrottledLog

log = logging.getLogger("registry.http")

IDLE, HEADER, ACTIVE = "idle", "header", "active"
#: file descriptors kept for everything but client sockets (storage, logs, the sendfile pool)
FD_RESERVE = 256
#: the most connections the default allows per process (about 20 KiB of memory each)
AUTO_MAX = 10_000
#: refused connections that may linger (for the client to read the 503) at the same time
MAX_LINGERING_REFUSALS = 64
REFUSAL_LINGER = 2.0
SWEEP_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """``http.timeouts`` and ``http.maxconnections``, in seconds and connections per process."""

    idle: float = 120.0
    header: float = 30.0
    body: float = 60.0
    #: per process; 0 = :func:`auto_max_connections`
    max_connections: int = 0


def raise_fd_limit() -> int:
    """Raise this process's soft file-descriptor limit to its hard limit (as Go programs such as
    distribution do at start); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def auto_max_connections(fd_limit: int) -> int:
    """The default cap: two descriptors per connection (its socket and a blob it may be serving)
    below the limit, keeping :data:`FD_RESERVE`, and at most :data:`AUTO_MAX`."""
    if fd_limit == resource.RLIM_INFINITY or fd_limit <= 0:
        return AUTO_MAX
    return max(16, min(AUTO_MAX, (fd_limit - FD_RESERVE) // 2))


def connection_limits(http: Any) -> ConnectionLimits:
    """This process's limits from the typed ``http:`` config (``http.maxconnections`` is shared by
    all workers; the default comes from this process's file descriptor limit)."""
    timeouts = http.timeouts
    if http.maxconnections:
        cap = max(1, math.ceil(http.maxconnections / max(1, http.workers)))
    else:
        cap = auto_max_connections(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    return ConnectionLimits(idle=timeouts.idle, header=timeouts.header, body=timeouts.body, max_connections=cap)


# --------------------------------------------------------------------------- responses

def _raw_response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


_REFUSAL = _raw_response(
    "503 Service Unavailable",
    {"Content-Type": "application/json", "Retry-After": "1", "Docker-Distribution-API-Version": "registry/2.0"},
    json.dumps(RegistryError(ErrorCode.UNAVAILABLE, "too many connections; retry shortly").body()).encode(),
)
_HEADER_TIMEOUT = _raw_response("408 Request Timeout", {}, b"")
#: the C parser's reasons are llhttp's fixed phrases, before ":\n" and the offending bytes
#: ("Invalid header value char:\n\n  b'...'"); the pure-Python parser's messages hold the bytes
#: themselves except for these. Nothing else of a message is ever logged or echoed.
_SAFE_REASON = re.compile(r"[A-Za-z][A-Za-z0-9 /-]{2,60}")
_FIXED_REASONS = frozenset(("Received HTTPS traffic on an HTTP port", "Data after `Connection: close`",
                            "Too many headers received", "Bad line ending, expected CRLF",
                            "Missing 'Host' header in request.", "Request has invalid `Transfer-Encoding`",
                            "Too many trailers received"))


def rejection_reason(exc: BaseException | None) -> str:
    """A short description of a parser rejection that holds none of the request's bytes."""
    name = type(exc).__name__ if exc is not None else "BadHttpMessage"
    message = getattr(exc, "message", "")
    if not isinstance(message, str):
        return name
    if message in _FIXED_REASONS:
        return f"{name}: {message}"
    phrase, sep, _ = message.partition(":\n")
    return f"{name}: {phrase}" if sep and _SAFE_REASON.fullmatch(phrase) else name


def is_tls_on_plain_port(exc: BaseException | None) -> bool:
    """TLS bytes sent to the plain-HTTP port: what docker, podman and skopeo try first."""
    message = getattr(exc, "message", "")
    return isinstance(exc, BadHttpMethod) and isinstance(message, str) and (
        "\\x16\\x03" in message or "HTTPS traffic" in message)


# --------------------------------------------------------------------------- the guard

class ConnectionGuard:
    """The connections of one process, by phase, with the cap and the timeouts (module docstring)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.max_connections = limits.max_connections or auto_max_connections(
            resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.report = ThrottledLog(log)
        self._pending: dict[asyncio.Protocol, float] = {}
        self._idle: collections.OrderedDict[GuardedRequestHandler, None] = collections.OrderedDict()
        self._header: collections.OrderedDict[GuardedRequestHandler, None] = collections.OrderedDict()
        self._active: set[GuardedRequestHandler] = set()
        self.lingering_refusals = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ accounting

    @property
    def open_connections(self) -> int:
        return len(self._pending) + len(self._idle) + len(self._header) + len(self._active)

    def phase_counts(self) -> dict[str, int]:
        return {"pending": len(self._pending), IDLE: len(self._idle), HEADER: len(self._header),
                ACTIVE: len(self._active)}

    def protocol_factory(self, make_handler: Callable[[], "GuardedRequestHandler"]) -> Callable[[], asyncio.Protocol]:
        """What ``loop.create_server`` calls for each accepted connection: a handler when there is
        room (evicting an idle or slow connection at the cap), else a 503 refusal."""

        def factory() -> asyncio.Protocol:
            if self.open_connections >= self.max_connections and not self._evict():
                return _Refusal(self)
            handler = make_handler()
            self._pending[handler] = self._now()
            return handler

        return factory

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _evict(self) -> bool:
        for queue, what in ((self._idle, "idle"), (self._header, "still sending its headers")):
            while queue:
                handler, _ = queue.popitem(last=False)
                handler.guard_phase = None
                peer = handler.peer()
                if handler.close_now():
                    self.report.event(
                        "evicted", f"connection limit ({self.max_connections}) reached: closed connections "
                        "to make room", "connection limit (%d) reached: closed the oldest connection that "
                        "was %s (from %s) to make room", self.max_connections, what, peer)
                    return True
        return False

    def opened(self, handler: "GuardedRequestHandler") -> None:
        self._pending.pop(handler, None)
        self.move(handler, IDLE)

    def closed(self, handler: "GuardedRequestHandler") -> None:
        self._pending.pop(handler, None)
        self._forget(handler)

    def _forget(self, handler: "GuardedRequestHandler") -> None:
        phase, handler.guard_phase = handler.guard_phase, None
        if phase == IDLE:
            self._idle.pop(handler, None)
        elif phase == HEADER:
            self._header.pop(handler, None)
        elif phase == ACTIVE:
            self._active.discard(handler)

    def move(self, handler: "GuardedRequestHandler", phase: str) -> None:
        self._forget(handler)
        handler.guard_phase, handler.phase_since = phase, self._now()
        if phase == IDLE:
            self._idle[handler] = None
        elif phase == HEADER:
            self._header[handler] = None
        else:
            self._active.add(handler)

    # ------------------------------------------------------------------ the sweep

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.report.flush()

    def _sweep(self) -> None:
        assert self._loop is not None
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)
        try:
            self.sweep(self._loop.time())
        except Exception:  # the guard must keep running whatever one connection does
            log.exception("connection sweep failed")

    def sweep(self, now: float) -> None:
        limits = self.limits
        while self._header and limits.header:
            handler = next(iter(self._header))
            if now - handler.phase_since < limits.header:
                break
            self._header.pop(handler)
            handler.guard_phase = None
            peer = handler.peer()
            handler.close_now(_HEADER_TIMEOUT)
            self.report.event("header-timeout", "closed connections whose request headers did not arrive in "
                              f"{limits.header:g}s", "closed a connection from %s: its request headers did "
                              "not arrive within %gs", peer, limits.header)
        for handler in list(self._active) if limits.body else ():
            stalled = handler.stalled_for(now)
            if stalled is not None and stalled[1] >= limits.body:
                self._forget(handler)
                peer = handler.peer()
                handler.close_now()
                self.report.event(stalled[0].replace(" ", "-") + "-stall", f"closed connections whose {stalled[0]} "
                                  f"stalled for {limits.body:g}s", "closed a connection from %s: its %s did not move "
                                  "for %gs", peer, stalled[0], limits.body)
        grace = (limits.header or 60.0) + 10.0
        for protocol, since in list(self._pending.items()):
            if now - since > grace:  # a TLS handshake that failed: its protocol never got connected
                del self._pending[protocol]
        self.report.flush()

    def refused(self, peer: str) -> None:
        self.report.event("refused", f"connection limit ({self.max_connections}) reached with every connection "
                          "busy: refused connections with 503", "connection limit (%d) reached with every "
                          "connection busy: refused a connection from %s with 503", self.max_connections, peer)


class _Refusal(asyncio.Protocol):
    """Answers 503 and closes: the client learns why instead of waiting in the backlog."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.transport: Any = None
        self.timer: asyncio.TimerHandle | None = None
        self.lingering = False

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are no asyncio.Transport
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.guard.refused(peer[0] if isinstance(peer, tuple) else "?")
        transport.write(_REFUSAL)
        if self.guard.lingering_refusals < MAX_LINGERING_REFUSALS and transport.can_write_eof():
            # half-close and read what the client sends for a moment: closing with unread data
            # would reset the connection before the client reads the answer
            transport.write_eof()
            self.guard.lingering_refusals += 1
            self.lingering = True
            self.timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.close)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.lingering:
            self.guard.lingering_refusals -= 1
            self.lingering = False


# --------------------------------------------------------------------------- the protocol

class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's request handler, reporting its phase to the guard (and quiet on bad requests)."""

    __slots__ = ("guard", "guard_phase", "phase_since", "last_received", "write_paused_since", "_body", "_rejected")

    def __init__(self, manager: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.guard_phase: str | None = None
        self.phase_since = 0.0
        self.last_received = 0.0
        self.write_paused_since: float | None = None
        self._body: Any = None
        self._rejected = False

    # -- phases

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.last_received = self._loop.time()
        self.guard.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()
        if self.guard_phase == IDLE and data and (self._body is None or self._body.is_eof()):
            self.guard.move(self, HEADER)  # the first bytes of a request (not the rest of a body)
        count = self._request_count
        super().data_received(data)
        if self._request_count != count and self.guard_phase != ACTIVE and self.guard_phase is not None:
            self.guard.move(self, ACTIVE)

    async def _handle_request(self, request: Any, start_time: Any, request_handler: Any) -> Any:
        self._body = request.content
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            if self.guard_phase == ACTIVE and not getattr(self, "_messages", None):
                self.guard.move(self, IDLE)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused_since = self._loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused_since = None

    def send_stalled(self) -> None:
        """Called by :mod:`registry.eventloop` when a zero-copy send gave up on a client that did not read."""
        self.guard.report.event("response-stall", f"closed connections whose response stalled for "
                                f"{self.guard.limits.body:g}s", "closed a connection from %s: its response did "
                                "not move for %gs", self.peer(), self.guard.limits.body)

    def stalled_for(self, now: float) -> tuple[str, float] | None:
        """("request body" | "response", seconds) when the client holds up this active connection."""
        if self.write_paused_since is not None:
            return "response", now - self.write_paused_since
        body = self._body
        if (body is not None and not body.is_eof() and not getattr(self, "_reading_paused", False)
                and not getattr(self, "_buffer_paused", False)):
            return "request body", now - self.last_received
        return None

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "?"

    def close_now(self, farewell: bytes = b"") -> bool:
        """Close the connection (after ``farewell``); False when it was already gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if farewell:
            transport.write(farewell)
        self.force_close()
        return True

    # -- malformed requests and vanished clients

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status == 400 and isinstance(exc, HttpProcessingError):
            self._rejected = True
            reason = rejection_reason(exc)
            if is_tls_on_plain_port(exc):  # every docker, podman and skopeo run does this once
                self.guard.report.event("tls", "answered TLS handshakes on the plain-HTTP port", "answered a TLS "
                                        "handshake from %s on the plain-HTTP port with 400", self.peer(),
                                        level=logging.DEBUG)
            else:
                self.guard.report.event("rejected", "rejected malformed HTTP requests", "rejected a malformed "
                                        "HTTP request from %s: %s", self.peer(), reason, burst=5)
            body = RegistryError(ErrorCode.UNSUPPORTED, f"malformed HTTP request ({reason})", status=400).body()
            resp = web.Response(status=400, text=json.dumps(body), content_type="application/json",
                                headers={"Docker-Distribution-API-Version": "registry/2.0"})
            resp.force_close()
            return resp
        if isinstance(exc, ConnectionError):
            log.debug("client %s went away during a request: %s", self.peer(), type(exc).__name__)
            resp = web.Response(status=status)
            resp.force_close()
            return resp
        return super().handle_error(request, status, exc, message)

    def log_access(self, request: Any, response: Any, time: float | None) -> None:
        if not self._rejected:
            super().log_access(request, response, time)


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`; with ``sock``, on that
    listening socket instead of ``host:port`` (a Unix socket, or one systemd passed)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard,
                 handler_args: dict[str, Any], sock: Any = None, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.guard = guard
        self.handler_args = handler_args
        self.sock = sock

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None
        make = lambda: GuardedRequestHandler(manager, self.guard, loop=loop, **self.handler_args)  # noqa: E731
        handshake = (self.guard.limits.header or None) if self._ssl_context is not None else None
        if self.sock is not None:
            self._server = await loop.create_server(
                self.guard.protocol_factory(make), sock=self.sock, ssl=self._ssl_context, backlog=self._backlog,
                ssl_handshake_timeout=handshake,
            )
        else:
            self._server = await loop.create_server(
                self.guard.protocol_factory(make), self._host, self._port, ssl=self._ssl_context,
                backlog=self._backlog, reuse_address=self._reuse_address, reuse_port=self._reuse_port,
                ssl_handshake_timeout=handshake,
            )
        if self._server.sockets and self.sock is None:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        self.guard.start(loop)

    async def stop(self) -> None:
        self.guard.stop()
        await super().stop()


async def serve_app(app: web.Application, host: str, port: int, limits: ConnectionLimits) -> None:
    """Serve ``app`` through a guard until SIGINT or SIGTERM (``registry auth serve-token``; the
    registry itself is served by :mod:`registry.cli`, which adds workers, TLS and the debug server)."""
    import signal

    handler_args: dict[str, Any] = {"access_log": logging.getLogger("registry.access"),
                                    "keepalive_timeout": limits.idle}
    runner = web.AppRunner(app, handle_signals=False, **handler_args)
    await runner.setup()
    guard = ConnectionGuard(limits)
    await GuardedSite(runner, host, port, guard=guard, handler_args=handler_args).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
