"""The durable outbox: each endpoint's pending events as files in the storage, through the driver.

Layout (registry/store/paths.py): ``_events/<endpoint>/queue/<segment>`` holds one batch of
events as JSON lines; a segment's name is ``<unix ns>-<writer>-<seq>-<count>``, so listing the
directory gives the queue in time order and its length without reading a file. Segments are
written whole (``put_content`` is atomic on every driver) and deleted once delivered: a file
that appears late (another instance, a clock a little behind) is delivered later, never skipped.

Which instance delivers an endpoint is decided by a lease file (``_events/<endpoint>/lease``:
owner and expiry). The driver contract has no compare-and-swap, so a lease is taken by writing
it, waiting a moment and reading it back: of two instances racing, the last writer keeps it and
the other backs off. The holder renews it well before it expires and checks it before every
delivery; in the rare race where two instances both deliver for a moment, a batch can arrive
twice -- at-least-once, with the same event ids.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from drivers.base import PathNotFound, StorageDriver

from ..store import paths

LEASE_TTL = 15.0
LEASE_SETTLE = 0.3


@dataclass(frozen=True)
class Segment:
    name: str
    created_ns: int
    count: int

    @classmethod
    def parse(cls, name: str) -> "Segment | None":
        parts = name.split("-")
        if len(parts) != 4 or not parts[0].isdigit() or not parts[3].isdigit():
            return None
        return cls(name, int(parts[0]), int(parts[3]))

    @property
    def age(self) -> float:
        return time.time() - self.created_ns / 1e9


class Outbox:
    """One endpoint's queue in the storage."""

    def __init__(self, driver: StorageDriver, key: str, writer_id: str) -> None:
        self.driver = driver
        self.key = key
        self.writer_id = writer_id
        self._seq = itertools.count(1)

    async def append(self, events: list[dict[str, Any]]) -> Segment:
        name = f"{time.time_ns():019d}-{self.writer_id}-{next(self._seq):08d}-{len(events)}"
        body = "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in events)
        await self.driver.put_content(paths.events_segment(self.key, name), body.encode())
        return Segment(name, int(name.split("-")[0]), len(events))

    async def segments(self) -> list[Segment]:
        try:
            entries = await self.driver.list(paths.events_queue_dir(self.key))
        except PathNotFound:
            return []
        found = (Segment.parse(paths.leaf(e)) for e in entries)
        return sorted((s for s in found if s is not None), key=lambda s: s.name)

    async def read(self, segment: Segment) -> list[dict[str, Any]]:
        data = await self.driver.get_content(paths.events_segment(self.key, segment.name))
        events = []
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a damaged line is skipped, the rest delivered
        return events

    async def remove(self, segment: Segment) -> None:
        try:
            await self.driver.delete(paths.events_segment(self.key, segment.name))
        except PathNotFound:
            pass


class Lease:
    """Who delivers an endpoint now; see the module docstring."""

    def __init__(self, driver: StorageDriver, key: str, owner: str, ttl: float = LEASE_TTL) -> None:
        self.driver = driver
        self.path = paths.events_lease(key)
        self.owner = owner
        self.ttl = ttl
        self.renewed = 0.0

    async def _read(self) -> dict[str, Any] | None:
        try:
            raw = json.loads(await self.driver.get_content(self.path))
            return raw if isinstance(raw, dict) else None
        except PathNotFound:
            return None
        except ValueError:
            return None

    async def _write(self) -> None:
        body = {"owner": self.owner, "expires": time.time() + self.ttl, "pid": os.getpid()}
        await self.driver.put_content(self.path, json.dumps(body).encode())
        self.renewed = time.monotonic()

    async def acquire(self) -> bool:
        """Take the lease when it is free, expired or ours; True when we hold it afterwards."""
        current = await self._read()
        if current is not None and current.get("owner") != self.owner and float(current.get("expires", 0)) > time.time():
            return False
        await self._write()
        await asyncio.sleep(LEASE_SETTLE)
        after = await self._read()
        return after is not None and after.get("owner") == self.owner

    async def keep(self) -> bool:
        """Before a delivery: still ours? renewed when a third of its life has passed."""
        if time.monotonic() - self.renewed < self.ttl / 3:
            return True
        current = await self._read()
        if current is not None and current.get("owner") != self.owner:
            return False
        await self._write()
        return True

    async def release(self) -> None:
        current = await self._read()
        if current is not None and current.get("owner") == self.owner:
            try:
                await self.driver.delete(self.path)
            except PathNotFound:
                pass
