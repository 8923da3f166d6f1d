"""Failed-login limits that slow the guesser, not the account's owner.

Failures are counted in a sliding window under three keys, and a login is refused before any
password check (429 with Retry-After) while one of them is over its budget:

- the pair (client address, account): ``failures`` guesses per window at one account from one
  address. An attacker who knows a user name locks only its own address out of that account;
  the right password from any other address still works.
- the client address alone: ``address_failures`` (spraying many accounts from one address).
- the account alone: ``account_failures``, counted over every address (a guess from each of many
  addresses); over it, only addresses the account signed in from before (since this process
  started, up to :data:`KNOWN_ADDRESSES` per account) may still try.

The counters live behind :class:`FailureStore`: :class:`MemoryFailureStore` keeps them in this
process; :class:`StateFailureStore` keeps them in :mod:`registry.state`, which with Redis gives
every worker and instance one budget. While Redis is unreachable the limits fall back to this
process's own counters (each instance then allows its own budget), so logins neither stop nor go
unlimited.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from ..state import State

log = logging.getLogger(__name__)

#: addresses remembered per account as having signed in (the account-wide budget spares them)
KNOWN_ADDRESSES = 32
#: how long such an address stays remembered after its last successful login
KNOWN_FOR = 30 * 24 * 3600.0


def client_address(request: "web.Request",
                   proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> str:
    """The client's address, the one rule every per-client limit keys on: the peer, or behind
    ``proxies`` (trusted) the last ``X-Forwarded-For`` hop that is not one of them."""
    hops = [request.remote or "?"]
    if proxies:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()][-16:] + hops
    for hop in reversed(hops):
        try:
            ip = ipaddress.ip_address(hop)
        except ValueError:
            return hop[:64]
        if not any(ip in net for net in proxies):
            return hop
    return hops[0][:64]


class FailureStore(Protocol):
    """Sliding-window failure counters and small sets: the state :class:`LoginLimiter` decides on."""

    async def add(self, keys: tuple[str, ...]) -> None:
        """Count one failure now under each key."""

    async def retry_after(self, key: str, limit: int) -> float:
        """Seconds until ``key`` has fewer than ``limit`` failures in the window; 0 when it has now."""

    async def reset(self, key: str) -> None:
        """Forget the failures of ``key``."""

    async def remember(self, key: str, member: str) -> None:
        """Add ``member`` to the set ``key`` (bounded; the oldest members go first)."""

    async def remembered(self, key: str, member: str) -> bool:
        """Whether ``member`` is in the set ``key``."""


class MemoryFailureStore:
    """:class:`FailureStore` in this process's memory, bounded in keys and entries per key."""

    def __init__(self, window: float, max_entries: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self.clock = clock
        self.max_keys = max_keys
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._sets: collections.OrderedDict[str, collections.OrderedDict[str, float]] = collections.OrderedDict()

    def _recent(self, key: str) -> collections.deque[float]:
        entries = self._failures.get(key)
        if entries is None:
            return collections.deque()
        horizon = self.clock() - self.window
        while entries and entries[0] <= horizon:
            entries.popleft()
        if not entries:
            del self._failures[key]
        return entries

    async def add(self, keys: tuple[str, ...]) -> None:
        now = self.clock()
        for key in keys:
            entries = self._failures.get(key)
            if entries is None:
                entries = self._failures[key] = collections.deque(maxlen=self.max_entries)
            entries.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    async def retry_after(self, key: str, limit: int) -> float:
        entries = self._recent(key)
        if len(entries) < limit:
            return 0.0
        return max(entries[-limit] + self.window - self.clock(), 0.0)

    async def reset(self, key: str) -> None:
        self._failures.pop(key, None)

    async def remember(self, key: str, member: str) -> None:
        members = self._sets.get(key)
        if members is None:
            members = self._sets[key] = collections.OrderedDict()
        members[member] = self.clock()
        members.move_to_end(member)
        self._sets.move_to_end(key)
        while len(members) > KNOWN_ADDRESSES:
            members.popitem(last=False)
        while len(self._sets) > self.max_keys:
            self._sets.popitem(last=False)

    async def remembered(self, key: str, member: str) -> bool:
        members = self._sets.get(key)
        seen = members.get(member) if members is not None else None
        return seen is not None and self.clock() - seen < KNOWN_FOR


class StateFailureStore:
    """:class:`FailureStore` in the shared state (one budget for every instance on one Redis),
    with this process's memory as the fallback while the state is unavailable."""

    def __init__(self, state: "State", window: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.window = window
        self.max_entries = max_entries
        self.fallback = MemoryFailureStore(window, max_entries, clock)
        self._warned = False

    async def _shared(self, call: Callable[[], object], local: Callable[[], object]) -> object:
        from ..state import StateUnavailable

        try:
            result = await call()  # type: ignore[misc]
            self._warned = False
            return result
        except StateUnavailable:
            if not self._warned:
                log.warning("failed-login limits: the shared state is unavailable; counting in this process")
                self._warned = True
            return await local()  # type: ignore[misc]

    async def add(self, keys: tuple[str, ...]) -> None:
        await self._shared(lambda: self.state.window_add(keys, self.window, self.max_entries),
                           lambda: self.fallback.add(keys))

    async def retry_after(self, key: str, limit: int) -> float:
        return float(await self._shared(lambda: self.state.window_retry_after(key, limit, self.window),  # type: ignore[arg-type]
                                        lambda: self.fallback.retry_after(key, limit)))

    async def reset(self, key: str) -> None:
        await self._shared(lambda: self.state.window_reset(key), lambda: self.fallback.reset(key))

    async def remember(self, key: str, member: str) -> None:
        await self._shared(lambda: self.state.mark(key, member, KNOWN_ADDRESSES, KNOWN_FOR),
                           lambda: self.fallback.remember(key, member))

    async def remembered(self, key: str, member: str) -> bool:
        return bool(await self._shared(lambda: self.state.marked(key, member, KNOWN_FOR),
                                       lambda: self.fallback.remembered(key, member)))


class LoginLimiter:
    """The login policy over a :class:`FailureStore` (see the module docstring)."""

    def __init__(self, failures: int, window: float, *, address_failures: int | None = None,
                 account_failures: int | None = None, store: FailureStore | None = None,
                 clock: Callable[[], float] = time.monotonic, state: "State | None" = None) -> None:
        """``state``: a shared :mod:`registry.state` backend to count in (Redis: one budget for
        every instance); this process's memory when None or local."""
        self.failures = failures
        self.address_failures = address_failures or 4 * failures
        self.account_failures = account_failures or 10 * failures
        budget = max(self.failures, self.address_failures, self.account_failures)
        if store is None and state is not None and state.shared:
            store = StateFailureStore(state, window, budget, clock)
        self.store: FailureStore = store or MemoryFailureStore(window, budget, clock)

    @staticmethod
    def _keys(account: str | None, address: str) -> tuple[str, str | None, str | None]:
        return (f"address:{address}", f"pair:{address}\x00{account}" if account is not None else None,
                f"account:{account}" if account is not None else None)

    async def retry_after(self, account: str | None, address: str) -> float:
        """Seconds until ``address`` may try ``account`` (None: any credential, e.g. a refresh token)."""
        address_key, pair_key, account_key = self._keys(account, address)
        wait = await self.store.retry_after(address_key, self.address_failures)
        if pair_key is not None:
            wait = max(wait, await self.store.retry_after(pair_key, self.failures))
        if account_key is not None:
            account_wait = await self.store.retry_after(account_key, self.account_failures)
            if account_wait and not await self.store.remembered(f"known:{account}", address):
                wait = max(wait, account_wait)
        return wait

    async def failed(self, account: str | None, address: str) -> None:
        await self.store.add(tuple(k for k in self._keys(account, address) if k is not None))

    async def succeeded(self, account: str, address: str) -> None:
        """A right password: this address's guesses at this account are forgiven, and the address
        is remembered for the account (the attacker's failures elsewhere still count)."""
        _, pair_key, _ = self._keys(account, address)
        assert pair_key is not None
        await self.store.reset(pair_key)
        await self.store.remember(f"known:{account}", address)
