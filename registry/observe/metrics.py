"""Prometheus metrics: cheap recording on the hot path, exposition through prometheus-client.

Recording is a dict update keyed by the label values (about 0.2 us), not prometheus-client's
locked child objects (2-5 us each): a manifest GET records a request and three storage calls,
so the difference is a few percent of its CPU. At scrape time :class:`Collector` hands the
values to prometheus-client, which writes the exposition format (text or OpenMetrics).

With ``http.workers > 1`` each worker answers its values on a unix socket
(:func:`serve_snapshots`); the process serving ``http.debug.addr`` asks every worker at scrape
time and sums (:func:`gather`), so one scrape sees the whole registry.

Names follow Prometheus conventions (base units, ``_total`` for counters, ``_seconds`` and
``_bytes``); storage and notification metrics keep distribution's names where it has them
(``registry_storage_action_seconds{driver,action}``, ``registry_notifications_pending``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Labels = tuple[str, ...]

#: request and storage latencies: 0.5 ms .. 60 s
#: recorded values a histogram keeps per label set before counting them into its buckets
#: (where the recording code checks; the hot paths do not, see FOLD_INTERVAL)
FOLD_AT = 1024
#: seconds between two countings of every appended value by a serving process
#: (:func:`fold_periodically`): the hot paths append without a length check (~200 CPU
#: instructions each, six per manifest GET), so their lists hold at most this long's values
FOLD_INTERVAL = 10.0

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.values: dict[Labels, Any] = {}

    def snapshot(self) -> list[list[Any]]:
        return [[list(k), v] for k, v in list(self.values.items())]

    def merge(self, samples: list[list[Any]]) -> None:
        for labels, value in samples:
            key = tuple(labels)
            self.values[key] = self._add(self.values.get(key), value)

    def _add(self, a: Any, b: Any) -> Any:
        return b if a is None else a + b

    def clear(self) -> None:
        self.values.clear()


class Counter(Metric):
    """Hot paths either add to :attr:`values` (a dict update) or append to a :meth:`tally` list
    (a label value, counting one) or an :meth:`amounts` list (a number to add). An append is one
    C call where building and hashing a label tuple and two dict operations cost a manifest GET
    ~1,500 more CPU instructions per count; appended values are counted when the values are read
    and every :data:`FOLD_INTERVAL` seconds in a serving process."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        self._counts: dict[Labels, Any] = {}
        #: labels but the last -> last label values appended, not yet counted (see :meth:`tally`)
        self._tallies: dict[Labels, list[str]] = {}
        #: labels -> amounts appended, not yet added (see :meth:`amounts`)
        self._amounts: dict[Labels, list[float]] = {}
        super().__init__(name, help, labelnames)

    @property  # type: ignore[override]
    def values(self) -> dict[Labels, Any]:
        """The counts, every tallied value included."""
        for prefix, tally in list(self._tallies.items()):
            if tally:
                self.fold_tally(prefix)
        for labels, amounts in list(self._amounts.items()):
            if amounts:
                self.fold_amounts(labels)
        return self._counts

    @values.setter
    def values(self, new: dict[Labels, Any]) -> None:
        self._counts = new

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        values = self._counts
        values[labels] = values.get(labels, 0) + amount

    def tally(self, prefix: Labels) -> list[str]:
        """The list a hot path appends a last label value to: each counts one for ``prefix +
        (value,)``. The list is never replaced."""
        return self._tallies.setdefault(prefix, [])

    def fold_tally(self, prefix: Labels) -> None:
        tally = self._tallies[prefix]
        counted = collections.Counter(tally)
        tally.clear()
        values = self._counts
        for last, n in counted.items():
            key = (*prefix, last)
            values[key] = values.get(key, 0) + n

    def amounts(self, labels: Labels) -> list[float]:
        """The list a hot path appends amounts to add to ``labels`` to: one C call instead of a
        label-tuple hash and two dict operations. The list is never replaced."""
        return self._amounts.setdefault(labels, [])

    def fold_amounts(self, labels: Labels) -> None:
        amounts = self._amounts[labels]
        total = sum(amounts)
        amounts.clear()
        self._counts[labels] = self._counts.get(labels, 0) + total

    def clear(self) -> None:
        self._counts.clear()
        for pending in (*self._tallies.values(), *self._amounts.values()):
            pending.clear()  # in place: hot paths keep appending to these lists


