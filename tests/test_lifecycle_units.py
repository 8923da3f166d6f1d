"""The lease and the write barrier on their own (in-process, on a real driver): who wins the lease,
expiry and take-over, a lost lease stops the holder, and both orders of a claim and a doomed batch."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from drivers.filesystem import FilesystemDriver
from registry.lifecycle import barrier as barriers
from registry.lifecycle import lease as leases
from registry.lifecycle.lease import Lease, LeaseHeld, LeaseLost
from drivers.base import PathNotFound
from registry.reference import parse_digest
from registry.store import paths


@pytest.fixture
async def driver(tmp_path: Path):
    d = FilesystemDriver(str(tmp_path / "root"))
    yield d
    await d.close()


async def test_one_lease_per_storage_and_expiry(driver: FilesystemDriver) -> None:
    first = await Lease.acquire(driver, online=True, ttl=3)
    with pytest.raises(LeaseHeld) as held:
        await Lease.acquire(driver, online=True, ttl=3)
    assert held.value.holder.run == first.run and "another garbage collection is running" in str(held.value)
    first.check()
    await first.release()
    assert await leases.read(driver) is None
    second = await Lease.acquire(driver, online=True, ttl=3)
    # a crashed holder: its lease is written as expired long ago; the next collector takes over
    stale = dataclasses_replace(second.info, expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
    second._task.cancel()
    await driver.put_content(paths.gc_lease(), stale.to_json())
    third = await Lease.acquire(driver, online=True, ttl=3)
    assert third.run != second.run
    with pytest.raises(LeaseLost):  # the old holder learns at its next renewal that it lost
        await second.renew()
    await third.release()


async def push_blob(store, data: bytes):  # type: ignore[no-untyped-def]
    """``data`` pushed whole into units/app (named by no manifest); its digest."""
    d = parse_digest("sha256:" + hashlib.sha256(data).hexdigest())

    async def body():
        yield data

    await store.uploads.put_whole("units/app", d, body())
    return d


def dataclasses_replace(info: leases.LeaseInfo, **changes: object) -> leases.LeaseInfo:
    import dataclasses

    return dataclasses.replace(info, **changes)


async def test_racing_collectors_never_both_win(driver: FilesystemDriver) -> None:
    results = await asyncio.gather(*(Lease.acquire(driver, online=False, ttl=3) for _ in range(4)),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, Lease)]
    assert len(won) <= 1 and all(isinstance(r, (Lease, LeaseHeld)) for r in results), results
    for lease in won:
        await lease.release()


async def test_lease_not_trusted_past_its_safety_margin(driver: FilesystemDriver) -> None:
    lease = await Lease.acquire(driver, online=True, ttl=3)
    lease._task.cancel()  # renewals stop (a stalled process)
    await asyncio.sleep(3 - lease.safety + 0.2)
    with pytest.raises(LeaseLost):
        lease.check()
    await lease.release()


async def test_claim_before_doom_keeps_and_doom_before_claim_waits(driver: FilesystemDriver) -> None:
    lease = await Lease.acquire(driver, online=True, ttl=30)
    run = lease.run
    barrier = barriers.Barrier(driver, refresh=1.0)
    # 1. the claim comes first: the collector, listing claims after writing its batch, sees it
    await barrier.claim(["sha256:" + "a" * 64])
    claimed = {paths.leaf(p) for p in await driver.list(paths.gc_claims_dir(run))}
    assert barriers.claim_key_file("sha256:" + "a" * 64) in claimed
    # 2. the batch comes first: a claim of one of its keys waits until the collector resolves it
    doomed = paths.gc_doomed_batch(run, 1)
    key = "sha256:" + "b" * 64
    await driver.put_content(doomed, json.dumps([key]).encode())
    waiting = asyncio.create_task(barrier.claim([key]))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "a claim of a doomed key must wait for the collector's decision"
    await driver.delete(doomed)
    claim = await asyncio.wait_for(waiting, 5)
    assert claim.waited and claim.run == run
    # other keys never wait
    await driver.put_content(doomed, json.dumps([key]).encode())
    other = await asyncio.wait_for(barrier.claim(["sha256:" + "c" * 64]), 5)
    assert not other.waited
    await driver.delete(doomed)
    await lease.release()
    # without a lease a claim writes nothing
    barrier._lease_read_at = -1e9
    idle = await barrier.claim(["sha256:" + "d" * 64])
    assert idle.run is None and await idle.confirm()


async def test_a_dead_collectors_doomed_batch_stops_blocking_when_its_lease_expires(driver: FilesystemDriver) -> None:
    lease = await Lease.acquire(driver, online=True, ttl=3)
    lease._task.cancel()
    key = "sha256:" + "e" * 64
    await driver.put_content(paths.gc_doomed_batch(lease.run, 1), json.dumps([key]).encode())
    barrier = barriers.Barrier(driver, refresh=1.0)
    claim = await asyncio.wait_for(barrier.claim([key]), 3 + leases.SKEW + 10)
    assert claim.waited


async def test_every_run_is_counted_by_outcome_and_freed_bytes(driver: FilesystemDriver) -> None:
    """``registry_gc_runs_total{outcome}`` and ``registry_gc_freed_bytes_total`` (registry/observe)."""
    from registry.lifecycle import GCOptions, collect
    from registry.observe.metrics import METRICS
    from registry.store import Store

    store = Store(driver, secret="units")
    orphan = b"no manifest names this blob" * 4
    d = await push_blob(store, orphan)  # pushed, never named by a manifest

    def runs(outcome: str) -> float:
        return METRICS.gc_runs.values.get((outcome,), 0)

    before = {o: runs(o) for o in ("completed", "dry-run", "skipped", "failed")}
    freed = METRICS.gc_freed.values.get((), 0)
    dry = await collect(store, GCOptions(dry_run=True))
    assert dry.blobs_deleted == 1 and runs("dry-run") == before["dry-run"] + 1
    assert METRICS.gc_freed.values.get((), 0) == freed  # a dry run frees nothing
    held = await Lease.acquire(driver, online=False, ttl=3)
    with pytest.raises(LeaseHeld):
        await collect(store, GCOptions())
    assert runs("skipped") == before["skipped"] + 1
    await held.release()
    done = await collect(store, GCOptions())
    assert done.blobs_deleted == 1 and runs("completed") == before["completed"] + 1
    assert METRICS.gc_freed.values.get((), 0) == freed + len(orphan)
    assert runs("failed") == before["failed"]


class _Phases:
    """A Progress that records its phases."""

    def __init__(self) -> None:
        self.phases: list[str] = []

    def phase(self, name: str, total: int | None = None) -> None:
        self.phases.append(name)

    def advance(self, n: int = 1) -> None:
        pass

    def note(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass


async def test_online_collection_starts_at_once_when_no_instance_is_live(driver: FilesystemDriver) -> None:
    """No live heartbeat: the scan starts without the barrier wait (a wait of an hour would hang
    this test); a live one: the collector waits for it to see the lease."""
    from registry.lifecycle import GCOptions
    from registry.lifecycle.collector import Collector
    from registry.lifecycle.instances import Heartbeat
    from registry.store import Store

    store = Store(driver, secret="units")
    orphan = b"an orphan the early run frees" * 3
    d = await push_blob(store, orphan)
    options = GCOptions(online=True, grace=0, refresh=0, barrier_wait=3600)
    progress = _Phases()
    collector = Collector(store, options, progress)  # type: ignore[arg-type]
    summary = await asyncio.wait_for(collector.run(), 60)
    assert not collector.waited_for_instances and summary.blobs_deleted == 1
    assert not any(p.startswith("waiting for registry instances") for p in progress.phases)

    await push_blob(store, orphan)  # pushed again: the storage is in use
    heartbeat = Heartbeat(driver)
    await heartbeat.ensure_visible(0)  # a serving instance: now it must see the lease first
    waiting = Collector(store, GCOptions(online=True, grace=0, refresh=0, barrier_wait=0.2), _Phases())
    await waiting.run()
    assert waiting.waited_for_instances


async def test_a_claim_makes_its_instance_live_before_it_observes_no_collection(driver: FilesystemDriver) -> None:
    """The safety of the early start: an instance whose claim observed "no collection" is listed
    as live by any collector that takes its lease afterwards, so that collector waits (and a use
    relying on the observation ends before the scan, or confirms after it); a push racing the
    collection then keeps its blob."""
    from registry.lifecycle import GCOptions
    from registry.lifecycle.collector import Collector
    from registry.lifecycle.instances import Heartbeat, live_instances
    from registry.store import Store

    store = Store(driver, secret="units")
    layer = b"a layer a racing push names" * 5
    d = await push_blob(store, layer)  # on the storage, named by nothing yet
    assert await live_instances(driver) == []
    heartbeat = Heartbeat(driver)  # never started: only the claim writes it
    barrier = barriers.Barrier(driver, refresh=15, heartbeat=heartbeat)
    claim = await barrier.claim([str(d)])
    assert claim.run is None  # no collection seen ...
    assert await live_instances(driver) == [heartbeat.id]  # ... and seen as live before that
    again = await barrier.claim([str(d)])  # fresh: no second write
    assert again.run is None and await live_instances(driver) == [heartbeat.id]

    # the collection starts while the use (a manifest naming the layer) is in flight: it waits
    progress = _Phases()
    collector = Collector(store, GCOptions(online=True, grace=0, refresh=0, barrier_wait=1.5), progress)  # type: ignore[arg-type]
    run = asyncio.create_task(collector.run())
    await asyncio.sleep(0.3)  # the use ends within the margin of its claim
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = await push_blob(store, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(cd), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": str(d), "size": len(layer)}],
    }).encode()  # fmt: skip
    from registry import manifests as mf

    await store.manifests.put("units/app", mf.parse_manifest(manifest, "application/vnd.oci.image.manifest.v1+json"),
                              ["v1"])
    assert await claim.confirm()
    summary = await run
    assert collector.waited_for_instances
    assert summary.blobs_deleted == 0
    assert await store.blobs.stat_data(d) is not None


async def test_a_collector_that_loses_the_lease_while_it_scans_changes_nothing(driver: FilesystemDriver) -> None:
    """The scan overlaps the lease's settle wait: of two collectors that both found no lease and
    both wrote theirs, the later writer wins; the other scanned, but deletes, records and cleans
    up nothing, and leaves the winner's lease alone."""
    from registry.lifecycle import GCOptions
    from registry.lifecycle.collector import Collector
    from registry.store import Store

    store = Store(driver, secret="units")
    orphan = b"one of two racing collectors frees this" * 3
    d = await push_blob(store, orphan)
    first = Collector(store, GCOptions(), _Phases())  # type: ignore[arg-type]
    second = Collector(store, GCOptions(), _Phases())  # type: ignore[arg-type]
    real_write = Lease.write
    written: list[Lease] = []

    async def write_then_let_the_other_write(*args, **kwargs):
        lease = await real_write(*args, **kwargs)
        written.append(lease)
        if len(written) == 1:  # the first one scans while the second one overwrites its lease
            await driver.delete(paths.gc_lease())
        return lease

    Lease.write = write_then_let_the_other_write  # type: ignore[method-assign]
    try:
        task = asyncio.ensure_future(first.run())
        while not written:
            await asyncio.sleep(0.01)
        won = await second.run()
        with pytest.raises(LeaseHeld):
            await task
    finally:
        Lease.write = real_write  # type: ignore[method-assign]
    assert won.blobs_deleted == 1 and first.summary.blobs_deleted == 0
    last = json.loads(await driver.get_content(paths.gc_last_run()))
    assert last["run"] == won.run != first.summary.run
    with pytest.raises(PathNotFound):
        await driver.get_content(paths.gc_lease())  # the winner released it; the loser touched nothing
