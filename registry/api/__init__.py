"""The OCI distribution API handlers and their route table.

Names may hold ``/``, so every route takes the name as ``.+`` and the fixed suffix after it;
handlers validate the name (NAME_INVALID rather than a routing 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from ..config import Config, UploadPurgingConfig
from ..store import Store
from . import blobs, listing, manifests, uploads
from .base import STORE_KEY

log = logging.getLogger(__name__)

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


def store_context(config: Config, driver_key: Any) -> Any:
    """A cleanup context building the :class:`Store` once the driver is open, and running
    upload purging (``storage.maintenance.uploadpurging``) in the background."""

    async def ctx(app: web.Application) -> Any:
        from ..app import STATE_KEY
        from ..observe.setup import NOTIFIER_KEY

        store = app[STORE_KEY] = Store(app[driver_key], secret=config.http.secret, events=app.get(NOTIFIER_KEY),
                                       state=app.get(STATE_KEY), cache=bool(config.state.blobdescriptor),
                                       immutability=config.immutability)
        purging = config.storage.uploadpurging
        task = asyncio.create_task(_purge_loop(store, purging)) if purging.enabled else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return ctx


async def _purge_loop(store: Store, purging: UploadPurgingConfig) -> None:
    """Purge old uploads every ``interval``; the first run soon after start (a registry that
    restarts more often than ``interval`` still purges)."""
    delay = min(purging.interval, 60.0)
    while True:
        await asyncio.sleep(delay)
        delay = max(purging.interval, 0.01)
        try:
            purged = await store.uploads.purge(purging.age, dryrun=purging.dryrun)
        except Exception:  # a storage hiccup must not end the loop
            log.exception("upload purging failed")
            continue
        if purged:
            log.info("upload purging: %s %d upload(s) older than %.0fs",
                     "would remove" if purging.dryrun else "removed", len(purged), purging.age)