class Gauge(Metric):
    """A value that goes up and down; summed over workers."""

    kind = "gauge"

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def dec(self, labels: Labels = (), amount: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) - amount

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def remove(self, labels: Labels) -> None:
        self.values.pop(labels, None)


class Histogram(Metric):
    """Per label set: one count per bucket (not cumulative), then the sum.

    Hot paths record raw values: :meth:`samples` is a label set's list of values not yet counted,
    and recording is one ``append`` (a bisection and three item updates per value cost a driver
    call about 2,000 more CPU instructions). The list is folded into the counts (one sort, one
    bisection per bucket) when the values are read, every :data:`FOLD_INTERVAL` seconds in a
    serving process, and by :meth:`observe` when it reaches :data:`FOLD_AT`, so it stays bounded
    without a scrape. The lists are never replaced (hot paths hold them)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self._series: dict[Labels, list[Any]] = {}
        #: label set -> its values not yet counted (see :meth:`samples`)
        self.pending: dict[Labels, list[float]] = {}
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(buckets))

    @property  # type: ignore[override]
    def values(self) -> dict[Labels, list[Any]]:
        """The counts and sums, every recorded value included."""
        for labels, pending in list(self.pending.items()):
            if pending:
                self.fold(labels)
        return self._series

    @values.setter
    def values(self, new: dict[Labels, list[Any]]) -> None:
        self._series = new

    def samples(self, labels: Labels) -> list[float]:
        """The list a hot path appends ``labels``' values to."""
        return self.pending.setdefault(labels, [])

    def observe(self, labels: Labels, value: float) -> None:
        pending = self.pending.get(labels) or self.samples(labels)
        pending.append(value)
        if len(pending) >= FOLD_AT:
            self.fold(labels)

    def fold(self, labels: Labels) -> None:
        """Count ``labels``' recorded values into their buckets and sum."""
        pending = self.pending[labels]
        ordered = sorted(pending)
        pending.clear()
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0] * (len(self.buckets) + 1) + [0.0]
        below = 0
        for i, bound in enumerate(self.buckets):  # values <= bound (Prometheus' le)
            upto = bisect_right(ordered, bound)
            series[i] += upto - below
            below = upto
        series[len(self.buckets)] += len(ordered) - below
        series[-1] += math.fsum(ordered)

    def clear(self) -> None:
        self._series.clear()
        for pending in self.pending.values():
            pending.clear()  # in place: hot paths keep appending to these lists

    def snapshot(self) -> list[list[Any]]:
        return [[list(k), list(v)] for k, v in list(self.values.items())]

    def _add(self, a: Any, b: Any) -> Any:
        return list(b) if a is None else [x + y for x, y in zip(a, b)]


class DerivedCount(Counter):
    """A counter read off a histogram's counts at exposition (``registry_http_requests_total`` from
    the latency histogram): the request path records one sample, not two."""

    def __init__(self, name: str, help: str, source: Histogram) -> None:
        self.source = source
        super().__init__(name, help, source.labelnames)

    @property  # type: ignore[override]
    def values(self) -> dict[Labels, Any]:
        return {k: sum(v[:-1]) for k, v in list(self.source.values.items())}

    @values.setter
    def values(self, _: Any) -> None:
        pass

    def snapshot(self) -> list[list[Any]]:
        return []  # derived again from the (merged) histogram

    def merge(self, samples: list[list[Any]]) -> None:
        pass

    def clear(self) -> None:
        pass

    def inc(self, labels: Labels = (), amount: float = 1) -> None:
        raise TypeError(f"{self.name} is derived from {self.source.name}")


