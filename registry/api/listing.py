"""Listings: ``GET /v2/<name>/tags/list``, ``GET /v2/_catalog``, ``GET /v2/<name>/referrers/<digest>``."""

from __future__ import annotations

import bisect
import json

from aiohttp import web

from .. import mediatypes as mt
from ..reference import parse_digest, parse_page_size
from .base import config, quote_query, repo_name, store, v2_path


def _next_link(request: web.Request, suffix: str, n: int, last: str) -> str:
    url = v2_path(request, f"{suffix}?n={n}&last={quote_query(last)}")
    return f'<{url}>; rel="next"'


async def list_tags(request: web.Request) -> web.Response:
    """Sorted tags after ``last``; at most ``n`` and never more than ``tags.maxtags`` (also without
    ``n``): a longer list ends the page with a ``Link`` to the next one (none when ``n=0``)."""
    name = repo_name(request)
    maxtags = config(request).listing.tags_maxtags
    n = parse_page_size(request.query.get("n"), maxtags)
    page = maxtags if n is None else n
    last = request.query.get("last")
    tags = await store(request).tags.list(name)
    if last:
        tags = tags[bisect.bisect_right(tags, last):]
    headers = {}
    if len(tags) > page and page > 0:
        headers["Link"] = _next_link(request, f"{name}/tags/list", page, tags[page - 1])
    tags = tags[:page]
    return web.json_response({"name": name, "tags": tags}, headers=headers)


async def catalog(request: web.Request) -> web.Response:
    """Repositories after ``last``: ``catalog.maxentries`` of them without ``n``, and never more
    (``n`` above it is served as that many, with a ``Link``; distribution answers 400 there)."""
    maxentries = config(request).listing.catalog_maxentries
    n = parse_page_size(request.query.get("n"), maxentries)
    n = maxentries if n is None else n
    last = request.query.get("last") or None
    repos, more = (await store(request).catalog.list(n, last)) if n > 0 else ([], False)
    headers = {}
    if more and repos:
        headers["Link"] = _next_link(request, "_catalog", n, repos[-1])
    return web.json_response({"repositories": repos}, headers=headers)


async def list_referrers(request: web.Request) -> web.Response:
    name = repo_name(request)
    subject = parse_digest(request.match_info["digest"])
    artifact_type = request.query.get("artifactType")
    manifests = await store(request).list_referrers(name, subject, artifact_type)
    headers = {}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    # bytes, so aiohttp adds no "; charset" to the media type
    return web.Response(body=json.dumps(body).encode(), headers=headers, content_type=mt.OCI_INDEX)
