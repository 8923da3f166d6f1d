"""How observability plugs into the app: one middleware, one cleanup context, the debug server.

:func:`instrument` is what :func:`registry.app.create_app` calls. It adds
- the observe middleware (outermost): request id (``X-Request-Id`` on every response), the
  request as the current context for logs and events, a span when tracing is on;
- the health gate (only when checks are configured) and ``/livez``, ``/readyz``;
- a cleanup context that runs the health checks, builds the notifier the store emits to and,
  in the primary process, the deliveries; forked workers answer metric snapshots on a socket.
:func:`debug_app` is the ``http.debug.addr`` server: ``/debug/health`` and the metrics path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from drivers.base import StorageDriver

from . import context, http, metrics, tracing
from .health import Health, build_checks, gate_middleware, livez, status_response
from .metrics import METRICS
from .process import ROLE
from .storage import MeteredDriver

HEALTH_KEY: web.AppKey[Health] = web.AppKey("registry.health", Health)
NOTIFIER_KEY: web.AppKey[Any] = web.AppKey("registry.notifier", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_enabled(config: Any) -> bool:
    return bool(config.http.debug.prometheus_enabled)


def wrap_driver(driver: StorageDriver, config: Any) -> StorageDriver:
    """The driver the store uses: measured when metrics or traces are on (else the backend itself)."""
    if isinstance(driver, MeteredDriver) or not (metrics_enabled(config) or tracing.TRACER is not None):
        return driver
    return MeteredDriver(driver)


def observe_middleware(*, metrics_on: bool, access_on: bool = False) -> Any:
    """The outermost middleware: the request id and context for every request; with metrics on,
    the HTTP metrics (:mod:`.http`) and the uploads in progress; with the access log on, the
    start time its line reports."""
    new_id = context.request_id_for
    key = context.REQUEST_ID_KEY
    current = context.CURRENT
    uploads = METRICS.uploads_in_progress
    set_started = context.STARTED.set
    clock = time.perf_counter
    record = http.request_recorder() if metrics_on else None
    file_response = web.FileResponse
    body_methods = http.BODY_METHODS
    timed = metrics_on or access_on

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = clock() if timed else 0.0  # first: the latency starts here
        if access_on:
            set_started(started)
        request[key] = new_id(request)
        token = current.set(request)
        method = request.method if metrics_on else ""
        upload = metrics_on and method in body_methods and request.body_exists \
            and "/blobs/uploads/" in request.path
        if upload:
            uploads.inc()
        try:
            if tracing.TRACER is not None:
                response = await _traced(request, handler)
            else:
                response = await handler(request)
        except web.HTTPException as exc:  # aiohttp answers it as the response
            if record is not None:
                record(request, method, exc, started)
            raise
        except Exception:  # aiohttp answers 500
            if record is not None:
                record(request, method, http.SERVER_ERROR, started)
            raise
        finally:
            current.reset(token)
            if upload:
                uploads.dec()
        if record is not None:
            if type(response) is file_response and not response.prepared:
                http.record_when_sent(record, request, method, response, started)  # aiohttp sends the file
            else:
                record(request, method, response, started)
        return response

    return observe


async def _traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from .http import route_of
    from .logs import safe_path

    route = route_of(request)
    attributes = {
        "http.request.method": request.method, "url.path": safe_path(request), "http.route": route,
        "server.address": request.host, "user_agent.original": request.headers.get("User-Agent", ""),
        "registry.request_id": request[context.REQUEST_ID_KEY],
    }
    with tracing.TRACER.start_as_current_span(
        f"{request.method} {route}", context=tracing.extract_context(request.headers), kind=SpanKind.SERVER,
        attributes=attributes,
    ) as span:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            span.set_attribute("http.response.status_code", exc.status)
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        return response


async def _request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(context.REQUEST_ID_KEY)
    if request_id is not None:
        response.headers[context.REQUEST_ID_HEADER] = request_id


def instrument(app: web.Application, config: Any, driver_key: Any, url_for: Callable[[Any, str], str]) -> None:
    """Add the middleware, routes and cleanup context described in the module docstring."""
    from ..events import build as build_events

    on = metrics_enabled(config)
    app.middlewares.insert(0, observe_middleware(metrics_on=on, access_on=not config.log.accesslog_disabled))
    app.on_response_prepare.append(_request_id_header)
    health = Health()
    app[HEALTH_KEY] = health
    if config.health.checks:
        # after the error middleware (so a 503 is an OCI error body), before auth (as distribution)
        app.middlewares.insert(2, gate_middleware(health, config.http.prefix))
    base = config.http.prefix.rstrip("/")
    app.router.add_get(f"{base}/livez", livez)

    async def readyz(request: web.Request) -> web.Response:
        return status_response(health)

    app.router.add_get(f"{base}/readyz", readyz)

    async def ctx(app: web.Application) -> Any:
        driver = app[driver_key]
        health.checks = build_checks(config.health.checks, driver, driver_name=config.storage.driver,
                                     readonly=config.storage.readonly)
        notifier, deliveries = build_events(config.notifications, driver, http_addr=config.http.addr,
                                            url_for=url_for, metrics=on, deliver=ROLE.primary)
        app[NOTIFIER_KEY] = notifier
        await health.start()
        for delivery in deliveries:
            delivery.start()
        snapshot_server = None
        if on and ROLE.metrics_dir is not None and not ROLE.primary:
            snapshot_server = await metrics.serve_snapshots(ROLE.metrics_dir)
        # the hot paths append raw values without a length check: count them every few seconds
        folding = asyncio.create_task(METRICS.fold_periodically()) if on else None
        yield
        if folding is not None:
            folding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await folding
        if snapshot_server is not None:
            snapshot_server.close()
        await notifier.close()
        for delivery in deliveries:
            await delivery.stop()
        await health.stop()

    app.cleanup_ctx.append(ctx)


def debug_app(config: Any, health: Health) -> web.Application:
    """The ``http.debug.addr`` server: ``/debug/health`` always, metrics when enabled."""
    app = web.Application()

    async def health_handler(request: web.Request) -> web.Response:
        return status_response(health)

    app.router.add_get("/debug/health", health_handler)
    if config.http.debug.prometheus_enabled:
        async def metrics_handler(request: web.Request) -> web.Response:
            source = await metrics.gather(ROLE.metrics_dir)
            body, content_type = metrics.exposition(source, request.headers.get("Accept"))
            response = web.Response(body=body)
            response.headers["Content-Type"] = content_type
            return response

        app.router.add_get(config.http.debug.prometheus_path, metrics_handler)
    return app
