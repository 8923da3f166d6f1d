"""What every handler shares: the store, the repository name, request bodies, URLs, gates."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

from aiohttp import web

from ..config import Config
from ..errors import ErrorCode, RegistryError
from ..reference import parse_content_range, parse_name
from ..store import Store

log = logging.getLogger(__name__)

STORE_KEY: web.AppKey[Store] = web.AppKey("store", Store)
#: request bodies are handed to the store in pieces of about this size (fewer, larger writes)
BODY_BATCH = 4 << 20


def store(request: web.Request) -> Store:
    return request.app[STORE_KEY]


def config(request: web.Request) -> Config:
    from ..app import CONFIG_KEY

    return request.app[CONFIG_KEY]


def repo_name(request: web.Request) -> str:
    return parse_name(request.match_info["name"])


def v2_path(request: web.Request, suffix: str) -> str:
    """The path of ``/v2/<suffix>`` under ``http.prefix`` (Link headers are relative, as the
    spec's examples and the reference)."""
    return f"{config(request).http.prefix.rstrip('/')}/v2/{suffix}"


def v2_url(request: web.Request, suffix: str) -> str:
    """The URL of ``/v2/<suffix>`` for Location headers: absolute from ``http.host`` when set,
    else from the request's scheme and host (``X-Forwarded-Proto``/``-Host`` honoured);
    relative when ``http.relativeurls`` is true."""
    http = config(request).http
    path = v2_path(request, suffix)
    if http.relativeurls:
        return path
    if http.host:
        return http.host.rstrip("/") + path
    proto = _first(request.headers.get("X-Forwarded-Proto")) or request.scheme
    host = _first(request.headers.get("X-Forwarded-Host")) or request.host
    if proto not in ("http", "https") or not host or any(c in host for c in "/?#@ \t"):
        return path
    return f"{proto}://{host}{path}"


def _first(value: str | None) -> str:
    return value.split(",")[0].strip() if value else ""


def quote_query(value: str) -> str:
    return quote(value, safe="")


def require_delete(request: web.Request) -> None:
    if not config(request).storage.delete_enabled:
        raise RegistryError(ErrorCode.UNSUPPORTED, "deletion is disabled (storage.delete.enabled)")


def require_writable(request: web.Request) -> None:
    if config(request).storage.readonly:
        raise RegistryError(ErrorCode.UNSUPPORTED, "the registry is in read-only mode")


def has_body(request: web.Request) -> bool:
    return request.body_exists


async def body_chunks(request: web.Request, batch: int = BODY_BATCH) -> AsyncIterator[list[bytes]]:
    """The request body (chunked transfer too) as it arrives, in batches of pieces totalling
    about ``batch`` bytes: the store hands a batch to a hashing thread in one hop, and the
    pieces are never joined (a join would copy every byte once more)."""
    content = request.content
    parts: list[bytes] = []
    size = 0
    while True:
        try:
            # one piece as received; readany() would join everything buffered meanwhile (a copy)
            chunk, end_of_http_chunk = await content.readchunk()
        except ConnectionError as exc:  # the client went away mid-body: no traceback, one line
            log.info("%s %s: client disconnected during the body: %s", request.method, request.path, exc)
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "the connection closed before the end of the body")
        if not chunk:
            if end_of_http_chunk:
                continue  # a chunked-transfer boundary, not the end
            break
        parts.append(chunk)
        size += len(chunk)
        if size >= batch:
            yield parts
            parts, size = [], 0
    if parts:
        yield parts


async def exactly(chunks: AsyncIterator[list[bytes]], length: int, declared: str) -> AsyncIterator[list[bytes]]:
    """``chunks`` held to exactly ``length`` bytes (what a ``Content-Range`` declared): one batch is
    held back until the next one or the end shows the total, so a body of one batch (4 MiB) with
    a byte too many or too few is refused before any of it is written, and no byte beyond
    ``length`` is ever written (a longer body may have had its earlier batches appended)."""
    held: list[bytes] | None = None
    total = 0
    async for batch in chunks:
        size = sum(len(p) for p in batch)
        if not size:
            continue
        total += size
        if total > length:
            raise _length_mismatch(declared, length, f"more than {length}")
        if held is not None:
            yield held
        held = batch
    if total != length:
        raise _length_mismatch(declared, length, str(total))
    if held is not None:
        yield held


def _length_mismatch(declared: str, length: int, received: str) -> RegistryError:
    return RegistryError(
        ErrorCode.SIZE_INVALID,
        f"the body is not the {length} bytes its Content-Range declares",
        detail={"Content-Range": declared[:100], "received": received},
    )


def chunk_of(request: web.Request) -> tuple[AsyncIterator[list[bytes]], int | None, int | None]:
    """The body of an upload PATCH or closing PUT: (chunks, start, length). With a
    ``Content-Range`` the body must be exactly the range's length: a ``Content-Length`` that
    says otherwise is refused before a byte is read (400 SIZE_INVALID), a chunked body is held to
    it (:func:`exactly`). ``start`` is the range's first byte (None without one), ``length`` the
    body's size when known."""
    header = request.headers.get("Content-Range")
    if header is None:
        return body_chunks(request), None, request.content_length
    start, end = parse_content_range(header)
    length = end - start + 1
    if request.content_length is not None and request.content_length != length:
        raise _length_mismatch(header, length, f"Content-Length {request.content_length}")
    return exactly(body_chunks(request), length, header), start, length


async def read_limited(request: web.Request, limit: int, check: Callable[[int], None]) -> bytes:
    """The whole (small) body; ``check(size)`` raises once the body is known to exceed ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        check(request.content_length)
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            check(size)
        parts.append(chunk)


def header_values(request: web.Request, name: str) -> list[str]:
    """Every value of a header that may be repeated (e.g. skopeo's six ``Accept`` lines)."""
    return request.headers.getall(name, [])
