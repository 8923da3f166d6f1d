"""The state contract (registry/state) on both backends: this process (plus flock files) and a
real redis-server; the ``redis:``/``state:`` config keys; Redis unavailable."""

from __future__ import annotations

import asyncio
import time

import pytest

from registry.config import Config
from registry.state import LeaseBusy, LeaseLost, StateUnavailable, open_state
from registry.state.config import RedisConfig, StateConfig


@pytest.fixture(params=["local", "redis"])
async def state(request, tmp_path):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        config = StateConfig(redis=RedisConfig(addrs=[server.addr]), leasettl=2.0, lockwait=0.5,
                             keyprefix=f"t{time.monotonic_ns()}:")
    else:
        config = StateConfig(lockdirectory=str(tmp_path / "locks"), leasettl=2.0, lockwait=0.5)
    s = open_state(config)
    yield s
    await s.close()


async def test_exclusive_lease_excludes_and_tokens_grow(state):
    first = await state.acquire("upload:a/1")
    with pytest.raises(LeaseBusy):
        await state.acquire("upload:a/1", wait=0.2)
    other = await state.acquire("upload:a/2", wait=0.2)  # another name is independent
    await first.release()
    second = await state.acquire("upload:a/1", wait=0.5)
    assert second.token > first.token
    await second.release()
    await other.release()


async def test_waiter_gets_the_lease_when_released(state):
    held = await state.acquire("x")
    got: list[int] = []

    async def waiter() -> None:
        lease = await state.acquire("x", wait=2)
        got.append(lease.token)
        await lease.release()

    task = asyncio.ensure_future(waiter())
    await asyncio.sleep(0.1)
    assert not got
    await held.release()
    await asyncio.wait_for(task, 3)
    assert got and got[0] > held.token


async def test_shared_holders_together_exclusive_alone(state):
    a = await state.acquire("repo:r", shared=True)
    b = await state.acquire("repo:r", shared=True, wait=0.2)
    with pytest.raises(LeaseBusy):
        await state.acquire("repo:r", wait=0.2)
    await a.release()
    await b.release()
    ex = await state.acquire("repo:r", wait=0.5)
    with pytest.raises(LeaseBusy):
        await state.acquire("repo:r", shared=True, wait=0.2)
    await ex.release()


async def test_waiting_exclusive_goes_before_new_shared(state):
    reader = await state.acquire("repo:w", shared=True)
    order: list[str] = []

    async def writer() -> None:
        lease = await state.acquire("repo:w", wait=3)
        order.append("writer")
        await asyncio.sleep(0.05)
        await lease.release()

    async def late_reader() -> None:
        await asyncio.sleep(0.1)  # the writer waits by now
        lease = await state.acquire("repo:w", shared=True, wait=3)
        order.append("reader")
        await lease.release()

    tasks = [asyncio.ensure_future(writer()), asyncio.ensure_future(late_reader())]
    await asyncio.sleep(0.3)
    await reader.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["writer", "reader"]


async def test_counters_windows_and_marks(state):
    key = f"pair:{time.monotonic_ns()}"
    assert await state.window_retry_after(key, 3, 60) == 0
    for _ in range(3):
        await state.window_add((key, key + "b"), 60, 10)
    wait = await state.window_retry_after(key, 3, 60)
    assert 50 < wait <= 60
    assert await state.window_retry_after(key, 4, 60) == 0
    await state.window_reset(key)
    assert await state.window_retry_after(key, 1, 60) == 0
    assert await state.window_retry_after(key + "b", 3, 60) > 0
    await state.mark("known:alice", "10.0.0.1", 2, 3600)
    assert await state.marked("known:alice", "10.0.0.1", 3600)
    assert not await state.marked("known:alice", "10.0.0.2", 3600)
    await state.mark("known:alice", "10.0.0.2", 2, 3600)
    await state.mark("known:alice", "10.0.0.3", 2, 3600)  # the oldest goes
    assert not await state.marked("known:alice", "10.0.0.1", 3600)


async def test_cache_fill_is_refused_after_a_drop(state):
    scope = f"repo:c{time.monotonic_ns()}"
    value, generation = await state.cache_get(scope, "l:x")
    assert value is None
    await state.cache_fill(scope, "l:x", b"42", generation)
    assert (await state.cache_get(scope, "l:x"))[0] == b"42"
    _, seen = await state.cache_get(scope, "l:y")  # a reader looks at storage...
    await state.cache_drop(scope, ("l:x",))  # ... a delete drops meanwhile ...
    await state.cache_fill(scope, "l:y", b"7", seen)  # ... its fill must not land
    assert (await state.cache_get(scope, "l:y"))[0] is None
    assert (await state.cache_get(scope, "l:x"))[0] is None


