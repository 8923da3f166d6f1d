"""What processes and instances share: leases with fencing, sliding-window counters, caches, records.

One small contract, :class:`State`, with two backends, chosen by configuration:

- :class:`registry.state.local.LocalState` (no ``redis:`` section): everything in this process;
  leases are also ``flock`` locks in a directory of this host, so ``http.workers > 1`` serialises
  what must be serialised without any server. Counters, caches and records stay per process.
- :class:`registry.state.redis.RedisState` (``redis:`` configured): everything in Redis, shared
  by every worker and every instance that names the same Redis (and ``state.keyprefix``).

Callers never see the backend: the store takes :meth:`State.lease` around an upload's requests
and a repository's writes, the login limiter counts in :meth:`State.window_add`, the blob
descriptor cache (:mod:`registry.state.cache`) lives in :meth:`State.cache_get`/``cache_fill``/
``cache_drop``, refresh tokens in ``record_*``.

Failure model: when the backend is unreachable every call raises :class:`StateUnavailable`
(after at most the configured timeouts; then, for a second, at once). Code that only *reads*
(caches) treats that as a miss and goes to storage; code that needs a lease answers 503 with
``Retry-After`` (``StateUnavailable.to_registry_error``). Nothing is retried behind the caller's
back, and the client reconnects on its own when Redis is back.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RegistryError

if TYPE_CHECKING:
    from .config import StateConfig

__all__ = ["Lease", "LeaseBusy", "LeaseLost", "State", "StateUnavailable", "open_state"]


class StateUnavailable(Exception):
    """The shared state (Redis) cannot be reached; the message says why, without secrets."""

    def to_registry_error(self, what: str = "this operation") -> RegistryError:
        return RegistryError(
            ErrorCode.UNAVAILABLE,
            f"{what} needs the shared state (Redis), which is unavailable; retry shortly",
            headers={"Retry-After": "2"},
        )


class LeaseBusy(Exception):
    """Another holder kept the lease longer than we were willing to wait."""

    def to_registry_error(self, what: str = "this resource") -> RegistryError:
        return RegistryError(
            ErrorCode.UNAVAILABLE,
            f"{what} is busy with another request; retry shortly",
            headers={"Retry-After": "1"},
        )


class LeaseLost(Exception):
    """The lease expired (or was taken over) while we held it: stop writing."""

    def to_registry_error(self, what: str = "the request") -> RegistryError:
        return RegistryError(
            ErrorCode.UNAVAILABLE,
            f"{what} lost its lock (the instance was paused or the shared state restarted); retry",
            headers={"Retry-After": "1"},
        )


class Lease(abc.ABC):
    """A held lease. ``token`` is its fencing token: tokens of one backend only grow, so a
    holder granted later always has a larger one. ``clean`` is False when the previous holder
    did not release it (it expired: that holder may still be alive and paused) or when nothing
    is known about earlier holders; a writer then fences them out in the storage itself (see
    :mod:`registry.store.uploads`)."""

    token: int = 0
    clean: bool = True
    #: monotonic time until which the lease is surely ours (acquire or last renewal + ttl - margin)
    valid_until: float = float("inf")

    def check(self) -> None:
        """Raise :class:`LeaseLost` once the lease cannot be trusted any more: a local check
        (no round trip), called before each storage write."""
        if time.monotonic() >= self.valid_until:
            raise LeaseLost()

    @abc.abstractmethod
    async def release(self) -> None: ...


class State(abc.ABC):
    """The contract (see the module docstring). Keys are short ASCII strings chosen by callers;
    a backend namespaces them."""

    #: "local" or "redis": which guarantees hold across hosts (docs/scale-out.md)
    kind: str = "local"
    #: whether every instance sees the same counters, caches and records
    shared: bool = False

    # --- leases ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def acquire(self, name: str, *, shared: bool = False, ttl: float | None = None,
                      wait: float | None = None) -> Lease:
        """Take the lease ``name`` (exclusive; or shared with other shared holders, never with an
        exclusive one, and new shared holders queue behind a waiting exclusive one). Waits at
        most ``wait`` seconds (the configured default when None), then raises :class:`LeaseBusy`.
        The lease is renewed in the background until released."""

    @contextlib.asynccontextmanager
    async def lease(self, name: str, *, shared: bool = False, ttl: float | None = None,
                    wait: float | None = None) -> AsyncIterator[Lease]:
        held = await self.acquire(name, shared=shared, ttl=ttl, wait=wait)
        try:
            yield held
        finally:
            await held.release()

    # --- sliding-window counters -------------------------------------------------------------

    @abc.abstractmethod
    async def window_add(self, keys: tuple[str, ...], window: float, cap: int) -> None:
        """Count one event now under each key (at most ``cap`` kept per key, for ``window``)."""

    @abc.abstractmethod
    async def window_retry_after(self, key: str, limit: int, window: float) -> float:
        """Seconds until ``key`` has fewer than ``limit`` events in the window (0: it has now)."""

    @abc.abstractmethod
    async def window_reset(self, key: str) -> None: ...

    @abc.abstractmethod
    async def mark(self, key: str, member: str, cap: int, ttl: float) -> None:
        """Remember ``member`` in the bounded set ``key`` (the oldest go first) for ``ttl``."""

    @abc.abstractmethod
    async def marked(self, key: str, member: str, ttl: float) -> bool: ...

    # --- caches with generations --------------------------------------------------------------

    @abc.abstractmethod
    async def cache_get(self, scope: str, field: str) -> tuple[bytes | None, int]:
        """The cached value (None on a miss) and the scope's generation, to pass to
        :meth:`cache_fill`."""

    @abc.abstractmethod
    async def cache_fill(self, scope: str, field: str, value: bytes, generation: int) -> None:
        """Store ``value`` unless ``scope`` was dropped since ``generation`` was read: a reader
        that looked at storage before a delete can never put back what the delete removed."""

    @abc.abstractmethod
    async def cache_drop(self, scope: str, fields: tuple[str, ...] = ()) -> None:
        """Forget ``fields`` of ``scope`` (all of it when empty) and advance its generation, for
        every instance at once."""

    # --- records (refresh tokens) ---------------------------------------------------------------

    @abc.abstractmethod
    async def record_put(self, kind: str, key: str, value: bytes, ttl: float, group: str = "") -> None:
        """Store ``value`` under ``kind``/``key`` for ``ttl`` seconds, also listed in ``group``."""

    @abc.abstractmethod
    async def record_get(self, kind: str, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def record_group(self, kind: str, group: str) -> dict[str, bytes]:
        """The live records of ``group`` (key -> value)."""

    @abc.abstractmethod
    async def record_all(self, kind: str) -> dict[str, bytes]: ...

    @abc.abstractmethod
    async def record_delete(self, kind: str, key: str, group: str = "") -> None: ...

    # --- life cycle ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`StateUnavailable` when the backend does not answer."""

    async def close(self) -> None: ...


def open_state(config: "StateConfig | None", *, workers: int = 1) -> State:
    """The backend the configuration names: Redis when ``redis:`` has an address, else local."""
    from .config import StateConfig

    config = config or StateConfig()
    if config.redis is not None:
        try:
            import redis  # noqa: F401
        except ImportError:
            from ..config import ConfigError

            raise ConfigError("redis: needs the redis Python package (pip install 'pyregistry[redis]')") from None
        from .redis import RedisState

        return RedisState(config)
    from .local import LocalState

    return LocalState(config, workers=workers)
