"""``http.ratelimit`` (ours): an optional per-client request-rate limit, off by default.

Each client address (the peer, or behind ``trustedproxies`` the client named in
``X-Forwarded-For``: :func:`registry.auth.ratelimit.client_address`, the login limiter's rule)
may send ``requests`` requests in any sliding ``period``; with ``burst``, at most ``burst`` of
them in any ``period * burst / requests`` (the same rate over a shorter window, so a client
cannot spend the whole period's budget at once). Over either budget the answer is 429
``TOOMANYREQUESTS`` with ``Retry-After``, before authentication and any storage work.

The counters are :mod:`registry.state`'s sliding windows, the contract the failed-login limits
use: with ``redis:`` one budget for every worker and instance, else this process's own. A
request is counted only when it is served; the check and the count are two steps, so requests
that arrive at the same moment may overshoot a budget by as many as are in flight at once.
While the shared state is unavailable requests are served (fail open), with one log line.

Not limited: the health-like endpoints load balancers poll (``/v2/`` itself, ``/livez``,
``/readyz``) and the debug server (``http.debug``, its own application).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import ErrorCode, RegistryError

if TYPE_CHECKING:  # aiohttp only where the middleware is built: the config module reads this block
    from aiohttp import web  # for every CLI command, most of which never serve

    from .config import Section

log = logging.getLogger(__name__)

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class RateLimitConfig:
    """``http.ratelimit``: ``requests`` per sliding ``period`` (seconds) per client address."""

    requests: int
    period: float = 60.0
    #: at most this many within ``period * burst / requests``; None: no shorter window
    burst: int | None = None
    #: proxies whose ``X-Forwarded-For`` is believed when naming the client
    trustedproxies: tuple[str, ...] = ()

    @classmethod
    def from_section(cls, s: "Section") -> "RateLimitConfig | None":
        """None when the block is absent or ``enabled: false`` (the limit is off)."""
        if not s.keys():
            return None
        if not s.bool("enabled", True):
            for name in s.keys():  # disabled: the rest of the block is deliberately not read
                s.raw(name)
            return None
        requests = s.int("requests", None, minimum=1)
        if requests is None:
            raise s.error(f"{s.where('requests')} is required: the requests each client may send per period")
        period = s.duration("period", "1m")
        if period <= 0:
            raise s.bad("period", "a positive duration", period)
        burst = s.int("burst", None, minimum=1)
        if burst is not None and burst > requests:
            raise s.error(f"{s.where('burst')}: at most `requests` ({requests}); a larger burst is never reached")
        proxies = s.networks("trustedproxies")
        return cls(requests=requests, period=float(period), burst=burst if burst != requests else None,
                   trustedproxies=tuple(proxies))


class RequestLimiter:
    """The policy over a :class:`registry.state.State` (see the module docstring)."""

    def __init__(self, config: RateLimitConfig, state: Any) -> None:
        self.config = config
        self.state = state
        self.proxies: list[Network] = [ipaddress.ip_network(p, strict=False) for p in config.trustedproxies]
        self._windows: list[tuple[str, int, float]] = [("requests", config.requests, config.period)]
        if config.burst is not None:
            self._windows.append(("burst", config.burst, config.period * config.burst / config.requests))
        self._warned = False

    async def admit(self, address: str) -> float:
        """0 and the request is counted, or the seconds until ``address`` may send again.
        The shared state away: 0 (served, not counted)."""
        from .state import StateUnavailable

        keys = tuple(f"{name}:{address}" for name, _, _ in self._windows)
        try:
            waits = await asyncio.gather(*(self.state.window_retry_after(key, limit, window)
                                           for key, (_, limit, window) in zip(keys, self._windows)))
            wait = max(waits)
            if wait <= 0:
                # one add for both keys: the longer window and cap keep what the burst check needs
                await self.state.window_add(keys, self.config.period, self.config.requests)
        except StateUnavailable as exc:
            if not self._warned:
                log.warning("request-rate limit: the shared state is unavailable (%s); serving unlimited", exc)
                self._warned = True
            return 0.0
        self._warned = False
        return wait


def _exempt_paths(prefix: str) -> frozenset[str]:
    base = prefix.rstrip("/")
    return frozenset({f"{base}/v2/", f"{base}/v2", f"{base}/livez", f"{base}/readyz"})


def make_middleware(limiter: RequestLimiter, prefix: str = "/") -> Any:
    """The middleware (after the errors middleware, before authentication)."""
    from aiohttp import web

    from .auth.ratelimit import client_address

    exempt = _exempt_paths(prefix)

    @web.middleware
    async def request_rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        wait = await limiter.admit(client_address(request, limiter.proxies))
        if wait > 0:
            raise RegistryError(ErrorCode.TOOMANYREQUESTS, "too many requests from this client; retry later",
                                headers={"Retry-After": str(int(wait) + 1)})
        return await handler(request)

    return request_rate_limit
