"""The storage-driver conformance suite: the executable form of :mod:`drivers.base`.

Written once, run against every backend. A test module imports everything from here and
provides one fixture, ``storage``, returning a :class:`Storage` for the backend under test::

    from drivers.testsuite import *  # noqa: F401,F403  (tests and the driver fixtures)

    @pytest.fixture(scope="session", params=["filesystem", "inmemory"])
    def storage(request) -> Storage: ...

Each test gets ``driver``, a driver on a fresh, empty storage location, and ``new_driver``,
which opens another instance on that same location (as another process or a restart
would). Tests leave the location empty; the fixture asserts ``list("/") == []`` afterwards,
so every test also checks that delete really deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from .base import (
    ContentWrite,
    FileInfo,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    Unsupported,
    WalkAction,
)

KiB = 1 << 10
MiB = 1 << 20


@dataclasses.dataclass
class Storage:
    """One backend under test.

    ``make(location)`` opens a driver on the storage location named ``location`` (a fresh
    name per test; the same name must give a driver on the same data, e.g. the same bucket
    and ``rootdirectory``). ``holds_data_in_process`` skips the bounded-memory test for
    backends that keep the data in this process by design. ``stream_size`` is the size of the
    bounded-memory streaming test: emulators whose cost grows with the object (moto holds a
    whole multipart object in memory, fake-gcs-server copies on every chunk) use less.
    """

    make: Callable[[str], StorageDriver]
    holds_data_in_process: bool = False
    stream_size: int = 1 << 30


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
async def new_driver(storage: Storage) -> AsyncIterator[Callable[[], StorageDriver]]:
    """Opens driver instances on this test's storage location; all share its data."""
    location = f"suite-{uuid.uuid4().hex[:16]}"
    opened: list[StorageDriver] = []

    def open_driver() -> StorageDriver:
        instance = storage.make(location)
        opened.append(instance)
        return instance

    yield open_driver
    checker = storage.make(location)
    try:
        leftover = await checker.list("/")
        for path in leftover:  # clean up so one failure does not spill into other tests
            with contextlib.suppress(StorageError):
                await checker.delete(path)
    finally:
        for instance in [*opened, checker]:
            await instance.close()
    assert leftover == [], f"the test left {leftover} behind (or delete did not delete)"


@pytest.fixture
async def driver(new_driver: Callable[[], StorageDriver]) -> StorageDriver:
    return new_driver()