class Metrics:
    """Every metric the registry records, in one place (the docs list them from here)."""

    def __init__(self) -> None:
        self.all: list[Metric] = []
        m = self._add
        # HTTP (recorded once per request, after the response is sent)
        self.http_duration = m(Histogram("registry_http_request_duration_seconds",
                                         "Time from the request's arrival to the end of its response",
                                         ("route", "method", "code")))
        self.http_requests = m(DerivedCount("registry_http_requests_total",
                                            "HTTP requests by route, method and status code", self.http_duration))
        self.http_received = m(Counter("registry_http_request_bytes_total", "Request body bytes received", ("route",)))
        self.http_sent = m(Counter("registry_http_response_bytes_total", "Response body bytes sent", ("route",)))
        # storage driver calls (the MeteredDriver decorator)
        self.storage_seconds = m(Histogram("registry_storage_action_seconds",
                                           "Storage driver calls by driver and operation, with their latency",
                                           ("driver", "action")))
        self.storage_errors = m(Counter("registry_storage_errors_total",
                                        "Storage driver calls that raised, by driver, operation and error",
                                        ("driver", "action", "error")))
        self.storage_bytes = m(Counter("registry_storage_bytes_total",
                                       "Bytes written to and read from the storage driver",
                                       ("driver", "direction")))
        # registry operations
        self.uploads_in_progress = m(Gauge("registry_uploads_in_progress",
                                           "Blob upload requests (POST, PATCH, PUT with data) transferring now"))
        self.pushes = m(Counter("registry_pushes_total", "Completed pushes by kind (manifest, blob) and media type",
                                ("kind", "media_type")))
        self.pulls = m(Counter("registry_pulls_total", "Pulls (GET) by kind (manifest, blob) and media type",
                               ("kind", "media_type")))
        self.auth_failures = m(Counter("registry_auth_failures_total", "Refused authentications by reason",
                                       ("reason",)))
        # health
        self.health_status = m(Gauge("registry_health_check_up", "1 while a health check passes, 0 while it fails",
                                     ("check",)))
        # notifications
        self.notifications_events = m(Counter(
            "registry_notifications_events_total",
            "Notification events per endpoint: queued, delivered, dropped", ("endpoint", "outcome")))
        self.notifications_dropped = m(Counter(
            "registry_notifications_dropped_total",
            "Notification events dropped per endpoint and reason (queue full, too old, rejected, enqueue failed)",
            ("endpoint", "reason")))
        self.notifications_pending = m(Gauge("registry_notifications_pending",
                                             "Events waiting in an endpoint's outbox", ("endpoint",)))
        self.notifications_status = m(Counter("registry_notifications_status_total",
                                              "Delivery attempts per endpoint by HTTP status (or 'error')",
                                              ("endpoint", "code")))
        self.notifications_seconds = m(Histogram("registry_notifications_delivery_seconds",
                                                 "Time a delivery attempt took", ("endpoint",)))
        # garbage collection (registry/lifecycle records these)
        self.gc_runs = m(Counter("registry_gc_runs_total", "Garbage collection runs by outcome", ("outcome",)))
        self.gc_freed = m(Counter("registry_gc_freed_bytes_total", "Bytes of blob data garbage collection deleted"))

    def _add(self, metric: Any) -> Any:
        self.all.append(metric)
        return metric

    def by_name(self, name: str) -> Metric:
        return next(m for m in self.all if m.name == name)

    def fold(self) -> None:
        """Count every value the hot paths appended (reading a metric's values folds them)."""
        for metric in self.all:
            metric.values  # noqa: B018 - the property folds

    async def fold_periodically(self, interval: float = FOLD_INTERVAL) -> None:
        """:meth:`fold` every ``interval`` seconds (a serving process runs it while it serves)."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.fold()
            except Exception:  # noqa: BLE001 - counting must not stop because one value was odd
                log.exception("counting the recorded metric values failed")

    def snapshot(self) -> dict[str, list[list[Any]]]:
        return {m.name: m.snapshot() for m in self.all if m.values}

    def merged(self, snapshots: Iterable[dict[str, list[list[Any]]]]) -> "Metrics":
        """A new :class:`Metrics` holding the sums of this one and ``snapshots``."""
        out = Metrics()
        for source in [self.snapshot(), *snapshots]:
            for metric in out.all:
                samples = source.get(metric.name)
                if samples:
                    metric.merge(samples)
        return out

    def reset(self) -> None:
        for metric in self.all:
            metric.clear()


#: the process's metrics; recording is always on (cheap), exposition only when configured
METRICS = Metrics()


# --------------------------------------------------------------------------- exposition


class Collector:
    """A prometheus-client collector over :class:`Metrics` (this process's, or every worker's)."""

    def __init__(self, source: Callable[[], Metrics]) -> None:
        self.source = source

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        for metric in self.source().all:
            labels = list(metric.labelnames)
            if isinstance(metric, Histogram):
                family = HistogramMetricFamily(metric.name, metric.help, labels=labels)
                for key, series in sorted(metric.values.items(), key=lambda kv: [str(x) for x in kv[0]]):
                    cumulative, buckets = 0, []
                    for bound, count in zip(metric.buckets, series):
                        cumulative += count
                        buckets.append((_float_text(bound), cumulative))
                    cumulative += series[len(metric.buckets)]
                    buckets.append(("+Inf", cumulative))
                    family.add_metric([str(x) for x in key], buckets, series[-1])
            elif isinstance(metric, Counter):
                family = CounterMetricFamily(metric.name, metric.help, labels=labels)
                for key, value in sorted(metric.values.items(), key=lambda kv: [str(x) for x in kv[0]]):
                    family.add_metric([str(x) for x in key], value)
            else:
                family = GaugeMetricFamily(metric.name, metric.help, labels=labels)
                for key, value in sorted(metric.values.items(), key=lambda kv: [str(x) for x in kv[0]]):
                    family.add_metric([str(x) for x in key], value)
            yield family


def _float_text(value: float) -> str:
    text = repr(float(value))
    return text


def exposition(metrics: Metrics, accept: str | None) -> tuple[bytes, str]:
    """The metrics in the format ``accept`` asks for (OpenMetrics or Prometheus text)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(lambda: metrics))  # type: ignore[arg-type]
    _register_process_collectors(registry)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def _register_process_collectors(registry: Any) -> None:
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        with contextlib.suppress(Exception):
            registry.register(collector)


