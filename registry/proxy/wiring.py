"""The pull-through cache wired into the app (see the package docstring): the middleware and
:func:`setup_proxy`. Its own module, so that importing ``registry.proxy.config`` (the config
loader does) imports neither aiohttp nor the cache."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import ErrorCode, RegistryError
from ..reference import is_valid_name
from . import status
from .cache import ProxyCache
from .config import ProxyConfig, describe
from .routing import Router

log = logging.getLogger(__name__)

CACHE_KEY: web.AppKey[ProxyCache] = web.AppKey("proxy_cache", ProxyCache)
#: methods that write a repository (DELETE stays allowed: it evicts cached content)
WRITES = frozenset({"POST", "PUT", "PATCH"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_middleware(router: Router) -> Any:
    """``?ns=`` picks the upstream (containerd's mirror requests name the upstream's repository:
    the request is then served from ``<prefix>/<name>``); writes to a mirrored repository are
    UNSUPPORTED. Runs after auth, which judges the name as the client sent it."""

    @web.middleware
    async def proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        name = match.get("name") if match is not None else None
        if isinstance(name, str):
            ns = request.query.get("ns")
            if ns:
                upstream = router.by_ns(ns)
                if router.single:
                    if upstream is None:
                        raise RegistryError(ErrorCode.NAME_UNKNOWN, f"this registry mirrors "
                                            f"{router.upstreams[0].config.remoteurl}, not {ns[:200]}",
                                            detail={"ns": ns[:200]})
                elif upstream is not None and is_valid_name(name):
                    name = match["name"] = upstream.config.local_name(name)
            if request.method in WRITES:
                route = router.route(name)
                if route is not None:
                    raise RegistryError(
                        ErrorCode.UNSUPPORTED,
                        f"{name[:200]} mirrors {route.upstream.config.remoteurl}: pushes are not supported here",
                        detail={"name": name[:200]},
                    )
        return await handler(request)

    return proxy


def setup_proxy(app: web.Application, config: Any) -> None:
    """Serve the ``proxy:`` section's upstreams in ``app`` (nothing when it has none)."""
    proxy_config: ProxyConfig | None = getattr(config, "proxy", None)
    if proxy_config is None or not proxy_config.enabled:
        return
    from ..api.base import STORE_KEY
    from .store import wrap

    router = Router(proxy_config)
    app.middlewares.append(make_middleware(router))
    app.on_response_prepare.append(status.add_header)

    async def ctx(app: web.Application) -> Any:
        store = app[STORE_KEY]
        cache = app[CACHE_KEY] = ProxyCache(router, store, readonly=config.storage.readonly)
        await cache.start()
        wrap(store, cache)
        for entry in describe(proxy_config):
            log.info("proxy: %s mirrors %s (ttl %gs)", f"{entry['prefix']}/" if entry["prefix"] else "every repository",
                     entry["remoteurl"], entry["ttl"])
        yield
        await cache.close()

    app.cleanup_ctx.append(ctx)