async def test_records_by_group(state):
    kind = f"k{time.monotonic_ns()}"
    await state.record_put(kind, "a1", b"one", 60, "alice")
    await state.record_put(kind, "a2", b"two", 60, "alice")
    await state.record_put(kind, "b1", b"three", 60, "bob")
    assert await state.record_get(kind, "a1") == b"one"
    assert await state.record_group(kind, "alice") == {"a1": b"one", "a2": b"two"}
    assert set(await state.record_all(kind)) == {"a1", "a2", "b1"}
    await state.record_delete(kind, "a1", "alice")
    assert await state.record_get(kind, "a1") is None
    await state.record_put(kind, "short", b"x", 0.2, "bob")
    await asyncio.sleep(0.4)
    assert await state.record_get(kind, "short") is None


async def test_local_leases_reach_other_processes(tmp_path):
    """Two workers on one host: the flock files exclude a holder in another process."""
    import multiprocessing

    config = StateConfig(lockdirectory=str(tmp_path / "locks"), lockwait=0.3)
    s = open_state(config)
    lease = await s.acquire("upload:p/1")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_try_lease, (str(tmp_path / "locks"),)) == "busy"
        await lease.release()
        assert pool.apply(_try_lease, (str(tmp_path / "locks"),)) == "acquired"


def _try_lease(lockdir: str) -> str:
    async def run() -> str:
        s = open_state(StateConfig(lockdirectory=lockdir, lockwait=0.3))
        try:
            lease = await s.acquire("upload:p/1")
        except LeaseBusy:
            return "busy"
        await lease.release()
        return "acquired"

    return asyncio.run(run())


async def test_redis_lease_expires_and_the_next_holder_is_told(redis_server):
    s = open_state(StateConfig(redis=RedisConfig(addrs=[redis_server.addr]), leasettl=1.0, lockwait=3,
                               keyprefix=f"e{time.monotonic_ns()}:"))
    try:
        first = await s.acquire("upload:r/1")
        assert not first.clean  # nothing known of earlier holders: fence them
        await first.release()
        clean = await s.acquire("upload:r/1")
        assert clean.clean  # the previous holder released
        clean._renewer.cancel()  # a holder that stops renewing: paused, or killed
        started = time.monotonic()
        taken = await s.acquire("upload:r/1", wait=5)
        assert time.monotonic() - started >= 0.5
        assert not taken.clean and taken.token > clean.token
        with pytest.raises(LeaseLost):  # the paused holder's own check fails by now
            clean.check()
        await clean.release()  # a late release must not free the new holder's lease
        assert await s.holder("upload:r/1") == taken.token
        await taken.release()
    finally:
        await s.close()


async def test_redis_lease_renews_while_held(redis_server):
    s = open_state(StateConfig(redis=RedisConfig(addrs=[redis_server.addr]), leasettl=1.0, lockwait=0.2,
                               keyprefix=f"n{time.monotonic_ns()}:"))
    try:
        lease = await s.acquire("long")
        await asyncio.sleep(2.5)  # over twice the ttl: renewals keep it
        lease.check()
        with pytest.raises(LeaseBusy):
            await s.acquire("long")
        await lease.release()
    finally:
        await s.close()


async def test_redis_unavailable_fails_fast_and_recovers(redis_server):
    s = open_state(StateConfig(redis=RedisConfig(addrs=["127.0.0.1:1"], dialtimeout=0.3), lockwait=0.2))
    try:
        started = time.monotonic()
        with pytest.raises(StateUnavailable):
            await s.acquire("u")
        with pytest.raises(StateUnavailable):
            await s.cache_get("repo:x", "l:y")
        assert time.monotonic() - started < 3
    finally:
        await s.close()


