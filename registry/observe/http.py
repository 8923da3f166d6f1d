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

from .metrics import METRICS

log = logging.getLogger(__name__)

_RESPONSE = web.Response


def _properties_are_backed() -> bool:
    """Whether this aiohttp keeps ``status``, ``body`` (responses) and ``route`` (match infos) in
    the attributes ``_status``, ``_body`` and ``_route`` (checked on real objects). The recorder
    then reads those: each of aiohttp's properties is a Python call (about 600 CPU instructions;
    the three cost a manifest GET 0.3% more); with any other layout it reads the properties."""
    from aiohttp.web_urldispatcher import UrlMappingMatchInfo

    try:
        route = object()
        info = UrlMappingMatchInfo({}, route)  # type: ignore[arg-type]
        response, error = web.Response(status=299, body=b"probe"), web.HTTPNotFound()
        return (info._route is info.route is route and response._status is response.status == 299
                and response._body is response.body and error._status is error.status == 404)
    except Exception:  # noqa: BLE001 - any difference: use the properties
        return False


_BACKED = _properties_are_backed()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the methods whose requests carry a body (uploads among them)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

class _RouteSeries:
    """One route's label and the raw-value lists its requests append to: the latency samples by
    method, then status (two lookups by a string and an int), and the sent byte counts. Building
    and hashing a (route, method, code) label tuple per request cost more CPU than the rest of
    the recording; the lists are the metrics' own (never replaced), found once per route."""

    __slots__ = ("label", "key", "by_method", "sent")

    def __init__(self, label: str) -> None:
        self.label = label
        self.key = (label,)
        self.by_method: dict[str, dict[int, list[float]]] = {}
        self.sent = METRICS.http_sent.amounts(self.key)

    def samples(self, method: str, status: int) -> list[float]:
        by_status = self.by_method.setdefault(method, {})
        values = by_status.get(status)
        if values is None:
            values = by_status[status] = METRICS.http_duration.samples((self.label, method, status))
        return values


#: route object -> its series (one lookup per request); at most _MAX_ROUTES remembered
_ROUTES: dict[Any, _RouteSeries] = {}
_MAX_ROUTES = 1000
_UNMATCHED = _RouteSeries("unmatched")


def route_of(request: Any) -> str:
    """The route's pattern (``/v2/{name}/manifests/{reference}``): a bounded label value
    (remembered per route object: the request path costs nothing more)."""
    return _route(request).label


def _route(request: Any) -> _RouteSeries:
    try:
        route = request.match_info.route
    except AttributeError:
        route = None
    known = _ROUTES.get(route) if route is not None else None
    if known is not None:
        return known
    resource = getattr(route, "resource", None)
    if resource is None:
        return _UNMATCHED
    known = _RouteSeries(resource.canonical)
    if len(_ROUTES) < _MAX_ROUTES:
        _ROUTES[route] = known
    return known


#: what a request is recorded as when an exception escapes every middleware (aiohttp answers 500)
SERVER_ERROR: Any = type("ServerError", (), {"status": 500, "_status": 500, "content_length": 0, "body_length": 0})()


def body_bytes(method: str, response: Any) -> int:
    """The response body's size: the announced length (a sendfile body bypasses aiohttp's
    count), else what the writer counted for a chunked body; none for HEAD, 1xx, 204, 304."""
    return _body_bytes(method, response.status, response)


def _body_bytes(method: str, status: int, response: Any) -> int:
    if method == "HEAD" or status in (204, 304) or status < 200:
        return 0
    if type(response) is _RESPONSE:
        body = response._body if _BACKED else response.body
        if type(body) is bytes:  # what content_length works out, without its header look-up
            return len(body)
    sent = response.content_length
    return response.body_length if sent is None else sent


def request_recorder() -> Callable[[Any, str, Any, float], None]:
    """``record(request, method, response, started)``: the latency sample (from ``started``, a
    ``time.perf_counter()`` value) and the bytes received and sent, under the request's route
    (``method`` is ``request.method``, which the caller has read already)."""
    received_inc = METRICS.http_received.inc
    clock = time.perf_counter
    routes = _ROUTES
    backed = _BACKED

    def record(request: Any, method: str, response: Any, started: float) -> None:
        elapsed = clock() - started
        try:
            try:
                info = request.match_info
                series = routes[info._route if backed else info.route]
            except (KeyError, AttributeError):
                series = _route(request)
            if method not in _METHODS:
                method = "other"
            status = response._status if backed else response.status
            by_status = series.by_method.get(method)
            values = by_status.get(status) if by_status is not None else None
            if values is None:
                values = series.samples(method, status)
            values.append(elapsed)  # counted when read or every FOLD_INTERVAL (metrics.fold_periodically)
            if method in BODY_METHODS and request.body_exists:
                received = request.content.total_bytes
                if received:
                    received_inc(series.key, received)
            sent = _body_bytes(method, status, response)
            if sent:
                series.sent.append(sent)
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