# -- helpers -------------------------------------------------------------------------------
def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes."""
    return random.Random(seed).randbytes(size)


def stream(total: int, chunk: int = MiB, seed: int = 0) -> Iterator[bytes]:
    """``total`` bytes in ``chunk`` pieces, generated piece by piece (never held whole).

    Each piece is a different rotation of one random block, so a lost, repeated or
    reordered piece changes the digest."""
    base = blob(chunk, seed)
    for i, start in enumerate(range(0, total, chunk)):
        r = (i * 104_729) % chunk
        piece = base[r:] + base[:r]
        yield piece[: min(chunk, total - start)]


async def read_all(driver: StorageDriver, path: str, offset: int = 0, chunk_size: int = MiB) -> bytes:
    return b"".join([c async for c in driver.reader(path, offset, chunk_size=chunk_size)])


async def write_file(driver: StorageDriver, path: str, data: bytes, piece: int = 64 * KiB) -> None:
    writer = await driver.writer(path)
    for i in range(0, len(data), piece):
        await writer.write(data[i : i + piece])
    await writer.commit()


async def walk_paths(driver: StorageDriver, path: str, **kwargs: Any) -> list[str]:
    return [info.path async for info in driver.walk(path, **kwargs)]


@contextlib.contextmanager
def raises(kind: type[StorageError], driver: StorageDriver, path: str | None = None) -> Iterator[None]:
    """Expect ``kind`` naming this driver (and ``path`` when given)."""
    with pytest.raises(kind) as info:
        yield
    assert info.value.driver == driver.name
    assert driver.name in str(info.value)
    if path is not None:
        assert info.value.path == path


async def drain(iterator: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in iterator])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


NON_UTF8 = b"\xff\xfe\x00\x80\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc" + bytes(range(256))
SMALL_CONTENTS = {
    "empty": b"",
    "one-byte": b"\x00",
    "non-utf8": NON_UTF8,
    "one-mib": blob(MiB, 1),
}


# -- content round trips -------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(SMALL_CONTENTS))
async def test_put_get_round_trip(driver: StorageDriver, kind: str) -> None:
    data = SMALL_CONTENTS[kind]
    await driver.put_content("/rt/file", data)
    got = await driver.get_content("/rt/file")
    assert type(got) is bytes and got == data
    assert await read_all(driver, "/rt/file") == data
    assert (await driver.stat("/rt/file")).size == len(data)
    await driver.delete("/rt")


@pytest.mark.parametrize("kind", list(SMALL_CONTENTS))
async def test_writer_reader_round_trip(driver: StorageDriver, kind: str) -> None:
    data = SMALL_CONTENTS[kind]
    await write_file(driver, "/rt/stream", data)
    assert await read_all(driver, "/rt/stream") == data
    assert await driver.get_content("/rt/stream") == data
    await driver.delete("/rt")


async def test_stream_round_trip_256mib(driver: StorageDriver) -> None:
    total, digest = 256 * MiB, hashlib.sha256()
    writer = await driver.writer("/big/data")
    for piece in stream(total):
        digest.update(piece)
        view = memoryview(piece)
        for i in range(0, len(view), 64 * KiB):  # the size an HTTP body arrives in
            await writer.write(view[i : i + 64 * KiB])
    assert writer.size == total
    await writer.commit()
    assert (await driver.stat("/big/data")).size == total
    back, size = hashlib.sha256(), 0
    async for chunk in driver.reader("/big/data"):
        back.update(chunk)
        size += len(chunk)
    assert size == total and back.hexdigest() == digest.hexdigest()
    await driver.delete("/big")


async def test_put_overwrite_with_shorter_content(driver: StorageDriver) -> None:
    await driver.put_content("/ow/file", blob(MiB + 5, 2))
    await driver.put_content("/ow/file", b"short")
    assert await driver.get_content("/ow/file") == b"short"
    assert await read_all(driver, "/ow/file") == b"short"
    assert (await driver.stat("/ow/file")).size == 5
    await driver.delete("/ow")


async def test_writer_overwrites_committed_file_with_shorter(driver: StorageDriver) -> None:
    await driver.put_content("/ow/file", blob(2 * MiB, 3))
    await write_file(driver, "/ow/file", b"tiny")
    assert await driver.get_content("/ow/file") == b"tiny"
    assert (await driver.stat("/ow/file")).size == 4
    await driver.delete("/ow")


async def test_put_content_is_atomic_for_concurrent_readers(driver: StorageDriver) -> None:
    versions = [blob(512 * KiB, 4), blob(96 * KiB, 5), b"x"]
    await driver.put_content("/atomic/file", versions[0])
    for _ in range(8):
        jobs: list[Awaitable[Any]] = [driver.put_content("/atomic/file", v) for v in versions]
        jobs += [driver.get_content("/atomic/file") for _ in range(6)]
        results = await asyncio.gather(*jobs)
        for seen in results[len(versions):]:
            assert seen in versions, "a reader saw a partial or mixed file"
    assert await driver.get_content("/atomic/file") in versions
    await driver.delete("/atomic")


async def test_put_content_creates_parents_and_accepts_bytes_likes(driver: StorageDriver) -> None:
    await driver.put_content("/deep/a/b/c/d", bytearray(b"ba"))
    await driver.put_content("/deep/a/e", memoryview(b"mv"))
    assert await driver.get_content("/deep/a/b/c/d") == b"ba"
    assert await driver.get_content("/deep/a/e") == b"mv"
    assert await driver.list("/deep/a") == ["/deep/a/b", "/deep/a/e"]
    await driver.delete("/deep")


async def test_put_contents_round_trip(driver: StorageDriver) -> None:
    """Files of several stages: in existing and new directories, two sharing a new directory in
    one stage, one in a directory that an earlier stage creates, an overwrite, durable or not."""
    await driver.put_content("/pc/old/file", b"before")
    await driver.put_contents([
        [ContentWrite("/pc/new/a/one", b"1"), ContentWrite("/pc/new/a/two", bytearray(b"2"), durable=False),
         ContentWrite("/pc/old/file", b"after")],
        [ContentWrite("/pc/new/a/b/three", b"3"), ContentWrite("/pc/old/sibling", b"s", durable=False)],
        [],
        [ContentWrite("/pc/other/four", memoryview(b"4"))],
    ])
    expected = {"/pc/new/a/one": b"1", "/pc/new/a/two": b"2", "/pc/old/file": b"after",
                "/pc/new/a/b/three": b"3", "/pc/old/sibling": b"s", "/pc/other/four": b"4"}
    for path, data in expected.items():
        assert await driver.get_content(path) == data, path
    assert await driver.list("/pc/new/a") == ["/pc/new/a/b", "/pc/new/a/one", "/pc/new/a/two"]
    assert await driver.list("/pc") == ["/pc/new", "/pc/old", "/pc/other"]
    await driver.put_contents([])
    await driver.delete("/pc")


async def test_put_contents_keeps_stage_order_for_readers(driver: StorageDriver) -> None:
    """A reader never sees a file of a stage before every file of the stages before it (a
    tag's current link before the manifest's revision link)."""
    rounds = 20 if getattr(driver, "real_directories", False) else 3
    for n in range(rounds):
        base = f"/po/{n}"
        stages = [[ContentWrite(f"{base}/data/x/d", b"d"), ContentWrite(f"{base}/entry/e", b"e", durable=False)],
                  [ContentWrite(f"{base}/rev/link", b"r")],
                  [ContentWrite(f"{base}/tags/t/current/link", b"c"), ContentWrite(f"{base}/tags/t/index/link", b"i")]]
        order = [w.path for stage in stages for w in stage]
        done = asyncio.Event()
        seen: list[list[bool]] = []

        async def watch() -> None:
            while not done.is_set():
                present = []
                # later stages first: what they show must already hold for the earlier ones
                for path in reversed(order):
                    try:
                        present.append(bool(await driver.get_content(path)))
                    except PathNotFound:
                        present.append(False)
                seen.append(present[::-1])
                await asyncio.sleep(0)

        async def write() -> None:
            try:
                await driver.put_contents(stages)
            finally:
                done.set()

        await asyncio.gather(watch(), write())
        for present in seen:
            # stage k visible only when the stages before it are: data+entry, rev, links
            if present[2]:
                assert present[0] and present[1], present
            if present[3] or present[4]:
                assert present[0] and present[1] and present[2], present
    await driver.delete("/po")


async def test_put_contents_checks_every_path_first(driver: StorageDriver) -> None:
    with raises(InvalidPath, driver):
        await driver.put_contents([[ContentWrite("/pv/ok", b"x")], [ContentWrite("/pv/../bad", b"y")]])
    assert await driver.list("/") == []


async def test_put_contents_failure_names_what_is_visible(driver: StorageDriver) -> None:
    """A file of a middle stage fails: the error says which paths are ``visible``, exactly those
    read their new content, no file of a later stage is written and stage order still holds.
    The failure is the backend's own where it has directories (a file under a file); elsewhere
    that one ``put_content`` is refused (the generic batch writes through it)."""
    await driver.put_content("/pf/plain", b"a file")
    await driver.put_content("/pf/old/link", b"old")
    bad = "/pf/plain/child"
    if not getattr(driver, "real_directories", False):
        real_put = driver.put_content

        async def put_content(path: str, data: Any) -> None:
            if path == bad:
                raise StorageError(driver.name, path, "refused by the test")
            await real_put(path, data)

        driver.put_content = put_content  # type: ignore[method-assign]
    stages = [[ContentWrite("/pf/a/one", b"1"), ContentWrite("/pf/old/link", b"new")],
              [ContentWrite("/pf/b/two", b"2", durable=False), ContentWrite(bad, b"x")],
              [ContentWrite("/pf/c/three", b"3")]]
    try:
        with pytest.raises(StorageError) as caught:
            await driver.put_contents(stages)
    finally:
        with contextlib.suppress(AttributeError):
            del driver.put_content  # type: ignore[method-assign]
    visible = caught.value.visible
    assert bad not in visible
    shown: list[list[bool]] = []
    for stage in stages:
        shown.append([])
        for write in stage:
            try:
                new = await driver.get_content(write.path) == bytes(write.data)
            except PathNotFound:
                new = False
            assert new == (write.path in visible), (write.path, visible)
            shown[-1].append(new)
    assert not any(shown[2])
    if any(shown[1]):
        assert all(shown[0])
    if "/pf/old/link" not in visible:
        assert await driver.get_content("/pf/old/link") == b"old"
    await driver.delete("/pf")


async def test_put_contents_racing_delete_of_its_directory(driver: StorageDriver) -> None:
    """As :func:`test_put_racing_delete_of_its_directory`, for a batch: what survives is whole."""
    rounds = 25 if getattr(driver, "real_directories", False) else 2

    async def worker(k: int) -> None:
        for n in range(rounds):
            tag = f"/pcd/{k}/{n}/tag"
            await driver.put_content(f"{tag}/index/link", b"old")

            async def put() -> None:
                await driver.put_contents([[ContentWrite(f"{tag}/current/link", b"new")],
                                           [ContentWrite(f"{tag}/index/x/link", b"x", durable=False)]])

            async def delete() -> None:
                with contextlib.suppress(PathNotFound):
                    await driver.delete(tag)

            await asyncio.gather(put(), delete(), put(), delete())
            try:
                children = await driver.list(tag)
            except PathNotFound:
                continue
            if f"{tag}/current" in children:
                assert await driver.get_content(f"{tag}/current/link") == b"new"
            await driver.delete(tag)

    await asyncio.gather(*(worker(k) for k in range(4)))
    with raises(PathNotFound, driver, "/pcd"):
        await driver.list("/pcd")


async def test_new_instance_sees_changes(driver: StorageDriver, new_driver: Callable[[], StorageDriver]) -> None:
    other = new_driver()
    await driver.put_content("/shared/file", b"one")
    assert await other.get_content("/shared/file") == b"one"
    assert await other.list("/shared") == ["/shared/file"]
    await other.put_content("/shared/file", b"two")
    assert await driver.get_content("/shared/file") == b"two"
    await other.delete("/shared")
    with raises(PathNotFound, driver):
        await driver.stat("/shared/file")
    assert await driver.list("/") == []


# -- reader --------------------------------------------------------------------------------
READ_SIZE = 3 * MiB + 17


@pytest.mark.parametrize("where", ["zero", "one", "middle", "last-byte", "end"])
async def test_reader_at_offset(driver: StorageDriver, where: str) -> None:
    data = blob(READ_SIZE, 6)
    offset = {"zero": 0, "one": 1, "middle": READ_SIZE // 2, "last-byte": READ_SIZE - 1, "end": READ_SIZE}[where]
    await write_file(driver, "/rd/file", data)
    assert await read_all(driver, "/rd/file", offset) == data[offset:]
    await driver.delete("/rd")


@pytest.mark.parametrize("where", ["size+1", "far-beyond", "minus-one", "minus-size"])
async def test_reader_invalid_offset(driver: StorageDriver, where: str) -> None:
    data = blob(100 * KiB, 7)
    offset = {"size+1": len(data) + 1, "far-beyond": len(data) + 10 * MiB, "minus-one": -1, "minus-size": -len(data)}[where]
    await driver.put_content("/rd/file", data)
    with raises(InvalidOffset, driver, "/rd/file"):
        await drain(driver.reader("/rd/file", offset))
    await driver.delete("/rd")


async def test_reader_offsets_on_empty_file(driver: StorageDriver) -> None:
    await driver.put_content("/rd/empty", b"")
    assert [c async for c in driver.reader("/rd/empty", 0)] == []
    with raises(InvalidOffset, driver, "/rd/empty"):
        await drain(driver.reader("/rd/empty", 1))
    await driver.delete("/rd")


async def test_reader_chunks_are_nonempty_bytes_within_chunk_size(driver: StorageDriver) -> None:
    data = blob(10_001, 8)
    await driver.put_content("/rd/file", data)
    chunks = [c async for c in driver.reader("/rd/file", 3, chunk_size=1000)]
    assert all(type(c) is bytes and 0 < len(c) <= 1000 for c in chunks)
    assert b"".join(chunks) == data[3:]
    await driver.delete("/rd")


async def test_reader_closed_early_releases_the_file(driver: StorageDriver) -> None:
    data = blob(4 * MiB, 9)
    await write_file(driver, "/rd/file", data)
    iterator = driver.reader("/rd/file", 0, chunk_size=64 * KiB)
    first = await iterator.__anext__()
    assert first == data[: len(first)]
    await iterator.aclose()  # type: ignore[attr-defined]
    await driver.delete("/rd")
    await driver.put_content("/rd/file", b"new")
    assert await read_all(driver, "/rd/file") == b"new"
    await driver.delete("/rd")


async def test_reader_of_directory_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/rd/dir/file", b"x")
    with raises(PathNotFound, driver):
        await drain(driver.reader("/rd/dir"))
    with raises(PathNotFound, driver):
        await driver.get_content("/rd/dir")
    await driver.delete("/rd")


async def test_concurrent_readers_at_random_offsets(driver: StorageDriver) -> None:
    data = blob(8 * MiB, 10)
    await write_file(driver, "/cr/file", data)
    rnd = random.Random(11)

    async def read(offset: int, chunk: int, limit: int | None) -> None:
        got = bytearray()
        iterator = driver.reader("/cr/file", offset, chunk_size=chunk)
        async for piece in iterator:
            got += piece
            if limit is not None and len(got) >= limit:
                await iterator.aclose()  # type: ignore[attr-defined]
                break
        expected = data[offset:] if limit is None else data[offset : offset + len(got)]
        assert bytes(got) == expected

    jobs = []
    for i in range(24):
        offset = rnd.choice([0, len(data), len(data) - 1, rnd.randrange(len(data))])
        limit = rnd.randrange(1, MiB) if i % 3 == 0 else None
        jobs.append(read(offset, rnd.choice([4 * KiB, 64 * KiB, MiB]), limit))
    await asyncio.gather(*jobs)
    await driver.delete("/cr")


# -- missing paths ---------------------------------------------------------------------------
MISSING_OPS: dict[str, Callable[[StorageDriver, str], Awaitable[Any]]] = {
    "get_content": lambda d, p: d.get_content(p),
    "reader": lambda d, p: drain(d.reader(p)),
    "reader-offset": lambda d, p: drain(d.reader(p, 10)),
    "writer-append": lambda d, p: d.writer(p, append=True),
    "stat": lambda d, p: d.stat(p),
    "list": lambda d, p: d.list(p),
    "move": lambda d, p: d.move(p, "/elsewhere/dest"),
    "delete": lambda d, p: d.delete(p),
    "walk": lambda d, p: d.walk(p).__anext__(),
}


@pytest.mark.parametrize("op", list(MISSING_OPS))
async def test_missing_path(driver: StorageDriver, op: str) -> None:
    await driver.put_content("/present/file", b"data")
    for path in ("/absent", "/present/absent", "/present/file/below", "/presen", "/present/fil"):
        with raises(PathNotFound, driver, path):
            await MISSING_OPS[op](driver, path)
    assert await driver.get_content("/present/file") == b"data"
    assert await driver.list("/") == ["/present"]  # nothing was created on the way
    await driver.delete("/present")


# -- writer ----------------------------------------------------------------------------------
async def test_writer_append_resumes_after_restart(driver: StorageDriver, new_driver: Callable[[], StorageDriver]) -> None:
    parts = [blob(5 * MiB + 3, 12), blob(3 * MiB + 7, 13), blob(1000, 14), blob(6 * MiB, 15)]
    writer = await driver.writer("/up/data")
    await writer.write(parts[0])
    await writer.close()
    await driver.close()  # the process that started the upload is gone
    total = len(parts[0])
    for part in parts[1:]:
        instance = new_driver()
        writer = await instance.writer("/up/data", append=True)
        assert writer.size == total
        for i in range(0, len(part), 100 * KiB):
            await writer.write(part[i : i + 100 * KiB])
        total += len(part)
        assert writer.size == total
        await writer.close()
        await instance.close()
    final = new_driver()
    writer = await final.writer("/up/data", append=True)
    assert writer.size == total
    await writer.commit()
    expected = b"".join(parts)
    assert (await final.stat("/up/data")).size == total
    assert sha256(await read_all(final, "/up/data")) == sha256(expected)
    await final.delete("/up")


async def test_writer_cancel_removes_data(driver: StorageDriver) -> None:
    writer = await driver.writer("/up/one/data")
    await writer.write(blob(5 * MiB + 1, 16))
    await writer.cancel()
    for op in ("stat", "writer-append", "list"):
        path = "/up/one" if op == "list" else "/up/one/data"
        with raises(PathNotFound, driver):
            await MISSING_OPS[op](driver, path)
    assert await driver.list("/") == []


async def test_writer_cancel_of_resumed_upload(driver: StorageDriver, new_driver: Callable[[], StorageDriver]) -> None:
    await driver.put_content("/up/startedat", b"now")
    writer = await driver.writer("/up/data")
    await writer.write(blob(2 * MiB, 17))
    await writer.close()
    other = new_driver()
    writer = await other.writer("/up/data", append=True)
    await writer.write(b"more")
    await writer.cancel()
    with raises(PathNotFound, driver, "/up/data"):
        await driver.writer("/up/data", append=True)
    assert await driver.list("/up") == ["/up/startedat"]
    await driver.delete("/up")


async def test_delete_removes_uncommitted_upload(driver: StorageDriver, new_driver: Callable[[], StorageDriver]) -> None:
    await driver.put_content("/up/startedat", b"now")
    writer = await driver.writer("/up/data")
    await writer.write(blob(5 * MiB + 9, 28))
    await writer.close()
    await new_driver().delete("/up")  # purging an abandoned upload
    with raises(PathNotFound, driver, "/up/data"):
        await driver.writer("/up/data", append=True)
    with raises(PathNotFound, driver, "/up"):
        await driver.list("/up")


async def test_writer_commit_after_close_is_refused(driver: StorageDriver) -> None:
    writer = await driver.writer("/up/data")
    await writer.write(b"abc")
    await writer.close()
    with raises(StorageError, driver):
        await writer.commit()
    with raises(StorageError, driver):
        await writer.write(b"x")
    with raises(StorageError, driver):
        await writer.cancel()
    await writer.close()  # closing again is harmless
    resumed = await driver.writer("/up/data", append=True)
    assert resumed.size == 3
    await resumed.commit()
    assert await driver.get_content("/up/data") == b"abc"
    await driver.delete("/up")


async def test_writer_after_commit_only_closes(driver: StorageDriver) -> None:
    async with await driver.writer("/up/data") as writer:
        await writer.write(b"payload")
        await writer.commit()
        assert writer.size == 7
        for op in (lambda: writer.write(b"x"), writer.commit, writer.cancel):
            with raises(StorageError, driver):
                await op()
    await writer.close()
    assert await driver.get_content("/up/data") == b"payload"
    await driver.delete("/up")


async def test_writer_after_cancel_only_closes(driver: StorageDriver) -> None:
    writer = await driver.writer("/up/data")
    await writer.write(b"gone")
    await writer.cancel()
    for op in (lambda: writer.write(b"x"), writer.commit, writer.cancel):
        with raises(StorageError, driver):
            await op()
    await writer.close()
    assert await driver.list("/") == []


async def test_writer_context_manager_keeps_upload_on_error(driver: StorageDriver) -> None:
    with pytest.raises(RuntimeError):
        async with await driver.writer("/up/data") as writer:
            await writer.write(b"kept")
            raise RuntimeError("client went away")
    resumed = await driver.writer("/up/data", append=True)
    assert resumed.size == 4
    await resumed.write(b"!")
    await resumed.commit()
    assert await driver.get_content("/up/data") == b"kept!"
    await driver.delete("/up")


async def test_writer_size_reporting(driver: StorageDriver) -> None:
    writer = await driver.writer("/up/data")
    assert writer.size == 0
    expected = 0
    for piece in (b"a", blob(100 * KiB, 18), b"", blob(5 * MiB + 11, 19), b"z" * 3):
        assert await writer.write(piece) == len(piece)
        expected += len(piece)
        assert writer.size == expected
    await writer.close()
    assert writer.size == expected
    resumed = await driver.writer("/up/data", append=True)
    assert resumed.size == expected
    await resumed.write(b"tail")
    assert resumed.size == expected + 4
    await resumed.commit()
    assert resumed.size == expected + 4
    assert (await driver.stat("/up/data")).size == expected + 4
    await driver.delete("/up")


async def test_writer_zero_byte_write_then_append(driver: StorageDriver, new_driver: Callable[[], StorageDriver]) -> None:
    writer = await driver.writer("/up/data")
    assert await writer.write(b"") == 0
    await writer.close()
    resumed = await new_driver().writer("/up/data", append=True)
    assert resumed.size == 0
    data = blob(6 * MiB + 5, 20)
    await resumed.write(data)
    await resumed.commit()
    assert sha256(await read_all(driver, "/up/data")) == sha256(data)
    await driver.delete("/up")


async def test_writer_commit_without_data_makes_empty_file(driver: StorageDriver) -> None:
    writer = await driver.writer("/up/empty")
    await writer.commit()
    assert await driver.get_content("/up/empty") == b""
    info = await driver.stat("/up/empty")
    assert info.size == 0 and not info.is_dir
    await driver.delete("/up")


async def test_writer_without_append_starts_over(driver: StorageDriver) -> None:
    writer = await driver.writer("/up/data")
    await writer.write(blob(5 * MiB, 21))
    await writer.close()
    fresh = await driver.writer("/up/data")
    assert fresh.size == 0
    await fresh.write(b"xy")
    await fresh.commit()
    assert await driver.get_content("/up/data") == b"xy"
    await driver.delete("/up")


async def test_writer_copies_caller_buffers(driver: StorageDriver) -> None:
    buffer = bytearray(b"0123456789")
    writer = await driver.writer("/up/data")
    await writer.write(buffer)
    buffer[:] = b"XXXXXXXXXX"  # the HTTP layer reuses its buffers
    await writer.write(memoryview(b"abc"))
    await writer.commit()
    assert await driver.get_content("/up/data") == b"0123456789abc"
    await driver.delete("/up")


async def test_concurrent_writers_to_different_paths(driver: StorageDriver) -> None:
    size = 8 * MiB

    async def upload(i: int) -> str:
        digest = hashlib.sha256()
        writer = await driver.writer(f"/cw/{i:02d}/data")
        for piece in stream(size, 256 * KiB, seed=100 + i):
            digest.update(piece)
            await writer.write(piece)
        await writer.commit()
        return digest.hexdigest()

    digests = await asyncio.gather(*(upload(i) for i in range(32)))
    assert len(await driver.list("/cw")) == 32
    for i, expected in enumerate(digests):
        got, length = hashlib.sha256(), 0
        async for chunk in driver.reader(f"/cw/{i:02d}/data"):
            got.update(chunk)
            length += len(chunk)
        assert length == size and got.hexdigest() == expected, f"writer {i}"
    await driver.delete("/cw")


# -- races -----------------------------------------------------------------------------------
async def test_writes_survive_concurrent_prunes(driver: StorageDriver) -> None:
    """Writers keep creating files in directories that deletes keep emptying (and pruning, on
    backends with real directories), as upload sessions do under ``_uploads``: no write fails,
    and each file is complete until its own delete."""

    # the race is between a prune's rmdir and a makedirs: many rounds where directories are real,
    # a few elsewhere (on object stores it is the same contract, and each call a request)
    rounds = 25 if getattr(driver, "real_directories", False) else 2

    async def sessions(worker: int) -> None:
        for n in range(rounds):
            base = f"/pr/repo/a/_uploads/{worker}-{n}"
            await driver.put_content(f"{base}/startedat", b"now")
            w = await driver.writer(f"{base}/data")
            await w.write(b"d" * (n + 1))
            await w.commit()
            assert await driver.get_content(f"{base}/data") == b"d" * (n + 1)
            assert await driver.get_content(f"{base}/startedat") == b"now"
            await driver.move(f"{base}/data", f"/pr/blobs/{worker}/{n}/data")
            await driver.delete(base)

    await asyncio.gather(*(sessions(i) for i in range(8)))
    for worker in range(8):
        for n in range(rounds):
            assert await driver.get_content(f"/pr/blobs/{worker}/{n}/data") == b"d" * (n + 1)
    with raises(PathNotFound, driver, "/pr/repo"):
        await driver.list("/pr/repo")
    await driver.delete("/pr")


async def test_put_racing_delete_of_its_directory(driver: StorageDriver) -> None:
    """A small write racing the delete of the directory it goes into (a tag PUT racing a delete)
    either lands whole after the delete or goes with it; neither side fails, and what survives
    holds the new file. Workers share parents, so deletes keep pruning them under the others."""
    rounds = 40 if getattr(driver, "real_directories", False) else 3

    async def worker(k: int) -> None:
        for n in range(rounds):
            tag = f"/pd/{k}/{n}/tag"
            await driver.put_content(f"{tag}/index/link", b"old")

            async def put() -> None:
                await driver.put_content(f"{tag}/current/link", b"new")

            async def delete() -> None:
                with contextlib.suppress(PathNotFound):
                    await driver.delete(tag)

            await asyncio.gather(put(), delete(), put(), delete())
            try:
                children = await driver.list(tag)
            except PathNotFound:
                continue
            assert f"{tag}/current" in children, children
            assert await driver.get_content(f"{tag}/current/link") == b"new"
            await driver.delete(tag)

    await asyncio.gather(*(worker(k) for k in range(4)))
    with raises(PathNotFound, driver, "/pd"):
        await driver.list("/pd")


# -- stat ------------------------------------------------------------------------------------
def _near_now(moment: dt.datetime | None, slack: float = 120.0) -> bool:
    if moment is None or moment.tzinfo is None:
        return False
    return abs((dt.datetime.now(dt.timezone.utc) - moment).total_seconds()) < slack


async def test_stat_file(driver: StorageDriver) -> None:
    await driver.put_content("/st/file", b"12345")
    info = await driver.stat("/st/file")
    assert isinstance(info, FileInfo)
    assert (info.path, info.size, info.is_dir) == ("/st/file", 5, False)
    assert _near_now(info.modified), info.modified
    await write_file(driver, "/st/streamed", blob(MiB + 1, 22))
    info = await driver.stat("/st/streamed")
    assert (info.path, info.size, info.is_dir) == ("/st/streamed", MiB + 1, False)
    assert _near_now(info.modified), info.modified
    await driver.delete("/st")


async def test_stat_directory(driver: StorageDriver) -> None:
    await driver.put_content("/st/dir/sub/file", b"x")
    for path in ("/st", "/st/dir", "/st/dir/sub"):
        info = await driver.stat(path)
        assert (info.path, info.size, info.is_dir) == (path, 0, True)
        assert info.modified is None or _near_now(info.modified), info.modified
    await driver.delete("/st")


async def test_stat_modified_time_advances(driver: StorageDriver) -> None:
    await driver.put_content("/st/file", b"one")
    first = (await driver.stat("/st/file")).modified
    await asyncio.sleep(1.1)  # object stores keep whole seconds
    await driver.put_content("/st/file", b"two")
    second = (await driver.stat("/st/file")).modified
    assert first is not None and second is not None and second > first
    await driver.delete("/st")


# -- list ------------------------------------------------------------------------------------
async def test_list_root(driver: StorageDriver) -> None:
    assert await driver.list("/") == []
    await driver.put_content("/x", b"1")
    await driver.put_content("/y/z", b"2")
    assert await driver.list("/") == ["/x", "/y"]
    await driver.delete("/x")
    await driver.delete("/y")
    assert await driver.list("/") == []


async def test_list_one_level(driver: StorageDriver) -> None:
    names = ["b", "a-x", "a.x", "A", "_", "0", "a_"]
    for name in names:
        await driver.put_content(f"/l/{name}", name.encode())
    await driver.put_content("/l/a/deeper", b"d")  # directories among files
    await driver.put_content("/l/dir/c/d", b"d")
    await driver.put_content("/l/dir/e", b"e")
    expected = sorted([f"/l/{n}" for n in names] + ["/l/a", "/l/dir"])
    assert await driver.list("/l") == expected
    assert await driver.list("/l/dir") == ["/l/dir/c", "/l/dir/e"]
    assert await driver.list("/l/dir/c") == ["/l/dir/c/d"]
    await driver.delete("/l")


async def test_list_1500_children(driver: StorageDriver) -> None:
    names = [f"/many/{i:05d}" for i in range(1500)]
    limit = asyncio.Semaphore(32)

    async def put(path: str) -> None:
        async with limit:
            await driver.put_content(path, path.encode())

    await asyncio.gather(*(put(p) for p in names))
    assert await driver.list("/many") == names
    await driver.delete("/many")
    with raises(PathNotFound, driver, "/many"):
        await driver.list("/many")


async def test_list_of_a_file_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/l/file", b"x")
    with raises(PathNotFound, driver, "/l/file"):
        await driver.list("/l/file")
    await driver.delete("/l")


async def test_directories_vanish_with_their_last_file(driver: StorageDriver) -> None:
    await driver.put_content("/v/a/b/c/file", b"x")
    await driver.put_content("/v/keep", b"k")
    await driver.delete("/v/a/b/c/file")
    assert await driver.list("/v") == ["/v/keep"]
    with raises(PathNotFound, driver, "/v/a"):
        await driver.stat("/v/a")
    await driver.delete("/v/keep")
    assert await driver.list("/") == []


# -- walk ------------------------------------------------------------------------------------
WALK_FILES = ["/w/a/1", "/w/a/2/x", "/w/a-x", "/w/b/c/d", "/w/b/e", "/w/c"]
WALK_ORDER = [
    "/w/a", "/w/a/1", "/w/a/2", "/w/a/2/x", "/w/a-x",
    "/w/b", "/w/b/c", "/w/b/c/d", "/w/b/e", "/w/c",
]  # fmt: skip


async def _walk_tree(driver: StorageDriver) -> None:
    for path in WALK_FILES:
        await driver.put_content(path, path.encode())


async def test_walk_order_and_details(driver: StorageDriver) -> None:
    await _walk_tree(driver)
    infos = [info async for info in driver.walk("/w")]
    assert [i.path for i in infos] == WALK_ORDER
    for info in infos:
        assert info.is_dir == (info.path not in WALK_FILES)
        if not info.is_dir:
            assert info.size == len(info.path) and _near_now(info.modified)
    assert await walk_paths(driver, "/") == ["/w", *WALK_ORDER]
    assert await walk_paths(driver, "/w/b") == ["/w/b/c", "/w/b/c/d", "/w/b/e"]
    assert await walk_paths(driver, "/w/b/c") == ["/w/b/c/d"]
    await driver.delete("/w")


async def test_walk_skip_dir(driver: StorageDriver) -> None:
    await _walk_tree(driver)
    seen: list[str] = []

    def skip(info: FileInfo) -> WalkAction | None:
        seen.append(info.path)
        return WalkAction.SKIP_DIR if info.path in ("/w/a", "/w/b/c", "/w/c") else None

    expected = ["/w/a", "/w/a-x", "/w/b", "/w/b/c", "/w/b/e", "/w/c"]
    assert await walk_paths(driver, "/w", callback=skip) == expected
    assert seen == expected
    await driver.delete("/w")


async def test_walk_stop_and_async_callback(driver: StorageDriver) -> None:
    await _walk_tree(driver)

    async def stop(info: FileInfo) -> WalkAction:
        await asyncio.sleep(0)
        return WalkAction.STOP if info.path == "/w/b/c" else WalkAction.CONTINUE

    assert await walk_paths(driver, "/w", callback=stop) == WALK_ORDER[:6]
    await driver.delete("/w")


@pytest.mark.parametrize(
    "start_after",
    ["/w/a/2", "/w/a", "/w/a-x", "/w/b/c/d", "/w/c", "/w/0", "/w/b/cc", "/v", "/x", "/w/a/2/x/y"],
)
async def test_walk_start_after(driver: StorageDriver, start_after: str) -> None:
    await _walk_tree(driver)
    key = tuple(start_after.split("/")[1:])
    expected = [p for p in WALK_ORDER if tuple(p.split("/")[1:]) > key]
    assert await walk_paths(driver, "/w", start_after=start_after) == expected
    await driver.delete("/w")


async def test_walk_start_after_with_skip(driver: StorageDriver) -> None:
    await _walk_tree(driver)

    def skip(info: FileInfo) -> WalkAction | None:
        return WalkAction.SKIP_DIR if info.is_dir else None

    assert await walk_paths(driver, "/w", callback=skip, start_after="/w/a/1") == ["/w/a/2", "/w/a-x", "/w/b", "/w/c"]
    await driver.delete("/w")


async def test_walk_of_file_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/w/file", b"x")
    with raises(PathNotFound, driver, "/w/file"):
        await walk_paths(driver, "/w/file")
    await driver.delete("/w")


async def test_walk_empty_root(driver: StorageDriver) -> None:
    assert await walk_paths(driver, "/") == []


# -- move ------------------------------------------------------------------------------------
async def test_move(driver: StorageDriver) -> None:
    data = blob(3 * MiB + 1, 23)
    await write_file(driver, "/m/src/file", data)
    await driver.move("/m/src/file", "/m/dst/deep/file")
    assert sha256(await read_all(driver, "/m/dst/deep/file")) == sha256(data)
    with raises(PathNotFound, driver, "/m/src/file"):
        await driver.stat("/m/src/file")
    assert await driver.list("/m") == ["/m/dst"]  # the emptied source directory is gone
    await driver.delete("/m")


async def test_move_overwrites_destination(driver: StorageDriver) -> None:
    await driver.put_content("/m/src", b"new")
    await driver.put_content("/m/dst", blob(MiB, 24))
    await driver.move("/m/src", "/m/dst")
    assert await driver.get_content("/m/dst") == b"new"
    assert (await driver.stat("/m/dst")).size == 3
    assert await driver.list("/m") == ["/m/dst"]
    await driver.delete("/m")


async def test_move_missing_source_leaves_destination(driver: StorageDriver) -> None:
    await driver.put_content("/m/dst", b"keep")
    with raises(PathNotFound, driver, "/m/src"):
        await driver.move("/m/src", "/m/dst")
    assert await driver.get_content("/m/dst") == b"keep"
    with raises(PathNotFound, driver, "/m/none"):
        await driver.move("/m/none", "/m/new/dst")
    assert await driver.list("/m") == ["/m/dst"]
    await driver.delete("/m")


async def test_move_under_a_file(driver: StorageDriver) -> None:
    await driver.put_content("/m/notadir", b"file")
    with raises(PathNotFound, driver, "/m/notadir/foo"):
        await driver.move("/m/notadir/foo", "/m/notadir/bar")
    assert await driver.get_content("/m/notadir") == b"file"
    assert await driver.list("/m") == ["/m/notadir"]
    await driver.delete("/m")


# -- delete ----------------------------------------------------------------------------------
async def test_delete_file(driver: StorageDriver) -> None:
    await driver.put_content("/d/file", b"x")
    await driver.put_content("/d/other", b"y")
    await driver.delete("/d/file")
    with raises(PathNotFound, driver, "/d/file"):
        await driver.get_content("/d/file")
    with raises(PathNotFound, driver, "/d/file"):
        await driver.delete("/d/file")
    assert await driver.list("/d") == ["/d/other"]
    await driver.delete("/d")


async def test_delete_folder(driver: StorageDriver) -> None:
    for path in ("/d/x/1", "/d/x/y/2", "/d/x/y/z/3", "/d/keep"):
        await driver.put_content(path, b"x")
    await write_file(driver, "/d/x/big", blob(2 * MiB, 25))
    await driver.delete("/d/x")
    for path in ("/d/x", "/d/x/1", "/d/x/y/z/3"):
        with raises(PathNotFound, driver, path):
            await driver.stat(path)
    assert await driver.list("/d") == ["/d/keep"]
    await driver.delete("/d")
    with raises(PathNotFound, driver, "/d"):
        await driver.delete("/d")


async def test_delete_does_not_touch_prefix_siblings(driver: StorageDriver) -> None:
    siblings = ["/p/ab", "/p/abc/f", "/p/a-b/f", "/p/a.b", "/p/a_/f", "/p/b/a/f"]
    for path in ["/p/a/f", "/p/a/g/h", *siblings]:
        await driver.put_content(path, path.encode())
    await driver.delete("/p/a")
    for path in siblings:
        assert await driver.get_content(path) == path.encode()
    await driver.delete("/p/ab")
    assert await driver.get_content("/p/abc/f") == b"/p/abc/f"
    assert await driver.list("/p") == ["/p/a-b", "/p/a.b", "/p/a_", "/p/abc", "/p/b"]
    await driver.delete("/p")


# -- bulk: list_files and delete_files (what the garbage collector scans and sweeps with) ------
async def test_list_files_gives_every_file_below_with_details(driver: StorageDriver) -> None:
    files = {f"/l/d{i % 3}/sub{i % 2}/f{i}": bytes(i) for i in range(25)}
    files["/l/top"] = b"top"
    for path, data in files.items():
        await driver.put_content(path, data)
    await driver.put_content("/lx/sibling", b"not below /l")
    writer = await driver.writer("/l/d0/upload")  # an uncommitted upload is no file yet everywhere
    await writer.write(b"partial")
    await writer.close()
    found = [info async for page in driver.list_files("/l") for info in page]
    by_path = {info.path: info for info in found}
    assert len(by_path) == len(found), "a file was listed twice"
    by_path.pop("/l/d0/upload", None)
    assert set(by_path) == set(files)
    for path, info in by_path.items():
        assert not info.is_dir and info.size == len(files[path]), info
        assert info.modified is not None and info.modified.tzinfo is not None, info
    assert {i.path async for page in driver.list_files("/") for i in page} >= set(files) | {"/lx/sibling"}
    assert [page async for page in driver.list_files("/missing")] == []
    await driver.delete("/l")
    await driver.delete("/lx")


async def test_delete_files_in_bulk(driver: StorageDriver) -> None:
    doomed = [f"/b/x{i % 4}/f{i}" for i in range(120)]
    keep = ["/b/x0/keep", "/b/y/keep", "/b/x1-sibling"]
    await asyncio.gather(*(driver.put_content(p, b"1") for p in doomed + keep))
    await driver.delete_files([*doomed, "/b/never-existed", doomed[0]])
    assert sorted(await driver.list("/b")) == ["/b/x0", "/b/x1-sibling", "/b/y"]  # emptied dirs are gone
    assert await driver.list("/b/x0") == ["/b/x0/keep"]
    for path in keep:
        assert await driver.get_content(path) == b"1"
    await driver.delete_files([])
    with pytest.raises(InvalidPath):
        await driver.delete_files(["/b/ok", "/b/../escape"])
    await driver.delete("/b")


async def test_list_children_and_stat_many_in_bulk(driver: StorageDriver) -> None:
    """The batch forms of list (names only) and stat a names-only scan uses: what is missing (or a
    file, for list_children) is left out, every path is checked first."""
    await asyncio.gather(*(driver.put_content(p, b"12") for p in ["/c/a/f1", "/c/a/sub/f2", "/c/b/f3", "/cx/f4"]))
    got = await driver.list_children(["/c", "/c/a", "/c/missing", "/c/b/f3", "/c/a/sub"])
    assert {k: sorted(v) for k, v in got.items()} == {"/c": ["a", "b"], "/c/a": ["f1", "sub"], "/c/a/sub": ["f2"]}
    stats = await driver.stat_many(["/c/a/f1", "/c/b/f3", "/c/missing", "/c/a/nope"])
    assert set(stats) == {"/c/a/f1", "/c/b/f3"}
    info = stats["/c/a/f1"]
    assert info.path == "/c/a/f1" and info.size == 2 and not info.is_dir and info.modified is not None
    assert await driver.list_children([]) == {} and await driver.stat_many([]) == {}
    with pytest.raises(InvalidPath):
        await driver.list_children(["/c", "/c/../x"])
    with pytest.raises(InvalidPath):
        await driver.stat_many(["/c/a/f1", "/c/../x"])
    await driver.delete("/c")
    await driver.delete("/cx")


# -- paths -----------------------------------------------------------------------------------
INVALID_PATHS: list[Any] = [
    "", "/", "a", "//a", "/a/", "/a/../b", "/a b", "/a/./b",
    "/a\n", "/..", "/.", "/a//b", "/é", "/a\\b", "/a:b", "a/b", None, b"/a",
]  # fmt: skip


def _invalid_ops(driver: StorageDriver, bad: Any) -> dict[str, Callable[[], Awaitable[Any]]]:
    ops: dict[str, Callable[[], Awaitable[Any]]] = {
        "get_content": lambda: driver.get_content(bad),
        "put_content": lambda: driver.put_content(bad, b"x"),
        "put_contents": lambda: driver.put_contents([[ContentWrite("/ok/other", b"x")], [ContentWrite(bad, b"x")]]),
        "reader": lambda: drain(driver.reader(bad)),
        "writer": lambda: driver.writer(bad),
        "writer-append": lambda: driver.writer(bad, append=True),
        "stat": lambda: driver.stat(bad),
        "move-source": lambda: driver.move(bad, "/ok/dest"),
        "move-dest": lambda: driver.move("/ok/file", bad),
        "delete": lambda: driver.delete(bad),
        "redirect_url": lambda: driver.redirect_url(bad),
    }
    if bad is not None:  # start_after=None means "from the beginning"
        ops["walk-start-after"] = lambda: walk_paths(driver, "/", start_after=bad)
    if bad != "/":
        ops["list"] = lambda: driver.list(bad)
        ops["walk"] = lambda: walk_paths(driver, bad)
    return ops


@pytest.mark.parametrize("bad", INVALID_PATHS, ids=repr)
async def test_invalid_path(driver: StorageDriver, bad: Any) -> None:
    await driver.put_content("/ok/file", b"safe")
    for op, call in _invalid_ops(driver, bad).items():
        with raises(InvalidPath, driver):
            await call()
    with raises(InvalidPath, driver):
        driver.local_path(bad)
    assert await driver.get_content("/ok/file") == b"safe"
    assert await walk_paths(driver, "/") == ["/ok", "/ok/file"]
    await driver.delete("/ok")


@pytest.mark.parametrize("path", ["/.hidden", "/a..b", "/...", "/-", "/_x", "/A.Z-9_", "/a/b.c/d-e/f_g"])
async def test_unusual_valid_path(driver: StorageDriver, path: str) -> None:
    await driver.put_content(path, b"ok")
    assert await driver.get_content(path) == b"ok"
    assert (await driver.stat(path)).path == path
    top = "/" + path.split("/")[1]
    assert await driver.list("/") == [top]
    await driver.delete(top)


# -- redirect --------------------------------------------------------------------------------
async def test_redirect_url_contract(driver: StorageDriver) -> None:
    data = blob(100 * KiB, 26)
    await driver.put_content("/r/blob", data)
    for method in ("GET", "HEAD"):
        url = await driver.redirect_url("/r/blob", method)
        if url is None:
            continue
        assert isinstance(url, str) and url.startswith(("http://", "https://")), url
        import aiohttp  # the client only; drivers never import aiohttp.web

        async with aiohttp.ClientSession() as session:
            async with session.request(method, url) as response:
                assert response.status == 200, await response.text()
                if method == "GET":
                    assert await response.read() == data
                else:
                    assert int(response.headers["Content-Length"]) == len(data)
    for method in ("PUT", "DELETE", "POST", "get"):
        with raises(Unsupported, driver, "/r/blob"):
            await driver.redirect_url("/r/blob", method)
    await driver.delete("/r")


# -- memory ----------------------------------------------------------------------------------
@pytest.mark.slow
async def test_stream_1gib_in_bounded_memory(driver: StorageDriver, storage: Storage) -> None:
    if storage.holds_data_in_process:
        pytest.skip("this backend keeps the data in the process by design")
    import psutil  # the test extra's: a missing one fails, never skips
    process = psutil.Process()
    total, limit = storage.stream_size, 64 * MiB
    gc.collect()
    baseline = peak = process.memory_info().rss

    def sample() -> None:
        nonlocal peak
        peak = max(peak, process.memory_info().rss)

    written = hashlib.sha256()
    writer = await driver.writer("/huge/data")
    for i, piece in enumerate(stream(total, MiB, seed=27)):
        written.update(piece)
        await writer.write(piece)
        if i % 8 == 0:
            sample()
    await writer.commit()
    sample()
    read, size = hashlib.sha256(), 0
    async for chunk in driver.reader("/huge/data"):
        read.update(chunk)
        size += len(chunk)
        if size % (8 * MiB) < len(chunk):
            sample()
    sample()
    await driver.delete("/huge")
    assert size == total and read.hexdigest() == written.hexdigest()
    growth = peak - baseline
    assert growth < limit, f"memory grew by {growth / MiB:.1f} MiB while streaming 1 GiB"
