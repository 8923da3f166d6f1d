"""The local backend: this process's memory, plus ``flock`` lock files for the workers of one host.

Leases are asyncio locks (shared/exclusive, a waiting exclusive holder goes first) and, when a
lock directory is set (``state.lockdirectory``, or the one ``registry serve`` makes for
``http.workers > 1``), also ``flock`` locks on one file per lease name. A ``flock`` is never lost
while its process lives, however long the process is paused, and the kernel drops it when the
process dies: so these leases need no renewal, their fencing is the kernel's, and ``clean`` is
always true. They do not reach other hosts.

Counters, caches and records live in this process only: with several workers each worker has
its own failed-login budget and its own cache (which is why an in-memory blob descriptor cache
is refused with ``http.workers > 1``: a delete in one worker could not reach the others).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import itertools
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import Lease, LeaseBusy, State

if TYPE_CHECKING:
    from .config import StateConfig

#: keys (counters, sets, cache scopes, records) kept per kind before the oldest go
MAX_KEYS = 100_000
_POLL = (0.005, 0.01, 0.02, 0.05, 0.1)


@dataclasses.dataclass
class _Gate:
    """One lease name in this process: shared holders, an exclusive holder, waiting exclusives."""

    cond: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)
    shared: int = 0
    exclusive: bool = False
    waiting: int = 0
    users: int = 0


class _LocalLease(Lease):
    def __init__(self, backend: "LocalState", name: str, gate: _Gate, shared: bool, fd: int | None,
                 path: Path | None) -> None:
        self.token = next(backend._tokens)
        self.clean = True
        self._backend, self._name, self._gate, self._shared = backend, name, gate, shared
        self._fd, self._path = fd, path
        self._released = False

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._fd is not None:
            _unlock_file(self._fd, self._path, remove=not self._shared)
        await self._backend._leave(self._name, self._gate, self._shared)


class LocalState(State):
    kind = "local"
    shared = False

    def __init__(self, config: "StateConfig", *, workers: int = 1) -> None:
        self.config = config
        self.lockdir = Path(config.lockdirectory) if config.lockdirectory else None
        if self.lockdir is not None:
            self.lockdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._gates: dict[str, _Gate] = {}
        self._tokens = itertools.count(1)
        self._windows: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._sets: collections.OrderedDict[str, collections.OrderedDict[str, float]] = collections.OrderedDict()
        self._caches: dict[str, tuple[int, collections.OrderedDict[str, bytes]]] = {}
        self._cache_size = max(1, config.blobdescriptorsize)
        self._generations: dict[str, int] = {}
        self._records: dict[str, dict[str, tuple[float, bytes, str]]] = {}
        self.clock = time.monotonic

    # --- leases ------------------------------------------------------------------------------

    async def acquire(self, name: str, *, shared: bool = False, ttl: float | None = None,
                      wait: float | None = None) -> Lease:
        wait = self.config.lockwait if wait is None else wait
        deadline = time.monotonic() + wait
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = _Gate()
        gate.users += 1
        try:
            await asyncio.wait_for(self._enter(gate, shared), timeout=max(wait, 0.001))
        except asyncio.TimeoutError:
            self._drop(name, gate)
            raise LeaseBusy(name) from None
        except BaseException:
            self._drop(name, gate)
            raise
        fd = path = None
        if self.lockdir is not None:
            try:
                fd, path = await self._lock_file(name, shared, deadline)
            except BaseException:
                await self._leave(name, gate, shared)
                raise
        return _LocalLease(self, name, gate, shared, fd, path)

    async def _enter(self, gate: _Gate, shared: bool) -> None:
        async with gate.cond:
            if shared:
                await gate.cond.wait_for(lambda: not gate.exclusive and not gate.waiting)
                gate.shared += 1
                return
            gate.waiting += 1
            try:
                await gate.cond.wait_for(lambda: not gate.exclusive and gate.shared == 0)
            finally:
                gate.waiting -= 1
                gate.cond.notify_all()  # shared waiters queued behind us may go if we gave up
            gate.exclusive = True

    async def _leave(self, name: str, gate: _Gate, shared: bool) -> None:
        async with gate.cond:
            if shared:
                gate.shared -= 1
            else:
                gate.exclusive = False
            gate.cond.notify_all()
        self._drop(name, gate)

    def _drop(self, name: str, gate: _Gate) -> None:
        gate.users -= 1
        if gate.users <= 0 and self._gates.get(name) is gate:
            del self._gates[name]

    async def _lock_file(self, name: str, shared: bool, deadline: float) -> tuple[int, Path]:
        assert self.lockdir is not None
        digest = hashlib.sha256(name.encode()).hexdigest()
        path = self.lockdir / digest[:2] / digest[2:40]
        path.parent.mkdir(exist_ok=True, mode=0o700)
        for pause in itertools.chain(_POLL, itertools.repeat(_POLL[-1])):
            fd = _try_lock_file(path, shared)
            if fd is not None:
                return fd, path
            if time.monotonic() >= deadline:
                raise LeaseBusy(name)
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    def busy(self) -> int:
        """Lease names with a holder or a waiter in this process (tests: 0 once all released)."""
        return len(self._gates)

    # --- sliding windows ---------------------------------------------------------------------

    def _recent(self, key: str, window: float) -> collections.deque[float]:
        entries = self._windows.get(key)
        if entries is None:
            return collections.deque()
        horizon = self.clock() - window
        while entries and entries[0] <= horizon:
            entries.popleft()
        if not entries:
            del self._windows[key]
        return entries

    async def window_add(self, keys: tuple[str, ...], window: float, cap: int) -> None:
        now = self.clock()
        for key in keys:
            entries = self._windows.get(key)
            if entries is None or entries.maxlen != cap:
                entries = self._windows[key] = collections.deque(entries or (), maxlen=cap)
            entries.append(now)
            self._windows.move_to_end(key)
        while len(self._windows) > MAX_KEYS:
            self._windows.popitem(last=False)

    async def window_retry_after(self, key: str, limit: int, window: float) -> float:
        entries = self._recent(key, window)
        if len(entries) < limit:
            return 0.0
        return max(entries[-limit] + window - self.clock(), 0.0)

    async def window_reset(self, key: str) -> None:
        self._windows.pop(key, None)

    async def mark(self, key: str, member: str, cap: int, ttl: float) -> None:
        members = self._sets.get(key)
        if members is None:
            members = self._sets[key] = collections.OrderedDict()
        members[member] = self.clock()
        members.move_to_end(member)
        self._sets.move_to_end(key)
        while len(members) > cap:
            members.popitem(last=False)
        while len(self._sets) > MAX_KEYS:
            self._sets.popitem(last=False)

    async def marked(self, key: str, member: str, ttl: float) -> bool:
        members = self._sets.get(key)
        seen = members.get(member) if members is not None else None
        return seen is not None and self.clock() - seen < ttl

    # --- caches ------------------------------------------------------------------------------

    async def cache_get(self, scope: str, field: str) -> tuple[bytes | None, int]:
        generation = self._generations.get(scope, 0)
        entry = self._caches.get(scope)
        if entry is None or entry[0] != generation:
            return None, generation
        value = entry[1].get(field)
        if value is not None:
            entry[1].move_to_end(field)
        return value, generation

    async def cache_fill(self, scope: str, field: str, value: bytes, generation: int) -> None:
        if self._generations.get(scope, 0) != generation:
            return
        entry = self._caches.get(scope)
        if entry is None or entry[0] != generation:
            entry = self._caches[scope] = (generation, collections.OrderedDict())
        entry[1][field] = value
        while len(entry[1]) > self._cache_size:
            entry[1].popitem(last=False)
        if len(self._caches) > self._cache_size:  # many small scopes (repositories): drop some
            for stale in list(self._caches)[: len(self._caches) // 4]:
                del self._caches[stale]

    async def cache_drop(self, scope: str, fields: tuple[str, ...] = ()) -> None:
        self._generations[scope] = self._generations.get(scope, 0) + 1
        if len(self._generations) > MAX_KEYS:  # forgetting a generation is safe once its entries are gone
            for stale in [s for s in list(self._generations)[: MAX_KEYS // 4] if s not in self._caches]:
                del self._generations[stale]
        self._caches.pop(scope, None)

    # --- records -----------------------------------------------------------------------------

    def _live(self, kind: str) -> dict[str, tuple[float, bytes, str]]:
        records = self._records.setdefault(kind, {})
        now = time.time()
        for key in [k for k, (expires, _, _) in records.items() if expires <= now]:
            del records[key]
        return records

    async def record_put(self, kind: str, key: str, value: bytes, ttl: float, group: str = "") -> None:
        self._live(kind)[key] = (time.time() + ttl, value, group)

    async def record_get(self, kind: str, key: str) -> bytes | None:
        entry = self._live(kind).get(key)
        return entry[1] if entry is not None else None

    async def record_group(self, kind: str, group: str) -> dict[str, bytes]:
        return {k: v for k, (_, v, g) in self._live(kind).items() if g == group}

    async def record_all(self, kind: str) -> dict[str, bytes]:
        return {k: v for k, (_, v, _) in self._live(kind).items()}

    async def record_delete(self, kind: str, key: str, group: str = "") -> None:
        self._live(kind).pop(key, None)


def _try_lock_file(path: Path, shared: bool) -> int | None:
    """An fd holding ``flock`` on ``path`` (the file that is at ``path`` now), or None if busy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    try:  # an exclusive holder may have removed the file after we opened it: lock the new one
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return _try_lock_file(path, shared)
    return fd


def _unlock_file(fd: int, path: Path | None, *, remove: bool) -> None:
    """Release; an exclusive holder removes the file first (while still holding it), so lock
    files of finished uploads do not pile up. Openers of the removed file notice and retry."""
    with contextlib.suppress(OSError):
        if remove and path is not None:
            os.unlink(path)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
