"""The OCI distribution API handlers and their route table.

Names may hold ``/``, so every route takes the name as ``.+`` and the fixed suffix after it;
handlers validate the name (NAME_INVALID rather than a routing 404).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..store import Store
from . import blobs, listing, manifests, uploads
from .base import STORE_KEY

_NAME = "{name:.+}"

#: (methods, path, handler): the OCI distribution spec's endpoint table
ROUTES = (
    (("GET",), "/v2/_catalog", listing.catalog),
    (("GET",), f"/v2/{_NAME}/tags/list", listing.list_tags),
    (("GET",), f"/v2/{_NAME}/referrers/{{digest}}", listing.list_referrers),
    (("GET", "HEAD"), f"/v2/{_NAME}/manifests/{{reference}}", manifests.get_manifest),
    (("PUT",), f"/v2/{_NAME}/manifests/{{reference}}", manifests.put_manifest),
    (("DELETE",), f"/v2/{_NAME}/manifests/{{reference}}", manifests.delete_manifest),
    (("POST",), f"/v2/{_NAME}/blobs/uploads/", uploads.start_upload),
    (("GET",), f"/v2/{_NAME}/blobs/uploads/{{uuid}}", uploads.upload_status),
    (("PATCH",), f"/v2/{_NAME}/blobs/uploads/{{uuid}}", uploads.patch_upload),
    (("PUT",), f"/v2/{_NAME}/blobs/uploads/{{uuid}}", uploads.finish_upload),
    (("DELETE",), f"/v2/{_NAME}/blobs/uploads/{{uuid}}", uploads.cancel_upload),
    (("GET", "HEAD"), f"/v2/{_NAME}/blobs/{{digest}}", blobs.get_blob),
    (("DELETE",), f"/v2/{_NAME}/blobs/{{digest}}", blobs.delete_blob),
)


def add_routes(app: web.Application, prefix: str = "/") -> None:
    """Register the table under ``http.prefix`` (``/`` or e.g. ``/registry/``)."""
    base = prefix.rstrip("/")
    for methods, path, handler in ROUTES:
        for method in methods:
            app.router.add_route(method, base + path, handler)


def store_context(secret: str, driver_key: Any) -> Any:
    """A cleanup context building the :class:`Store` once the driver is open."""

    async def ctx(app: web.Application) -> Any:
        app[STORE_KEY] = Store(app[driver_key], secret=secret)
        yield

    return ctx
