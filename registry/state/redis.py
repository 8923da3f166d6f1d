"""The Redis backend (redis-py's asyncio client): one server, Sentinel (``mastername``) or Cluster.

Every key starts with ``state.keyprefix`` and carries a ``{hash tag}`` so that the keys one
script touches share a cluster slot. Multi-key steps are Lua scripts (atomic on the server) that
read Redis' own clock, so instances with skewed clocks agree on windows and expiries.

Leases: ``l:{name}`` holds the exclusive holder's token (``PX`` ttl); ``r:{name}`` is a sorted set
of shared holders scored by their expiry; ``h:{name}`` remembers the last token granted and the
last one released, which tells a new holder whether its predecessor released (``clean``) or
expired. Tokens come from one counter (``fence``), so they only grow while Redis keeps its data.
A holder renews every third of the ttl; a renewal that finds another token (or none) ends the
lease at once, and :meth:`Lease.check` fails once ``valid_until`` (the last successful renewal's
start plus the ttl, less a margin) has passed without one.

Unavailable Redis: each call fails within ``dialtimeout``/``readtimeout``; after a failure, calls
fail at once for :data:`COOL_OFF` seconds (a request path that only reads does not wait on each
request), then the next call tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import Lease, LeaseBusy, LeaseLost, State, StateUnavailable

if TYPE_CHECKING:
    from .config import RedisConfig, StateConfig

log = logging.getLogger(__name__)

#: seconds calls fail fast after Redis did not answer
COOL_OFF = 1.0
#: seconds a lease's history (last granted / last released token) is kept
HISTORY_TTL = 7 * 24 * 3600
_POLL = (0.005, 0.01, 0.02, 0.05, 0.1)

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == '1' then
  if holder then return {0, 0, 0} end
  local token = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[2], now + ttl, token)
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
  return {1, token, 1}
end
local token = tonumber(ARGV[2])
if holder and tonumber(holder) ~= token then return {0, 0, 0} end
if not token then token = redis.call('INCR', KEYS[4]) end
redis.call('SET', KEYS[1], token, 'PX', ttl)
if redis.call('ZCARD', KEYS[2]) > 0 then return {2, token, 0} end
local last = redis.call('HGET', KEYS[3], 'last')
local released = redis.call('HGET', KEYS[3], 'released')
local clean = 0
if last and last == released then clean = 1 end
redis.call('HSET', KEYS[3], 'last', token)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return {1, token, clean}
"""

_RELEASE = """
if ARGV[2] == '1' then return redis.call('ZREM', KEYS[2], ARGV[1]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[3], 'released', ARGV[1])
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
  end
  return 1
end
return 0
"""

_RENEW = """
local ttl = tonumber(ARGV[3])
if ARGV[2] == '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
  redis.call('ZADD', KEYS[2], 'XX', now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
return 0
"""

_WINDOW_ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, now .. ':' .. ARGV[3] .. ':' .. redis.call('INCR', key .. ':n'))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('PEXPIRE', key, window)
  redis.call('PEXPIRE', key .. ':n', window)
end
return 1
"""

_WINDOW_WAIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then return 0 end
local nth = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
local wait = tonumber(nth[2]) + window - now
if wait < 0 then return 0 end
return wait
"""

_MARK = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]), ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

_MARKED = """
local t = redis.call('TIME')
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen then return 0 end
if tonumber(t[1]) - tonumber(seen) < tonumber(ARGV[2]) then return 1 end
return 0
"""

_CACHE_GET = """
local generation = redis.call('GET', KEYS[2]) or '0'
return {redis.call('HGET', KEYS[1], ARGV[1]), generation}
"""

_CACHE_FILL = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""

