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
    d = parse_digest("sha256:" + hashlib.sha256(orphan).hexdigest())

    async def body():
        yield orphan

    await store.uploads.put_whole("units/app", d, body())  # pushed, never named by a manifest

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
