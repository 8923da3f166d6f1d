"""The collector's lease: one object in the storage lets one collection run at a time per storage.

The lease is a small JSON object at :func:`registry.store.paths.gc_lease` naming the run, its
owner and a wall-clock expiry; the holder renews it every ``ttl / 3``. Taking it: read it; if it
is held and not expired, give up; else write ours, wait :data:`SETTLE` and read it back: of two
collectors racing, the later writer wins and the other sees that it lost (a write takes far less
than ``SETTLE``). A collector may scan during that wait (:meth:`Lease.write`, then
:meth:`Lease.settle` before its first change to the storage). A crashed collector's lease simply expires. The holder trusts its own lease only
until ``last renewal + ttl - SAFETY`` by its own monotonic clock (others treat it as expired only
``SKEW`` after its wall-clock expiry), and stops deleting before that.

Registry instances read the same object (cached for :data:`POLL` seconds) to know that a
collection runs: that is the write barrier of :mod:`registry.lifecycle.barrier`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from drivers.base import PathNotFound, StorageDriver, StorageError

from ..store import paths

log = logging.getLogger(__name__)

#: seconds a lease lives without renewal
TTL = 30.0
#: seconds between writing a lease and reading it back to see who won
SETTLE = 0.25
#: wall-clock disagreement tolerated between hosts: a lease counts as held until expiry + SKEW
SKEW = 5.0
#: the holder stops trusting its lease this long before its own view of the expiry (at most a
#: third of the TTL)
SAFETY = 10.0
#: seconds a registry instance may keep answering from a cached read of the lease
POLL = 1.0


class LeaseHeld(Exception):
    """Another collection holds the lease."""

    def __init__(self, holder: "LeaseInfo") -> None:
        self.holder = holder
        super().__init__(f"another garbage collection is running: {holder.describe()}")


class LeaseLost(Exception):
    """Our lease expired or was taken over: stop before deleting anything more."""


@dataclasses.dataclass(frozen=True)
class LeaseInfo:
    run: str
    owner: str
    acquired: dt.datetime
    expires: dt.datetime
    #: the run's parameters registry instances need (see barrier)
    online: bool = True

    def expired(self, now: dt.datetime | None = None) -> bool:
        now = now or _now()
        return now > self.expires + dt.timedelta(seconds=SKEW)

    def describe(self) -> str:
        return f"run {self.run} by {self.owner}, since {self.acquired:%Y-%m-%d %H:%M:%S}Z"

    def to_json(self) -> bytes:
        return json.dumps(
            {"run": self.run, "owner": self.owner, "acquired": _iso(self.acquired),
             "expires": _iso(self.expires), "online": self.online},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def parse(cls, raw: bytes) -> "LeaseInfo | None":
        try:
            obj = json.loads(raw)
            return cls(
                run=str(obj["run"]), owner=str(obj["owner"]),
                acquired=_parse_iso(obj["acquired"]), expires=_parse_iso(obj["expires"]),
                online=bool(obj.get("online", True)),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def new_run_id() -> str:
    """Sortable by start time and a valid path component."""
    return f"{_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def read(driver: StorageDriver) -> LeaseInfo | None:
    """The lease as stored (expired or not); None when there is none or it is unreadable."""
    try:
        raw = await driver.get_content(paths.gc_lease())
    except PathNotFound:
        return None
    return LeaseInfo.parse(raw)


class Lease:
    """A held lease; renewed in the background until :meth:`release`."""

    def __init__(self, driver: StorageDriver, info: LeaseInfo, ttl: float) -> None:
        self.driver = driver
        self.info = info
        self.ttl = ttl
        self.safety = min(SAFETY, ttl / 3)
        self._trusted_until = time.monotonic() + ttl - self.safety
        self._lost: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._written = time.monotonic()
        self._settled = False

    @property
    def run(self) -> str:
        return self.info.run

    @classmethod
    async def acquire(cls, driver: StorageDriver, *, online: bool, ttl: float = TTL) -> "Lease":
        """Take the lease or raise :class:`LeaseHeld`."""
        lease = await cls.write(driver, online=online, ttl=ttl)
        await lease.settle()
        return lease

    @classmethod
    async def write(cls, driver: StorageDriver, *, online: bool, ttl: float = TTL) -> "Lease":
        """The first half of :meth:`acquire`: raise :class:`LeaseHeld` if another collection
        holds the lease, else write ours. It is ours only once :meth:`settle` returned: until then
        the holder may read the storage (a collector scans meanwhile) but changes nothing
        (:meth:`check` raises LeaseLost)."""
        current = await read(driver)
        if current is not None and not current.expired():
            raise LeaseHeld(current)
        if current is not None:
            log.warning("taking over the expired lease of garbage collection %s", current.describe())
        now = _now()
        mine = LeaseInfo(new_run_id(), owner_name(), now, now + dt.timedelta(seconds=ttl), online)
        started = time.monotonic()
        await driver.put_content(paths.gc_lease(), mine.to_json())
        lease = cls(driver, mine, ttl)
        lease._trusted_until = started + ttl - lease.safety
        lease._written = time.monotonic()
        return lease

    async def settle(self) -> None:
        """The second half of :meth:`acquire`: :data:`SETTLE` after the write, read the lease
        back; :class:`LeaseHeld` when another collector wrote after us (it won). Call it once."""
        remaining = self._written + SETTLE - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        back = await read(self.driver)
        if back is None or back.run != self.run:
            self._lost = "another collection took the lease"
            if back is not None:
                raise LeaseHeld(back)
            raise LeaseHeld(self.info)  # removed under us: someone else is sweeping leases; try later
        self._settled = True
        self._task = asyncio.create_task(self._renew_loop())

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is certainly still ours."""
        if self._lost is not None:
            raise LeaseLost(self._lost)
        if not self._settled:
            raise LeaseLost("the lease is not settled yet")
        if time.monotonic() > self._trusted_until:
            raise LeaseLost("the lease could not be renewed in time")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.renew()
            except LeaseLost as exc:
                self._lost = str(exc)
                log.error("garbage collection %s: %s", self.run, exc)
                return
            except StorageError as exc:  # retried at the next tick; check() stops us if it lasts
                log.warning("garbage collection %s: renewing the lease failed: %s", self.run, exc)

    async def renew(self) -> None:
        started = time.monotonic()
        if started > self._trusted_until + self.safety / 2:  # others may consider it expired soon: never clobber
            raise LeaseLost("the lease expired before it could be renewed")
        current = await read(self.driver)
        if current is None or current.run != self.run:
            raise LeaseLost(f"the lease was taken over ({current.describe() if current else 'removed'})")
        self.info = dataclasses.replace(self.info, expires=_now() + dt.timedelta(seconds=self.ttl))
        await self.driver.put_content(paths.gc_lease(), self.info.to_json())
        self._trusted_until = started + self.ttl - self.safety

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(StorageError):
            current = await read(self.driver)
            if current is not None and current.run == self.run:
                await self.driver.delete(paths.gc_lease())

    def describe(self) -> dict[str, Any]:
        return {"run": self.run, "owner": self.info.owner}