_CACHE_DROP = """
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
if #ARGV > 1 then
  for i = 2, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

#: seconds a cache scope lives after its last fill, and its generation after its last drop
CACHE_TTL = 24 * 3600
GENERATION_TTL = 7 * 24 * 3600


def _errors() -> tuple[type[BaseException], ...]:
    from redis import exceptions

    return (exceptions.RedisError, OSError, asyncio.TimeoutError)


class _RedisLease(Lease):
    def __init__(self, backend: "RedisState", name: str, token: int, clean: bool, shared: bool,
                 ttl: float, started: float) -> None:
        self.token, self.clean = token, clean
        self._backend, self._name, self._shared, self._ttl = backend, name, shared, ttl
        self.valid_until = started + ttl - backend.margin(ttl)
        self._released = False
        self._renewer = asyncio.ensure_future(self._renew_loop())

    async def _renew_loop(self) -> None:
        interval = self._ttl / 3
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            try:
                still = await self._backend._renew(self._name, self.token, self._shared, self._ttl)
            except StateUnavailable:
                if time.monotonic() >= self.valid_until:
                    return
                continue
            if not still:
                log.warning("lease %s: taken over or expired while held", self._name)
                self.valid_until = 0.0
                return
            self.valid_until = started + self._ttl - self._backend.margin(self._ttl)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        with contextlib.suppress(StateUnavailable):  # it expires by itself; the next holder fences
            await self._backend._release(self._name, self.token, self._shared,
                                         clean=time.monotonic() < self.valid_until)


class RedisState(State):
    kind = "redis"
    shared = True

    def __init__(self, config: "StateConfig") -> None:
        assert config.redis is not None
        self.config = config
        self.redis_config = config.redis
        self.prefix = config.keyprefix
        self.client: Any = _client(config.redis)
        self._down_until = 0.0
        self._instance = os.urandom(4).hex()
        reg = self.client.register_script
        self._acquire_script = reg(_ACQUIRE)
        self._release_script = reg(_RELEASE)
        self._renew_script = reg(_RENEW)
        self._window_add = reg(_WINDOW_ADD)
        self._window_wait = reg(_WINDOW_WAIT)
        self._mark = reg(_MARK)
        self._marked = reg(_MARKED)
        self._cache_get = reg(_CACHE_GET)
        self._cache_fill = reg(_CACHE_FILL)
        self._cache_drop = reg(_CACHE_DROP)

    def margin(self, ttl: float) -> float:
        """How much earlier than Redis a holder stops trusting its lease (clock rates, latency)."""
        return min(max(0.2 * ttl, 0.5), ttl / 2)

    # --- plumbing ------------------------------------------------------------------------------

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if time.monotonic() < self._down_until:
            raise StateUnavailable("Redis did not answer a moment ago")
        try:
            return await script(keys=keys, args=args)
        except _errors() as exc:
            self._down_until = time.monotonic() + COOL_OFF
            log.warning("redis: %s: %s", type(exc).__name__, _safe(exc))
            raise StateUnavailable(f"Redis: {type(exc).__name__}") from None

    def _lease_keys(self, name: str) -> list[str]:
        tag = "{" + name + "}"
        p = self.prefix
        return [f"{p}l:{tag}", f"{p}r:{tag}", f"{p}h:{tag}", f"{p}fence"]

    # --- leases ------------------------------------------------------------------------------

    async def acquire(self, name: str, *, shared: bool = False, ttl: float | None = None,
                      wait: float | None = None) -> Lease:
        ttl = self.config.leasettl if ttl is None else ttl
        wait = self.config.lockwait if wait is None else wait
        deadline = time.monotonic() + wait
        keys = self._lease_keys(name)
        if self.redis_config.cluster:  # the fence counter must share the lease's slot
            keys[3] = f"{self.prefix}fence:{{{name}}}"
        token: int | None = None
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                status, granted, clean = await self._call(
                    self._acquire_script, keys,
                    [int(ttl * 1000), "" if token is None else token, "1" if shared else "0", HISTORY_TTL])
            except StateUnavailable:
                if token is not None:  # a waiting exclusive claim expires by itself
                    token = None
                raise
            if status == 1:
                return _RedisLease(self, name, int(granted), bool(clean), shared, ttl, started)
            if status == 2:
                token = int(granted)  # we hold the writer slot; readers are draining
            if time.monotonic() >= deadline:
                if token is not None:
                    with contextlib.suppress(StateUnavailable):
                        await self._release(name, token, False, clean=False)
                raise LeaseBusy(name)
            await asyncio.sleep(_POLL[min(attempt, len(_POLL) - 1)])
            attempt += 1

    async def _renew(self, name: str, token: int, shared: bool, ttl: float) -> bool:
        keys = self._lease_keys(name)[:3]
        return bool(await self._call(self._renew_script, keys, [token, "1" if shared else "0", int(ttl * 1000)]))

    async def _release(self, name: str, token: int, shared: bool, *, clean: bool) -> None:
        keys = self._lease_keys(name)[:3]
        await self._call(self._release_script, keys,
                         [token, "1" if shared else "0", "1" if clean else "0", HISTORY_TTL])

    async def holder(self, name: str) -> int | None:
        """The exclusive holder's token now (tests and diagnostics)."""
        try:
            raw = await self.client.get(self._lease_keys(name)[0])
        except _errors() as exc:
            raise StateUnavailable(f"Redis: {type(exc).__name__}") from None
        return int(raw) if raw is not None else None

    # --- sliding windows ---------------------------------------------------------------------

    def _window_key(self, key: str) -> str:
        return f"{self.prefix}w:{{{key}}}"

    async def window_add(self, keys: tuple[str, ...], window: float, cap: int) -> None:
        if not keys:
            return
        ms = int(window * 1000)
        if self.redis_config.cluster:  # one script per key: keys live in different slots
            for key in keys:
                await self._call(self._window_add, [self._window_key(key)], [ms, cap, self._instance])
            return
        await self._call(self._window_add, [self._window_key(k) for k in keys], [ms, cap, self._instance])

    async def window_retry_after(self, key: str, limit: int, window: float) -> float:
        wait = await self._call(self._window_wait, [self._window_key(key)], [limit, int(window * 1000)])
        return float(wait) / 1000.0

    async def window_reset(self, key: str) -> None:
        await self._call(self._cache_drop, [self._window_key(key), self._window_key(key) + ":n"], [1])

    async def mark(self, key: str, member: str, cap: int, ttl: float) -> None:
        await self._call(self._mark, [f"{self.prefix}m:{{{key}}}"], [member, cap, int(ttl)])

    async def marked(self, key: str, member: str, ttl: float) -> bool:
        return bool(await self._call(self._marked, [f"{self.prefix}m:{{{key}}}"], [member, int(ttl)]))

    # --- caches ------------------------------------------------------------------------------

    def _cache_keys(self, scope: str) -> list[str]:
        return [f"{self.prefix}c:{{{scope}}}", f"{self.prefix}g:{{{scope}}}"]

    async def cache_get(self, scope: str, field: str) -> tuple[bytes | None, int]:
        value, generation = await self._call(self._cache_get, self._cache_keys(scope), [field])
        return value, int(generation)

    async def cache_fill(self, scope: str, field: str, value: bytes, generation: int) -> None:
        await self._call(self._cache_fill, self._cache_keys(scope), [field, value, generation, CACHE_TTL])

    async def cache_drop(self, scope: str, fields: tuple[str, ...] = ()) -> None:
        await self._call(self._cache_drop, self._cache_keys(scope), [GENERATION_TTL, *fields])

    # --- records -----------------------------------------------------------------------------

    def _record_key(self, kind: str, key: str) -> str:
        return f"{self.prefix}rec:{{{kind}}}:{key}"

    def _group_key(self, kind: str, group: str) -> str:
        return f"{self.prefix}rg:{{{kind}}}:{group}"

    async def _do(self, fn: Any) -> Any:
        if time.monotonic() < self._down_until:
            raise StateUnavailable("Redis did not answer a moment ago")
        try:
            return await fn()
        except _errors() as exc:
            self._down_until = time.monotonic() + COOL_OFF
            log.warning("redis: %s: %s", type(exc).__name__, _safe(exc))
            raise StateUnavailable(f"Redis: {type(exc).__name__}") from None

    async def record_put(self, kind: str, key: str, value: bytes, ttl: float, group: str = "") -> None:
        async def put() -> None:
            pipe = self.client.pipeline(transaction=not self.redis_config.cluster)
            pipe.set(self._record_key(kind, key), value, px=max(1, int(ttl * 1000)))
            pipe.sadd(self._group_key(kind, group), key)
            pipe.sadd(self._group_key(kind, "\x00all"), key)
            await pipe.execute()

        await self._do(put)

    async def record_get(self, kind: str, key: str) -> bytes | None:
        return await self._do(lambda: self.client.get(self._record_key(kind, key)))

    async def _members(self, kind: str, group: str) -> dict[str, bytes]:
        async def read() -> dict[str, bytes]:
            gkey = self._group_key(kind, group)
            keys = sorted(k.decode() if isinstance(k, bytes) else k for k in await self.client.smembers(gkey))
            if not keys:
                return {}
            values = await self.client.mget([self._record_key(kind, k) for k in keys])
            gone = [k for k, v in zip(keys, values) if v is None]
            if gone:  # expired records leave their group
                await self.client.srem(gkey, *gone)
            return {k: v for k, v in zip(keys, values) if v is not None}

        return await self._do(read)

    async def record_group(self, kind: str, group: str) -> dict[str, bytes]:
        return await self._members(kind, group)

    async def record_all(self, kind: str) -> dict[str, bytes]:
        return await self._members(kind, "\x00all")

    async def record_delete(self, kind: str, key: str, group: str = "") -> None:
        async def delete() -> None:
            pipe = self.client.pipeline(transaction=not self.redis_config.cluster)
            pipe.delete(self._record_key(kind, key))
            pipe.srem(self._group_key(kind, group), key)
            pipe.srem(self._group_key(kind, "\x00all"), key)
            await pipe.execute()

        await self._do(delete)

    # --- life cycle ---------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._do(self.client.ping)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()


