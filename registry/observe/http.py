"""The HTTP metrics: one latency sample and the body bytes of each request, recorded by the
observe middleware when the handler has returned (:func:`request_recorder`).

Recorded there rather than in aiohttp's access hook: the hook is a call per request that aiohttp
makes only when an access logger is installed (it cost a manifest GET about 2% more CPU
instructions than recording in the middleware), so with ``log.accesslog.disabled`` nothing is
installed. A response whose body is still to be sent when the handler returns is a file
(``web.FileResponse``: sendfile); it is recorded when the request's task ends, so its latency
includes the transfer. Every other response is complete (a streamed blob is written by its
handler) or a small body in memory that aiohttp writes right after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .metrics import FOLD_AT, METRICS

log = logging.getLogger(__name__)

_RESPONSE = web.Response
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the methods whose requests carry a body (uploads among them)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: route object -> its label and the label's key tuple (one lookup per request)
_ROUTES: dict[Any, tuple[str, tuple[str]]] = {}


def route_of(request: Any) -> str:
    """The route's pattern (``/v2/{name}/manifests/{reference}``): a bounded label value
    (remembered per route object: the request path costs nothing more)."""
    return _route(request)[0]


def _route(request: Any) -> tuple[str, tuple[str]]:
    try:
        route = request.match_info.route
    except AttributeError:
        return "unmatched", ("unmatched",)
    known = _ROUTES.get(route)
    if known is not None:
        return known
    resource = getattr(route, "resource", None)
    label = "unmatched" if resource is None else resource.canonical
    known = (label, (label,))
    if len(_ROUTES) < 1000:
        _ROUTES[route] = known
    return known


#: what a request is recorded as when an exception escapes every middleware (aiohttp answers 500)
SERVER_ERROR: Any = type("ServerError", (), {"status": 500, "content_length": 0, "body_length": 0})()


def body_bytes(method: str, response: Any) -> int:
    """The response body's size: the announced length (a sendfile body bypasses aiohttp's
    count), else what the writer counted for a chunked body; none for HEAD, 1xx, 204, 304."""
    return _body_bytes(method, response.status, response)


def _body_bytes(method: str, status: int, response: Any) -> int:
    if method == "HEAD" or status in (204, 304) or status < 200:
        return 0
    if type(response) is _RESPONSE:
        body = response.body
        if type(body) is bytes:  # what content_length works out, without its header look-up
            return len(body)
    sent = response.content_length
    return response.body_length if sent is None else sent


def request_recorder() -> Callable[[Any, str, Any, float], None]:
    """``record(request, method, response, started)``: the latency sample (from ``started``, a
    ``time.perf_counter()`` value) and the bytes received and sent, under the request's route
    (``method`` is ``request.method``, which the caller has read already)."""
    durations = METRICS.http_duration  # requests_total is derived from its counts
    pending, samples, fold = durations.pending, durations.samples, durations.fold
    received_inc = METRICS.http_received.inc
    sent_values = METRICS.http_sent.values
    clock = time.perf_counter
    routes = _ROUTES
    fold_at = FOLD_AT

    def record(request: Any, method: str, response: Any, started: float) -> None:
        elapsed = clock() - started
        try:
            try:
                route, route_key = routes[request.match_info.route]
            except (KeyError, AttributeError):
                route, route_key = _route(request)
            if method not in _METHODS:
                method = "other"
            status = response.status
            key = (route, method, status)  # the code becomes a label string at exposition
            values = pending.get(key) or samples(key)
            values.append(elapsed)
            if len(values) >= fold_at:
                fold(key)
            if method in BODY_METHODS and request.body_exists:
                received = request.content.total_bytes
                if received:
                    received_inc(route_key, received)
            sent = _body_bytes(method, status, response)
            if sent:
                sent_values[route_key] = sent_values.get(route_key, 0) + sent  # Counter.inc, inline
        except Exception:  # noqa: BLE001 - a metric must never break a response
            log.exception("recording the HTTP metrics failed")

    return record


def record_when_sent(record: Callable[[Any, str, Any, float], None], request: Any, method: str,
                     response: Any, started: float) -> None:
    """Record ``response`` once the request's task has ended (its body sent)."""
    task = asyncio.current_task()
    if task is None:
        record(request, method, response, started)
    else:
        task.add_done_callback(lambda _task: record(request, method, response, started))
