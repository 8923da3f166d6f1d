"""How a proxied answer was served, told to the client, and cutting a response short.

The cache notes on the current request (``registry.observe.context.CURRENT``) whether it served
from storage (``HIT``), fetched (``MISS``), asked the upstream and kept its copy
(``REVALIDATED``), or served its copy because the upstream could not answer (``STALE``); the
response then carries ``X-Cache-Status`` (nginx's name and values), and a stale one also
``Warning: 110 - "Response is Stale"``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..observe.context import current_request

log = logging.getLogger(__name__)

CACHE_STATUS_KEY: web.RequestKey[str] = web.RequestKey("registry.proxy.cache_status", str)
HEADER = "X-Cache-Status"


def note(value: str) -> None:
    request = current_request()
    if request is not None:
        request[CACHE_STATUS_KEY] = value


def abort(reason: str) -> None:
    """End the current response before its ``Content-Length`` (the only way to tell a client,
    after the status line, that the body it got is not the blob): the connection is dropped."""
    request = current_request()
    log.error("proxy: aborting the response to %s: %s", request.path if request is not None else "?", reason)
    if request is not None and request.transport is not None:
        request.transport.abort()


async def add_header(request: web.Request, response: web.StreamResponse) -> None:
    value = request.get(CACHE_STATUS_KEY)
    if value is not None:
        response.headers[HEADER] = value
        if value == "STALE":
            response.headers["Warning"] = '110 - "Response is Stale"'