# --------------------------------------------------------------------------- several workers


def snapshot_dir_for(workers: int) -> str | None:
    """A fresh directory for the workers' snapshot sockets (None with one worker)."""
    if workers <= 1:
        return None
    import tempfile

    return tempfile.mkdtemp(prefix="registry-metrics-")


async def serve_snapshots(directory: str) -> Any:
    """Answer this process's snapshot (JSON) to every connection on ``<dir>/<pid>.sock``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(METRICS.snapshot(), separators=(",", ":")).encode())
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    path = os.path.join(directory, f"{os.getpid()}.sock")
    return await asyncio.start_unix_server(answer, path=path)


async def gather(directory: str | None, timeout: float = 5.0) -> Metrics:
    """This process's metrics plus every other worker's (asked over their sockets), summed."""
    if directory is None:
        return METRICS
    own = f"{os.getpid()}.sock"

    async def ask(path: Path) -> dict[str, Any] | None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
            try:
                data = await asyncio.wait_for(reader.read(), timeout)
            finally:
                writer.close()
            return json.loads(data)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            log.debug("metrics: worker socket %s did not answer: %s", path.name, exc)
            return None

    paths = [p for p in Path(directory).glob("*.sock") if p.name != own]
    answers = await asyncio.gather(*(ask(p) for p in paths))
    return METRICS.merged(a for a in answers if a)
