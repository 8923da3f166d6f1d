"""Heartbeats of serving registry instances, so the collector knows when the storage is in use.

Each instance that can write (not ``storage.maintenance.readonly``) rewrites a small file under
:func:`registry.store.paths.instances_dir` every :data:`INTERVAL` seconds and removes it when it
stops. A heartbeat younger than :data:`STALE` means a live instance: ``registry garbage-collect``
then runs online unless told ``--offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid

from drivers.base import PathNotFound, StorageDriver, StorageError

from .. import __version__
from ..store import paths

log = logging.getLogger(__name__)

INTERVAL = 60.0
STALE = 3 * INTERVAL
#: how long after its write an instance counts on its heartbeat being seen as live by a collector
#: (a minute short of STALE: room for clock skew between the instance, the storage and the collector)
VISIBLE = STALE - INTERVAL
#: seconds between looks at an empty storage for its first repository
EMPTY_POLL = 5.0


class Heartbeat:
    def __init__(self, driver: StorageDriver, interval: float = INTERVAL) -> None:
        self.driver = driver
        self.interval = interval
        self.id = f"{socket.gethostname()[:60]}-{os.getpid()}-{uuid.uuid4().hex[:8]}".replace("_", "-")
        self._task: asyncio.Task[None] | None = None
        self._written = False
        #: monotonic time of the last successful write (-inf: none yet)
        self._written_at = float("-inf")
        self._write_lock = asyncio.Lock()
        self._body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "version": __version__,
                                 "started": dt.datetime.now(dt.timezone.utc).isoformat()}).encode()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                if await self._storage_in_use():
                    await self._write()
            except StorageError as exc:
                log.warning("cannot write the instance heartbeat: %s", exc)
            await asyncio.sleep(self.interval if self._written else EMPTY_POLL)

    async def _write(self) -> None:
        async with self._write_lock:
            started = time.monotonic()
            await self.driver.put_content(paths.instance_heartbeat(_safe(self.id)), self._body)
            self._written = True
            self._written_at = max(self._written_at, started)

    async def ensure_visible(self, within: float) -> None:
        """Make sure a collector listing instances during the next ``within`` seconds sees this
        one (written if the last write is too old to count on; raises StorageError when it
        cannot be written). Nothing on a storage with no repository yet: it holds nothing a use
        could rely on. :class:`~registry.lifecycle.barrier.Barrier` calls this before each lease
        observation, so a collector that finds no live instance may skip its barrier wait."""
        if time.monotonic() + within < self._written_at + VISIBLE:
            return
        if await self._storage_in_use():
            await self._write()

    async def _storage_in_use(self) -> bool:
        """A new, empty storage gets no heartbeat (a registry writes nothing before the first
        push); once anything is under repositories/, it does (looked at every EMPTY_POLL s)."""
        if self._written:
            return True
        try:
            return bool(await self.driver.list(paths.REPOSITORIES))
        except PathNotFound:
            return False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._written:
            self._written_at = float("-inf")  # gone: a later claim writes it again
            with contextlib.suppress(StorageError):
                await self.driver.delete(paths.instance_heartbeat(_safe(self.id)))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in name)


async def live_instances(driver: StorageDriver, stale: float = STALE) -> list[str]:
    """Ids of instances whose heartbeat is younger than ``stale`` seconds."""
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    try:
        async for page in driver.list_files(paths.instances_dir()):
            for info in page:
                if info.modified is not None and (now - info.modified).total_seconds() < stale:
                    out.append(paths.leaf(info.path))
    except PathNotFound:
        pass
    return sorted(out)
