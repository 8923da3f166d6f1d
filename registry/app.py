"""The aiohttp application factory: routes, middlewares, start-up and shut-down of the driver."""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from drivers.base import StorageDriver, StorageError

from . import api
from .config import Config
from .errors import ErrorCode, RegistryError, storage_error
from .storage import open_driver

log = logging.getLogger("registry")

CONFIG_KEY: web.AppKey[Config] = web.AppKey("config", Config)
DRIVER_KEY: web.AppKey[StorageDriver] = web.AppKey("driver", StorageDriver)
#: what processes and instances share (registry.state.State): leases, counters, caches
STATE_KEY: web.AppKey[Any] = web.AppKey("state", object)

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(err: RegistryError) -> web.Response:
    """The OCI error envelope for ``err``; HEAD responses get the status and headers only."""
    return web.Response(
        status=err.status,
        body=json.dumps(err.body()).encode(),
        content_type="application/json",
        headers=err.headers,
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the OCI JSON envelope; an unexpected exception is a logged 500."""
    try:
        return await handler(request)
    except RegistryError as err:
        return error_response(err)
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            RegistryError(ErrorCode.UNSUPPORTED, f"method {request.method} not allowed", headers=_allow(exc))
        )
    except web.HTTPNotFound:
        return error_response(RegistryError(ErrorCode.NAME_UNKNOWN, "no such route", status=404))
    except web.HTTPException:
        raise
    except ConnectionResetError:
        raise
    except StorageError as exc:  # one line, no traceback: the fault is the backend's, not ours
        answer = storage_error(exc)
        level = logging.WARNING if answer.status == 503 else logging.ERROR
        log.log(level, "%s %s: %d %s: %s", request.method, request.rel_url.path, answer.status, answer.code.name, exc)
        return error_response(answer)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.rel_url.path)
        return error_response(RegistryError(ErrorCode.UNKNOWN, "internal server error"))


def _allow(exc: web.HTTPMethodNotAllowed) -> dict[str, str]:
    return {"Allow": ", ".join(sorted(exc.allowed_methods))}


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
    extra: dict[str, list[str]] = request.app[CONFIG_KEY].http.headers
    for name, values in extra.items():
        if name not in response.headers:
            for value in values:
                response.headers.add(name, value)


async def base_handler(request: web.Request) -> web.Response:
    """``GET /v2/``: the API version check every client starts with."""
    return web.json_response({})


async def _to_base(request: web.Request) -> web.Response:
    return web.Response(status=301, headers={"Location": request.path + "/"})


def create_app(config: Config, driver: StorageDriver | None = None) -> web.Application:
    """Build the registry application. ``driver`` overrides the one configured (tests)."""
    middlewares: list[Any] = [errors_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=1024**2)
    app[CONFIG_KEY] = config
    from .observe.setup import instrument, wrap_driver  # metrics, logs context, health, events

    if driver is not None:
        app[DRIVER_KEY] = wrap_driver(driver, config)
    app.on_response_prepare.append(_add_headers)
    from .state import open_state

    app[STATE_KEY] = open_state(config.state, workers=config.http.workers)
    if config.http.ratelimit is not None:  # http.ratelimit: before auth and any storage work
        from .ratelimit import RequestLimiter, make_middleware

        app.middlewares.insert(app.middlewares.index(errors_middleware) + 1,
                               make_middleware(RequestLimiter(config.http.ratelimit, app[STATE_KEY]),
                                               config.http.prefix))
    app.cleanup_ctx.append(_state_lifecycle)
    app.cleanup_ctx.append(_driver_lifecycle)
    instrument(app, config, DRIVER_KEY, api.base.v2_url)
    app.cleanup_ctx.append(api.store_context(config, DRIVER_KEY))
    from .lifecycle.service import lifecycle_context  # GC write barrier, heartbeat, schedule

    app.cleanup_ctx.append(lifecycle_context(config, api.base.STORE_KEY))
    base = config.http.prefix.rstrip("/")
    app.router.add_route("GET", f"{base}/v2/", base_handler)
    app.router.add_route("HEAD", f"{base}/v2/", base_handler)
    app.router.add_route("GET", f"{base}/v2", _to_base)  # like distribution (Go's ServeMux): 301 to /v2/
    api.add_routes(app, config.http.prefix)
    from .auth import setup_auth  # auth: middleware, token server and JWKS routes when configured

    setup_auth(app, config)
    from .ui import setup_ui  # the web UI under http.prefix + ui.path (after auth: it reuses it)

    setup_ui(app, config)
    from .proxy import setup_proxy  # the pull-through cache: after auth, under the store

    setup_proxy(app, config)
    return app


async def _state_lifecycle(app: web.Application) -> Any:
    state = app[STATE_KEY]
    if state.kind == "redis":
        from .state import StateUnavailable

        try:
            await state.ping()
            log.info("shared state: Redis at %s", ", ".join(app[CONFIG_KEY].state.redis.addrs))
        except StateUnavailable:  # serve anyway: reads work, locked operations answer 503 until it is back
            log.warning("shared state: Redis at %s does not answer; uploads and pushes answer 503 until it does",
                        ", ".join(app[CONFIG_KEY].state.redis.addrs))
    yield
    await state.close()


async def _driver_lifecycle(app: web.Application) -> Any:
    owned = DRIVER_KEY not in app
    if owned:
        from .observe.setup import wrap_driver

        app[DRIVER_KEY] = wrap_driver(open_driver(app[CONFIG_KEY]), app[CONFIG_KEY])
    yield
    if owned:
        await app[DRIVER_KEY].close()