def test_redis_config_keys_of_both_versions():
    c = Config.from_dict({
        "storage": {"inmemory": {}, "cache": {"blobdescriptor": "redis", "blobdescriptorsize": 500}},
        "redis": {"addr": "redis.example:6380", "password": "pw", "db": 2, "dialtimeout": "10ms",
                  "readtimeout": "20ms", "writetimeout": "30ms", "pool": {"maxactive": 7, "maxidle": 2},
                  "tls": {"enabled": True}},
        "state": {"leasettl": "10s", "lockwait": "5s", "keyprefix": "reg1:"},
    })
    r = c.state.redis
    assert r.addrs == ["redis.example:6380"] and r.db == 2 and r.poolsize == 7 and r.tls
    assert (r.dialtimeout, r.readtimeout, r.writetimeout) == (0.01, 0.02, 0.03)
    assert c.state.leasettl == 10 and c.state.lockwait == 5 and c.state.keyprefix == "reg1:"
    assert c.state.blobdescriptor == "redis" and c.state.blobdescriptorsize == 500
    assert any("redis.pool.maxidle" in w for w in c.warnings)
    assert "pw" not in repr(c.state)
    c = Config.from_dict({"storage": {"inmemory": {}},
                          "redis": {"addrs": ["s1:26379", "s2:26379"], "mastername": "main", "username": "u",
                                    "poolsize": 9, "routebylatency": True, "tls": {"rootcas": ["/ca.pem"]}}})
    assert c.state.redis.mastername == "main" and not c.state.redis.cluster and c.state.redis.tls
    assert any("redis.routebylatency" in w for w in c.warnings)
    c = Config.from_dict({"storage": {"inmemory": {}}, "redis": {"addrs": ["a:1", "b:2", "c:3"]}})
    assert c.state.redis.cluster
    c = Config.from_dict({"storage": {"inmemory": {}}, "redis": {"adr": "x:1"}})
    assert any("unknown key redis.adr" in w and "redis.addr" in w for w in c.warnings)


@pytest.mark.parametrize("raw, message", [
    ({"storage": {"inmemory": {}, "cache": {"blobdescriptor": "redis"}}}, "needs the redis: section"),
    ({"storage": {"inmemory": {}, "cache": {"blobdescriptor": "memcached"}}}, "one of inmemory, redis"),
    ({"storage": {"inmemory": {}}, "redis": {"addr": "x:1", "addrs": ["y:2"]}}, "not both"),
    ({"storage": {"inmemory": {}}, "redis": {"addr": "nope"}}, "host:port"),
    ({"storage": {"inmemory": {}}, "redis": {"password": "secret-value"}}, "an address is required"),
    ({"storage": {"inmemory": {}}, "state": {"leasettl": "100ms"}}, "at least 1s"),
])
def test_bad_state_config_is_one_clear_line(raw, message):
    from registry.config import ConfigError

    with pytest.raises(ConfigError) as err:
        Config.from_dict(raw)
    assert message in str(err.value) and "secret-value" not in str(err.value)


def test_inmemory_cache_refused_with_workers():
    c = Config.from_dict({"storage": {"inmemory": {}, "cache": {"blobdescriptor": "inmemory"}},
                          "http": {"workers": 2}})
    assert c.state.blobdescriptor == ""
    assert any("http.workers > 1" in w for w in c.warnings)


async def test_sentinel_mastername_finds_the_primary(redis_server, tmp_path):
    """3.x's ``addrs`` + ``mastername``: the client asks a real Sentinel (redis-server --sentinel)."""
    import subprocess

    from helpers import free_port, stop_process
    from scale_support import REDIS_SERVER, _wait_port

    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor main 127.0.0.1 {redis_server.port} 1\n")
    log = tmp_path / "sentinel.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc, log)
        c = Config.from_dict({"storage": {"inmemory": {}},
                              "redis": {"addrs": [f"127.0.0.1:{port}"], "mastername": "main"},
                              "state": {"keyprefix": f"s{time.monotonic_ns()}:"}})
        s = open_state(c.state)
        try:
            lease = await s.acquire("upload:sentinel/1", wait=5)
            assert await s.holder("upload:sentinel/1") == lease.token
            await lease.release()
        finally:
            await s.close()
    finally:
        stop_process(proc)


async def test_catalog_entries_written_once_for_all_instances(redis_server):
    """The catalog index's "written lately" memory is shared: one instance's write spares the
    others, and forget() (a repository deleted) makes the next push write the entry again."""
    from drivers.inmemory import InMemoryDriver
    from registry.store.catalog import Catalog

    driver = InMemoryDriver()
    writes: list[str] = []
    original = driver.put_content

    async def counting(path, data):  # type: ignore[no-untyped-def]
        writes.append(path)
        await original(path, data)

    driver.put_content = counting  # type: ignore[method-assign]
    config = StateConfig(redis=RedisConfig(addrs=[redis_server.addr]), keyprefix=f"cat{time.monotonic_ns()}:")
    states = [open_state(config), open_state(config)]
    try:
        one, two = (Catalog(driver, s) for s in states)
        await one.record("team/app")
        entries = [w for w in writes if "_catalog" in w and "team..app" in w]
        await two.record("team/app")
        assert [w for w in writes if "team..app" in w] == entries  # the second instance wrote nothing
        await one.forget("team/app")
        await two.record("team/app")
        assert len([w for w in writes if "team..app" in w]) == len(entries) + 1
    finally:
        for s in states:
            await s.close()
