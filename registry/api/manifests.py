"""``GET``/``HEAD``/``PUT``/``DELETE /v2/<name>/manifests/<reference>``."""

from __future__ import annotations

import asyncio
import functools
import re
import urllib.parse

from aiohttp import web
from multidict import CIMultiDict

from .. import manifests as mf
from ..config import ValidationConfig
from ..errors import ErrorCode, RegistryError
from ..reference import Digest, parse_digest, parse_reference, parse_tag
from .base import config, header_values, read_limited, repo_name, require_delete, require_writable, store, v2_url


#: manifests larger than this are parsed in a worker thread
PARSE_INLINE_LIMIT = 256 << 10
#: ``tag`` parameters one PUT may carry (the spec asks for at least 10; beyond: 414)
MAX_TAG_PARAMS = 100


def _lookup_reference(request: web.Request) -> str | Digest:
    """The reference of a GET/HEAD/DELETE: a value that cannot be a tag names no manifest, so it
    is 404 MANIFEST_UNKNOWN (the conformance suite asks this); a malformed digest stays 400."""
    value = request.match_info["reference"]
    try:
        return parse_reference(value)
    except RegistryError as err:
        if err.code is ErrorCode.TAG_INVALID:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": value[:300]}) from None
        raise


def _etag_matches(request: web.Request, etag: str) -> bool:
    values = ",".join(header_values(request, "If-None-Match"))
    candidates = {v.strip().removeprefix("W/") for v in values.split(",") if v.strip()}
    return "*" in candidates or etag in candidates


async def get_manifest(request: web.Request) -> web.Response:
    name = repo_name(request)
    ref = _lookup_reference(request)
    manifests = store(request).manifests
    # a HEAD is how a pusher checks for a manifest: find() keeps it from a running collection
    stored = await (manifests.find(name, ref) if request.method == "HEAD" else manifests.get(name, ref))
    if not mf.acceptable(stored.media_type, header_values(request, "Accept")):
        raise RegistryError(
            ErrorCode.MANIFEST_UNKNOWN,
            f"the manifest is a {stored.media_type}, which the request's Accept header does not list",
            detail={"mediaType": stored.media_type},
        )
    etag = f'"{stored.digest}"'
    headers = {"Docker-Content-Digest": str(stored.digest), "ETag": etag}
    if _etag_matches(request, etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = stored.media_type
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(stored.body))
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=stored.body, headers=headers)


async def put_manifest(request: web.Request) -> web.Response:
    """Store a manifest under its digest and its tags: the reference's tag, and every ``tag``
    parameter (OCI distribution-spec main), all or none, each echoed in an ``OCI-Tag`` header.
    Its digest is in the algorithm of the reference's digest, or of the ``digest`` parameter of
    a push by tag (regclient's; it must match the body), else sha256."""
    name = repo_name(request)
    ref = parse_reference(request.match_info["reference"])
    require_writable(request)
    tag_params = _tag_params(request)
    expected = _expected_digest(request, ref)
    cfg = config(request)
    limit = cfg.validation.manifests_maxsize
    body = await read_limited(request, limit, lambda size: mf.check_manifest_size(size, limit))
    parse = functools.partial(
        mf.parse_manifest,
        body,
        request.headers.get("Content-Type"),
        schema1_enabled=cfg.compatibility.schema1_enabled,
        max_size=limit,
        expected_digest=expected,
    )
    # a large body (a big index, a signed schema 1) is parsed off the event loop
    manifest = await asyncio.to_thread(parse) if len(body) > PARSE_INLINE_LIMIT else parse()
    _check_layer_urls(manifest, cfg.validation)
    tags = list(dict.fromkeys(([] if isinstance(ref, Digest) else [ref]) + tag_params))
    digest = await store(request).manifests.put(name, manifest, tags,
                                                child_required=cfg.validation.child_required)
    headers = CIMultiDict({
        "Location": v2_url(request, f"{name}/manifests/{digest}"),
        "Docker-Content-Digest": str(digest),
        "Content-Length": "0",
    })
    if manifest.subject is not None:
        headers["OCI-Subject"] = manifest.subject.digest
    if tag_params:
        for tag in tags:  # one line each: a long list stays under per-line header limits
            headers.add("OCI-Tag", tag)
    return web.Response(status=201, headers=headers)


def _tag_params(request: web.Request) -> list[str]:
    """The ``tag`` query parameters, each valid (TAG_INVALID, before anything is read or written)
    and at most :data:`MAX_TAG_PARAMS` of them (414), duplicates dropped."""
    values = request.query.getall("tag", [])
    if len(values) > MAX_TAG_PARAMS:
        raise RegistryError(ErrorCode.TAG_INVALID, f"at most {MAX_TAG_PARAMS} tag parameters per request",
                            detail={"tags": len(values)}, status=414)
    return list(dict.fromkeys(parse_tag(v) for v in values))


def _expected_digest(request: web.Request, ref: str | Digest) -> Digest | None:
    """The digest the body must have: the reference's, or a push by tag's ``digest`` parameter."""
    param = request.query.get("digest")
    wanted = parse_digest(param) if param is not None else None
    if isinstance(ref, Digest):
        if wanted is not None and wanted != ref:
            raise RegistryError(ErrorCode.DIGEST_INVALID, "the digest parameter differs from the reference",
                                detail={"reference": str(ref), "digest": str(wanted)})
        return ref
    return wanted


def _check_layer_urls(manifest: mf.Manifest, policy: ValidationConfig) -> None:
    """``validation.manifests.urls``: each URL of a layer (non-distributable layers carry them)
    must be http(s) without a fragment, match an ``allow`` pattern when any is configured and no
    ``deny`` pattern -- distribution's rule (patterns search, unanchored, like Go's MatchString).
    With ``validation.disabled`` only the scheme and fragment rule applies, as in distribution.
    (distribution also refuses every URL when neither allow nor deny is set; we accept them, see
    docs/configuration.md.)"""
    allow = policy.urls_allow if policy.enabled else []
    deny = policy.urls_deny if policy.enabled else []
    for layer in manifest.layers:
        for u in layer.urls:
            parsed = urllib.parse.urlsplit(u) if isinstance(u, str) else None
            ok = (
                parsed is not None
                and parsed.scheme in ("http", "https")
                and not parsed.fragment
                and (not allow or any(re.search(p, u) for p in allow))
                and not any(re.search(p, u) for p in deny)
            )
            if not ok:
                raise RegistryError(
                    ErrorCode.MANIFEST_INVALID,
                    "a layer URL is not allowed by this registry (validation.manifests.urls)",
                    detail={"digest": layer.digest, "url": str(u)[:300]},
                )


async def delete_manifest(request: web.Request) -> web.Response:
    """By tag: remove the tag only. By digest: the manifest and every tag pointing at it."""
    name = repo_name(request)
    ref = _lookup_reference(request)
    require_delete(request)
    require_writable(request)
    await store(request).manifests.delete(name, ref)
    return web.Response(status=202, headers={"Content-Length": "0"})
