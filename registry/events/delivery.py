"""Delivery of one endpoint's outbox: in order, at least once, with backoff and bounds.

The oldest segment is posted (as one envelope) until the endpoint accepts it (2xx or 3xx, as in
distribution), then deleted; nothing after it is sent before, so the endpoint sees events in the
order they were queued. After a failure the same segment is retried after ``backoff``; from the
``threshold``-th consecutive failure on, the wait doubles up to ``maxbackoff``. Bounds: a
segment older than ``maxage`` is dropped instead of retried; when more than ``maxevents`` wait,
the oldest are dropped; a segment the endpoint refuses as malformed (4xx other than 408/425/429)
``threshold`` times in a row is dropped. Every drop is logged with the event ids and counted in
``registry_notifications_dropped_total{endpoint,reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import aiohttp

from ..observe.metrics import METRICS
from .config import EndpointConfig
from .model import envelope
from .outbox import Lease, Outbox, Segment

log = logging.getLogger(__name__)

#: seconds between two looks at an idle queue (events of other processes and instances)
POLL_INTERVAL = 1.0
#: seconds between two attempts to take the lease while another instance holds it
LEASE_RETRY = 5.0
RETRYABLE_4XX = frozenset({408, 425, 429})


class Delivery:
    def __init__(self, endpoint: EndpointConfig, outbox: Outbox, lease: Lease) -> None:
        self.endpoint = endpoint
        self.outbox = outbox
        self.lease = lease
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.failures = 0
        self.rejections = 0

    @property
    def label(self) -> tuple[str]:
        return (self.endpoint.name,)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notifications:{self.endpoint.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.lease.release()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            try:
                if not await self.lease.acquire():
                    await self._sleep(LEASE_RETRY + random.random())
                    continue
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a storage hiccup must not end delivery
                log.exception("notifications %s: delivery loop failed; retrying", self.endpoint.name)
                await self._sleep(POLL_INTERVAL * 5)

    async def _sleep(self, seconds: float) -> None:
        self.wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    async def _drain(self) -> None:
        """Deliver while we hold the lease; returns when it is lost."""
        while await self.lease.keep():
            self.wake.clear()
            segments = await self._bounded(await self.outbox.segments())
            METRICS.notifications_pending.set(self.label, sum(s.count for s in segments))
            if not segments:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), POLL_INTERVAL)
                continue
            for segment in segments:
                if not await self.lease.keep():
                    return
                if not await self._deliver(segment):
                    break  # keep the order: retry this one before anything after it
            METRICS.notifications_pending.set(self.label, 0)

    async def _bounded(self, segments: list[Segment]) -> list[Segment]:
        """Apply ``maxage`` and ``maxevents``: drop (log, count) what is beyond them."""
        kept: list[Segment] = []
        for segment in segments:
            if segment.age > self.endpoint.maxage:
                await self._drop(segment, "expired")
            else:
                kept.append(segment)
        total = sum(s.count for s in kept)
        while kept and total > self.endpoint.maxevents:
            oldest = kept.pop(0)
            total -= oldest.count
            await self._drop(oldest, "queue_full")
        return kept

    async def _drop(self, segment: Segment, reason: str) -> None:
        try:
            events = await self.outbox.read(segment)
        except Exception:  # noqa: BLE001 - the ids are only for the log line
            events = []
        ids = [e.get("id") for e in events]
        await self.outbox.remove(segment)
        METRICS.notifications_dropped.inc((self.endpoint.name, reason), segment.count)
        METRICS.notifications_events.inc((self.endpoint.name, "dropped"), segment.count)
        log.error("notifications %s: dropped %d event(s) (%s): ids %s", self.endpoint.name, segment.count,
                  reason, ", ".join(str(i) for i in ids[:20]) + (" ..." if len(ids) > 20 else ""))

    async def _deliver(self, segment: Segment) -> bool:
        """Post one segment; True when it is done with (delivered or dropped)."""
        try:
            events = await self.outbox.read(segment)
        except Exception as exc:  # noqa: BLE001
            from drivers.base import PathNotFound

            if isinstance(exc, PathNotFound):
                return True  # delivered by another instance meanwhile
            raise
        if not events:
            await self.outbox.remove(segment)
            return True
        body, content_type = envelope(events, self.endpoint.format)
        status = await self._post(body, content_type)
        if status is not None and 200 <= status < 400:
            await self.outbox.remove(segment)
            METRICS.notifications_events.inc((self.endpoint.name, "delivered"), len(events))
            if self.failures:
                log.info("notifications %s: endpoint accepts events again", self.endpoint.name)
            self.failures = self.rejections = 0
            return True
        self.failures += 1
        if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
            self.rejections += 1
            if self.rejections >= self.endpoint.threshold:
                self.rejections = 0
                await self._drop(segment, "rejected")
                return True
        delay = self._delay()
        if self.failures == self.endpoint.threshold:
            log.warning("notifications %s: %d failures in a row; backing off (up to %gs between tries)",
                        self.endpoint.name, self.failures, self.endpoint.maxbackoff)
        await self._sleep_not_woken(delay)
        return False

    def _delay(self) -> float:
        ep = self.endpoint
        if self.failures < ep.threshold:
            return ep.backoff
        return min(ep.maxbackoff, ep.backoff * 2 ** (self.failures - ep.threshold + 1))

    async def _sleep_not_woken(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # new events must not cut a backoff short

    async def _post(self, body: bytes, content_type: str) -> int | None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers: list[tuple[str, str]] = [("Content-Type", content_type)]
        for name, values in self.endpoint.headers.items():
            headers += [(name, v) for v in values]
        started = time.perf_counter()
        try:
            async with self._session.post(self.endpoint.url, data=body, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout),
                                          allow_redirects=False) as resp:
                await resp.read()
                status: int | None = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            METRICS.notifications_status.inc((self.endpoint.name, "error"))
            if self.failures == 0:
                log.warning("notifications %s: delivery failed: %s", self.endpoint.name,
                            " ".join(str(exc).split()) or type(exc).__name__)
            status = None
        else:
            METRICS.notifications_status.inc((self.endpoint.name, str(status)))
            if not 200 <= status < 400 and self.failures == 0:
                log.warning("notifications %s: endpoint answered %d", self.endpoint.name, status)
        METRICS.notifications_seconds.observe(self.label, time.perf_counter() - started)
        return status
