"""Blob uploads: ``POST /v2/<name>/blobs/uploads/`` and ``GET|PATCH|PUT|DELETE .../uploads/<id>``."""

from __future__ import annotations

from aiohttp import web

from .. import access
from ..errors import ErrorCode, RegistryError
from ..reference import (
    is_valid_name,
    parse_digest,
    parse_digest_algorithm,
    parse_upload_id,
    try_digest,
)
from ..store import BlobInfo, UploadSession
from .base import body_chunks, chunk_of, has_body, quote_query, repo_name, require_writable, store, v2_url


def _location(request: web.Request, s: UploadSession) -> str:
    token = store(request).uploads.token(s)
    return v2_url(request, f"{s.repo}/blobs/uploads/{s.id}?_state={quote_query(token)}")


def _session_response(request: web.Request, s: UploadSession, status: int) -> web.Response:
    headers = {
        "Location": _location(request, s),
        "Docker-Upload-UUID": s.id,
        "Range": f"0-{max(s.size - 1, 0)}",
        "Content-Length": "0",
    }
    return web.Response(status=status, headers=headers)


def _created(request: web.Request, name: str, info: BlobInfo) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": v2_url(request, f"{name}/blobs/{info.digest}"),
            "Docker-Content-Digest": str(info.digest),
            "Content-Length": "0",
        },
    )


async def start_upload(request: web.Request) -> web.Response:
    """Plain: a 202 session, hashed in ``?digest-algorithm=`` (default sha256). ``?digest=`` with a
    body: the whole blob, 201. ``?mount=`` (with or without ``from``): 201 when a repository the
    caller may pull has the blob, else an ordinary session."""
    name = repo_name(request)
    require_writable(request)
    st = store(request)
    algorithm = request.query.get("digest-algorithm")
    if algorithm is not None:
        algorithm = parse_digest_algorithm(algorithm)
    mount = request.query.get("mount")
    if mount is not None:
        info = await _try_mount(request, name, mount, request.query.get("from", ""))
        if info is not None:
            return _created(request, name, info)
    digest = request.query.get("digest")
    if digest is not None and has_body(request):
        expected = parse_digest(digest)
        if algorithm is not None and algorithm != expected.algorithm:
            raise RegistryError(ErrorCode.DIGEST_INVALID, "digest-algorithm does not match the digest's algorithm",
                                detail={"digest-algorithm": algorithm, "digest": str(expected)})
        info = await st.uploads.put_whole(name, expected, body_chunks(request))
        return _created(request, name, info)
    s = await st.uploads.start(name, algorithm)
    return _session_response(request, s, 202)


async def _try_mount(request: web.Request, name: str, mount: str, source: str) -> BlobInfo | None:
    """A cross-repository mount: from ``from`` when the caller may pull it, else (no ``from``, or
    ``from`` lacks the blob: the spec lets a registry treat it as optional) from any repository the
    caller may pull. Any malformed or forbidden part just means "no mount"."""
    digest = try_digest(mount)
    if digest is None:
        return None
    blobs = store(request).blobs
    if source and is_valid_name(source) and access.allowed(request, "repository", source, "pull"):
        info = await blobs.mount(name, digest, source)
        if info is not None:
            return info
    return await blobs.mount_any(name, digest, access.granted_names(request, "repository", "pull"))


async def _resume(request: web.Request) -> UploadSession:
    name = repo_name(request)
    upload_id = parse_upload_id(request.match_info["uuid"])
    return await store(request).uploads.resume(name, upload_id, request.query.get("_state"))


async def upload_status(request: web.Request) -> web.Response:
    s = await _resume(request)
    await store(request).uploads.status(s)
    return _session_response(request, s, 204)


async def patch_upload(request: web.Request) -> web.Response:
    """Append a chunk (streamed, chunked transfer too); ``Content-Range`` must continue the data."""
    s = await _resume(request)
    require_writable(request)
    chunks, start, _ = chunk_of(request)
    await store(request).uploads.append(s, chunks, start)
    return _session_response(request, s, 202)


async def finish_upload(request: web.Request) -> web.Response:
    """``PUT ?digest=`` with an optional last chunk: verify, then the blob becomes visible."""
    s = await _resume(request)
    require_writable(request)
    expected = parse_digest(request.query.get("digest", ""))
    chunks, start, length = chunk_of(request) if has_body(request) else (None, None, None)
    info = await store(request).uploads.commit(s, expected, chunks, start, length)
    return _created(request, s.repo, info)


async def cancel_upload(request: web.Request) -> web.Response:
    s = await _resume(request)
    require_writable(request)
    await store(request).uploads.cancel(s)
    return web.Response(status=204, headers={"Content-Length": "0"})
