"""``GET``/``HEAD``/``DELETE /v2/<name>/blobs/<digest>``."""

from __future__ import annotations

import logging

from aiohttp import web

from drivers.base import StorageError

from ..reference import parse_byte_range, parse_digest
from ..store import BlobInfo
from .base import config, repo_name, require_delete, require_writable, store

log = logging.getLogger(__name__)

#: how much a non-local blob stream reads from the driver at a time
STREAM_CHUNK = 1 << 20


def _headers(info: BlobInfo) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(info.digest),
        "ETag": f'"{info.digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000",
    }


async def get_blob(request: web.Request) -> web.StreamResponse:
    """Serve a blob: a redirect if the driver offers one, sendfile on local disk, else a stream.
    ``Accept`` is ignored (some clients send a layer media type)."""
    name = repo_name(request)
    digest = parse_digest(request.match_info["digest"])
    st = store(request)
    info = await st.blobs.open(name, digest, head=request.method == "HEAD")
    headers = _headers(info)
    range_header = request.headers.get("Range")
    if request.method == "GET" and not config(request).storage.redirect_disable and not _is_suffix_range(range_header):
        url = await st.blobs.redirect_url(info, "GET")
        if url:
            return web.Response(status=307, headers={"Location": url, "Docker-Content-Digest": str(info.digest)})
    rng = parse_byte_range(range_header, info.size) if range_header is not None else None
    if request.method == "HEAD":
        length = info.size if rng is None else rng[1] - rng[0] + 1
        headers["Content-Length"] = str(length)
        if rng is not None:
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{info.size}"
        return web.Response(status=206 if rng else 200, headers=headers)
    local = st.blobs.local_path(info)
    if local is not None and (rng is not None or range_header is None):
        return web.FileResponse(local, chunk_size=STREAM_CHUNK, headers=headers)
    return await _stream(request, info, rng, headers)


async def _stream(
    request: web.Request, info: BlobInfo, rng: tuple[int, int] | None, headers: dict[str, str]
) -> web.StreamResponse:
    start, end = rng if rng is not None else (0, info.size - 1)
    resp = web.StreamResponse(status=206 if rng else 200, headers=headers)
    if rng is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    resp.content_length = end - start + 1
    chunks = store(request).blobs.read(info, start, end - start + 1, chunk_size=STREAM_CHUNK)
    first = await anext(chunks, None)  # a missing blob fails here, before the status is sent
    await resp.prepare(request)
    sent = 0
    try:
        if first is not None:
            await resp.write(first)
            sent += len(first)
            async for chunk in chunks:
                await resp.write(chunk)
                sent += len(chunk)
    except StorageError as exc:
        # the status is out: the only honest answer left is a short body and a closed connection
        # (the client sees the truncation against Content-Length and retries)
        log.warning("%s %s: storage failed after %d of %d bytes; connection closed: %s",
                    request.method, request.rel_url.path, sent, resp.content_length, exc)
        resp.force_close()
        return resp
    await resp.write_eof()
    return resp


async def delete_blob(request: web.Request) -> web.Response:
    """Unlink a blob from the repository (data stays for garbage collection)."""
    name = repo_name(request)
    digest = parse_digest(request.match_info["digest"])
    require_delete(request)
    require_writable(request)
    await store(request).blobs.unlink(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest), "Content-Length": "0"})


def _is_suffix_range(value: str | None) -> bool:
    """``bytes=-N`` (the last N bytes): some backends (Azure Blob) reject it on their URLs, so
    such requests are answered here instead of redirected."""
    return value is not None and value.replace(" ", "").lower().startswith("bytes=-")
