"""Fencing: a holder paused past its upload lease never appends (store level, real moto and Redis).

Two "instances" are two Stores on one S3 bucket, each with its own Redis client on one Redis. The
first takes an upload's lease in a PATCH and is paused mid-body (its renewals stop, as in a
stopped process); the lease expires, the second takes over and appends; then the first wakes up.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from drivers.factory import create_driver
from registry.errors import ErrorCode, RegistryError
from registry.reference import Digest
from registry.state import StateUnavailable, open_state
from registry.state.config import RedisConfig, StateConfig
from registry.store import Store


@pytest.fixture
async def two_instances(moto_emulator, redis_server):  # type: ignore[no-untyped-def]
    from emulators import make_s3_bucket, s3_params

    params = s3_params(moto_emulator, bucket=make_s3_bucket(moto_emulator))
    prefix = f"fence{time.monotonic_ns()}:"
    made = []
    for _ in range(2):
        state = open_state(StateConfig(redis=RedisConfig(addrs=[redis_server.addr]), leasettl=1.0, lockwait=5,
                                       keyprefix=prefix))
        driver = create_driver("s3", params)
        made.append((Store(driver, secret="fence", state=state), state, driver))
    yield made
    for _, state, driver in made:
        await state.close()
        await driver.close()


def _pause(state) -> None:  # type: ignore[no-untyped-def]
    """What a stopped process looks like to Redis: its renewals no longer arrive."""

    async def silent(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StateUnavailable("paused")

    state._renew = silent


async def _paused_append(store: Store, s, first: bytes, rest: bytes, wake: asyncio.Event):  # type: ignore[no-untyped-def]
    async def body():  # type: ignore[no-untyped-def]
        yield first
        await wake.wait()
        yield rest

    return await store.uploads.append(s, body(), 0)


async def _one(data: bytes):  # type: ignore[no-untyped-def]
    yield data


@pytest.mark.parametrize("own_check", [True, False], ids=["holder-checks-its-deadline", "storage-refuses"])
async def test_paused_holder_never_appends(two_instances, own_check, monkeypatch):
    (a, a_state, a_driver), (b, _, _) = two_instances
    repo = "fence/app"
    s = await a.uploads.start(repo)
    _pause(a_state)
    if not own_check:  # the pause came right after its last check: only S3's If-Match is left
        from registry.state import Lease

        monkeypatch.setattr(Lease, "check", lambda self: None)
    wake = asyncio.Event()
    first, rest, theirs = os.urandom(300_000), os.urandom(300_000), os.urandom(500_000)
    paused = asyncio.ensure_future(_paused_append(a, s, first, rest, wake))
    await asyncio.sleep(1.8)  # past the 1 s lease: Redis let it go
    sb = await b.uploads.resume(repo, s.id, None)
    assert await b.uploads.append(sb, _one(theirs), 0) == len(theirs)
    wake.set()  # the paused holder wakes up and goes on with its PATCH
    with pytest.raises(RegistryError) as err:
        await paused
    expected = ErrorCode.UNAVAILABLE if own_check else ErrorCode.RANGE_INVALID
    assert err.value.code is expected, err.value
    status = await b.uploads.resume(repo, s.id, None)
    assert await b.uploads.status(status) == len(theirs)
    d = Digest("sha256", hashlib.sha256(theirs).hexdigest())
    info = await b.uploads.commit(status, d, None)
    assert info.size == len(theirs)
    assert await a_driver.get_content(info.path) == theirs


async def test_without_conditional_writes_a_paused_holder_would_append(two_instances, monkeypatch):
    """The control: the same pause on a store without If-Match (and no deadline check) lets the
    paused holder's close overwrite the upload. This is what the fencing prevents."""
    from registry.state import Lease

    (a, a_state, a_driver), (b, _, b_driver) = two_instances
    for driver in (a_driver, b_driver):
        driver.conditional_writes = False
    monkeypatch.setattr(Lease, "check", lambda self: None)
    repo = "fence/control"
    s = await a.uploads.start(repo)
    _pause(a_state)
    wake = asyncio.Event()
    first, rest, theirs = os.urandom(300_000), os.urandom(300_000), os.urandom(500_000)
    paused = asyncio.ensure_future(_paused_append(a, s, first, rest, wake))
    await asyncio.sleep(1.8)
    sb = await b.uploads.resume(repo, s.id, None)
    await b.uploads.append(sb, _one(theirs), 0)
    wake.set()
    assert await paused == len(first + rest)  # accepted: the stale writer overwrote the state
    status = await b.uploads.resume(repo, s.id, None)
    assert await b.uploads.status(status) == len(first + rest)
