"""The lifecycle inside a serving registry: the write barrier, the heartbeat, the GC schedule.

:func:`lifecycle_context` is the one hook :func:`registry.app.create_app` adds. Once the store is
built it plugs a :class:`~registry.lifecycle.barrier.Barrier` into it (so a collection running
anywhere on the storage never deletes what this instance's pushes use), starts the heartbeat that
tells ``registry garbage-collect`` the storage is in use, and, with ``storage.maintenance.gc.enabled``,
runs the online collector every ``interval``. With several instances (or ``http.workers``) each
one tries; the lease lets one run at a time, and an instance skips its turn when the last
collection on the storage finished less than an interval ago. A read-only registry does none of
this: it cannot push, and it is how distribution's offline collection is run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
from typing import Any

from aiohttp import web

from drivers.base import PathNotFound, StorageError

from ..config import Config
from ..store import Store, paths
from .barrier import Barrier
from .collector import GCOptions, collect
from .instances import Heartbeat
from .lease import LeaseHeld
from .progress import Progress
from .settings import LifecycleSettings, from_config

log = logging.getLogger(__name__)


def lifecycle_context(config: Config, store_key: Any) -> Any:
    async def ctx(app: web.Application) -> Any:
        store: Store = app[store_key]
        settings = from_config(config)
        heartbeat: Heartbeat | None = None
        task: asyncio.Task[None] | None = None
        if not config.storage.readonly:
            heartbeat = Heartbeat(store.driver)
            store.set_barrier(Barrier(store.driver, refresh=settings.gc.refresh, heartbeat=heartbeat))
            await heartbeat.start()
            if settings.gc.enabled:
                task = asyncio.create_task(run_schedule(store, settings))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if heartbeat is not None:
            await heartbeat.stop()

    return ctx


def scheduled_options(settings: LifecycleSettings) -> GCOptions:
    gc = settings.gc
    return GCOptions(
        dry_run=gc.dryrun, delete_untagged=gc.deleteuntagged, online=True, grace=gc.grace, refresh=gc.refresh, lease_ttl=gc.leasettl,
        retention=settings.retention if gc.retention and settings.retention.rules else None,
        immutability=settings.immutability,
    )  # fmt: skip


async def run_schedule(store: Store, settings: LifecycleSettings) -> None:
    """Collect every ``interval`` (jittered), the first time within ``min(interval, 5m)``."""
    interval = settings.gc.interval
    delay = min(interval, 300.0) * random.uniform(0.5, 1.0)
    while True:
        await asyncio.sleep(delay)
        delay = interval * random.uniform(0.9, 1.1)
        try:
            if await _ran_recently(store, interval * 0.9):
                continue
            summary = await collect(store, scheduled_options(settings), Progress())
        except LeaseHeld as exc:
            log.info("garbage collection: skipped, %s", exc)
            continue
        except Exception:  # a storage hiccup must not end the schedule
            log.exception("garbage collection failed")
            continue
        for line in summary.lines():
            log.info("%s", line.strip())


async def _ran_recently(store: Store, seconds: float) -> bool:
    try:
        record = json.loads(await store.driver.get_content(paths.gc_last_run()))
        finished = dt.datetime.fromisoformat(str(record["finished"]))
    except (PathNotFound, StorageError, ValueError, KeyError, TypeError):
        return False
    return (dt.datetime.now(dt.timezone.utc) - finished).total_seconds() < seconds
