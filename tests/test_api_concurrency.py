"""Concurrent pushes end consistent; a crash between any two storage writes leaves nothing dangling."""

from __future__ import annotations

import asyncio
import functools
import os

import pytest

from api_support import OCI_MANIFEST, client, digest_of, driver, loc_of, make_config, push_blob, push_image  # noqa: F401
from drivers.base import StorageDriver
from registry.app import create_app


async def test_same_blob_pushed_concurrently(client):
    data = os.urandom(300_000)
    d = digest_of(data)

    async def monolithic():
        r = await client.post(f"/v2/repo/blobs/uploads/?digest={d}", data=data)
        return r.status

    async def chunked():
        r = await client.post("/v2/repo/blobs/uploads/")
        r = await client.patch(loc_of(r), data=data[:100_000])
        r = await client.patch(loc_of(r), data=data[100_000:])
        r = await client.put(f"{loc_of(r)}&digest={d}")
        return r.status

    statuses = await asyncio.gather(*[monolithic() for _ in range(4)], *[chunked() for _ in range(4)])
    assert statuses == [201] * 8
    r = await client.get(f"/v2/repo/blobs/{d}")
    assert await r.read() == data


async def test_same_tag_pushed_concurrently(client):
    results = await asyncio.gather(*[push_image(client, "repo", "latest", seed=bytes([65 + i])) for i in range(6)])
    digests = {d for d, _ in results}
    r = await client.get("/v2/repo/manifests/latest")
    body = await r.read()
    assert r.headers["Docker-Content-Digest"] == digest_of(body) and digest_of(body) in digests
    assert (await (await client.get("/v2/repo/tags/list")).json())["tags"] == ["latest"]
    # the reverse index holds stale entries for the losers; deleting a loser leaves the tag alone
    for d in digests - {digest_of(body)}:
        assert (await client.delete(f"/v2/repo/manifests/{d}")).status == 202
    assert (await client.get("/v2/repo/manifests/latest")).status == 200
    assert (await client.delete(f"/v2/repo/manifests/{digest_of(body)}")).status == 202
    assert (await client.get("/v2/repo/manifests/latest")).status == 404
    assert (await (await client.get("/v2/repo/tags/list")).json())["tags"] == []


async def test_concurrent_tag_and_delete(client):
    d, body = await push_image(client, "repo", "a")

    async def retag(i):
        r = await client.put(f"/v2/repo/manifests/t{i}", data=body, headers={"Content-Type": OCI_MANIFEST})
        return r.status

    async def delete():
        return (await client.delete(f"/v2/repo/manifests/{d}")).status

    await asyncio.gather(*[retag(i) for i in range(5)], delete())
    # whatever the interleaving: every listed tag resolves to a manifest that can be fetched
    tags = (await (await client.get("/v2/repo/tags/list")).json())["tags"]
    for tag in tags:
        r = await client.get(f"/v2/repo/manifests/{tag}")
        assert r.status in (200, 404)
        if r.status == 200:
            assert await r.read() == body


class Crash(Exception):
    pass


def crash_after(driver, n: int) -> None:
    """Make the real driver fail at its (n+1)-th write of a small file (a process dying there).
    Batches (``put_contents``) go file by file through ``put_content`` meanwhile, in their stage
    order (the contract's default), so every file of a batch is a point to fail at; the
    filesystem's own batch is killed at each of its files by tests/test_crash.py."""
    calls = {"n": 0}
    original = driver.put_content

    async def put_content(path, data):
        if calls["n"] >= n:
            raise Crash(path)
        calls["n"] += 1
        await original(path, data)

    driver.put_content = put_content
    driver.put_contents = functools.partial(StorageDriver.put_contents, driver)


@pytest.mark.parametrize("crash_at", range(8))
async def test_crash_during_manifest_put_leaves_nothing_dangling(aiohttp_client, driver, crash_at):
    c = await aiohttp_client(create_app(make_config(), driver))
    config, layer = b'{"os":"linux"}', b"layer bytes"
    await push_blob(c, "repo", config)
    await push_blob(c, "repo", layer)
    from api_support import image_manifest

    subject = digest_of(b"some subject")
    body = image_manifest(config, [layer], subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": 1})
    crash_after(driver, crash_at)
    r = await c.put("/v2/repo/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    del driver.put_content, driver.put_contents  # "restart": the real methods again
    assert r.status in (201, 500)
    d = digest_of(body)
    tags = (await (await c.get("/v2/repo/tags/list")).json())["tags"]
    by_digest = await c.get(f"/v2/repo/manifests/{d}")
    by_tag = await c.get("/v2/repo/manifests/v1")
    if by_tag.status == 200:  # a tag is only ever visible complete
        assert await by_tag.read() == body and by_digest.status == 200
    assert tags in ([], ["v1"]) and (tags == ["v1"]) == (by_tag.status == 200)
    if by_digest.status == 200:
        assert await by_digest.read() == body
    referrers = (await (await c.get(f"/v2/repo/referrers/{subject}")).json())["manifests"]
    assert [m["digest"] for m in referrers] in ([], [d]) and bool(referrers) <= (by_digest.status == 200)
    # pushing again after the crash completes everything
    r = await c.put("/v2/repo/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert (await (await c.get(f"/v2/repo/referrers/{subject}")).json())["manifests"][0]["digest"] == d


async def test_crash_before_the_blob_moves_then_retry(aiohttp_client, driver):
    c = await aiohttp_client(create_app(make_config(), driver))
    data = os.urandom(200_000)
    d = digest_of(data)
    r = await c.post("/v2/repo/blobs/uploads/")
    r = await c.patch(loc_of(r), data=data)
    loc = loc_of(r)

    async def move(source, dest):
        raise Crash(source)

    driver.move = move
    r = await c.put(f"{loc}&digest={d}")
    assert r.status == 500
    del driver.move
    assert (await c.head(f"/v2/repo/blobs/{d}")).status == 404  # nothing visible
    r = await c.put(f"{loc}&digest={d}")  # the client retries: the committed data is found
    assert r.status == 201, await r.text()
    assert await (await c.get(f"/v2/repo/blobs/{d}")).read() == data