def _safe(exc: BaseException) -> str:
    """An error's text without anything that could be a password (redis-py may echo its URL)."""
    text = " ".join(str(exc).split())[:200]
    return text.split("@")[-1] if "@" in text else text


def _tls_kwargs(c: "RedisConfig") -> dict[str, Any]:
    """redis-py's TLS arguments: the server verified against ``rootcas`` (else the system's
    roots), a client certificate for mutual TLS."""
    if not c.tls:
        return {}
    out: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if c.rootcas:
        out["ssl_ca_data"] = "\n".join(Path(ca).read_text() for ca in c.rootcas)
    if c.certificate:
        out.update(ssl_certfile=c.certificate, ssl_keyfile=c.key)
    return out


def _client(c: "RedisConfig") -> Any:
    """A redis-py asyncio client for ``c``: plain, Sentinel-managed or Cluster."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    timeout = max(c.readtimeout, c.writetimeout)
    retries = c.maxretries if c.maxretries > 0 else 0
    common: dict[str, Any] = dict(
        username=c.username or None,
        password=c.password or None,
        socket_connect_timeout=c.dialtimeout,
        socket_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=c.maxretrybackoff, base=c.minretrybackoff), retries),
        protocol=c.protocol,
        client_name=c.clientname or None,
    )
    hosts = [_host_port(a) for a in c.addrs]
    if c.mastername:
        from redis.asyncio.sentinel import Sentinel

        sentinel_kwargs: dict[str, Any] = dict(socket_connect_timeout=c.dialtimeout, socket_timeout=timeout,
                                               username=c.sentinelusername or None,
                                               password=c.sentinelpassword or None)
        kwargs = dict(common, db=c.db, **_tls_kwargs(c))
        if c.tls:
            sentinel_kwargs.update(_tls_kwargs(c))
        if c.poolsize:
            kwargs["max_connections"] = c.poolsize
        return Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs).master_for(c.mastername)
    if c.cluster:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        kwargs = dict(common, **_tls_kwargs(c))
        if c.poolsize:
            kwargs["max_connections"] = c.poolsize
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts], **kwargs)
    host, port = hosts[0]
    kwargs = dict(common, host=host, port=port, db=c.db, **_tls_kwargs(c))
    if c.poolsize:
        from redis.asyncio import BlockingConnectionPool

        pool = BlockingConnectionPool(max_connections=c.poolsize, timeout=c.pooltimeout, **kwargs)
        return Redis(connection_pool=pool)
    return Redis(**kwargs)


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


__all__ = ["RedisState", "LeaseLost"]
