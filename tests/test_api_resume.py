"""Uploads move between instances sharing storage and secret, without reading data back."""

from __future__ import annotations

import os
import uuid

import pytest

from api_support import count_reads, digest_of, loc_of, make_config
from drivers.filesystem import FilesystemDriver
from drivers.inmemory import InMemoryDriver
from registry.app import create_app
from registry.store import paths


@pytest.fixture(params=["filesystem", "inmemory"])
def twin_drivers(request, tmp_path):
    """Two driver instances over the same storage, as two processes would have."""
    if request.param == "filesystem":
        return FilesystemDriver(str(tmp_path)), FilesystemDriver(str(tmp_path))
    root = f"/shared-{uuid.uuid4().hex}"
    return InMemoryDriver(root), InMemoryDriver(root)


async def _clients(aiohttp_client, twin_drivers):
    a = await aiohttp_client(create_app(make_config(), twin_drivers[0]))
    b = await aiohttp_client(create_app(make_config(), twin_drivers[1]))
    return a, b


async def test_upload_alternating_instances_reads_nothing_back(aiohttp_client, twin_drivers):
    counters = [count_reads(d) for d in twin_drivers]
    a, b = await _clients(aiohttp_client, twin_drivers)
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = await a.post("/v2/repo/blobs/uploads/")
    loc = loc_of(r)
    pieces = [data[i:i + 700_001] for i in range(0, len(data), 700_001)]
    offset = 0
    for i, piece in enumerate(pieces[:-1]):
        client = (a, b)[i % 2]
        r = await client.patch(loc, data=piece, headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"})
        assert r.status == 202, await r.text()
        offset += len(piece)
        loc = loc_of(r)
    r = await b.put(f"{loc}&digest={digest_of(data)}", data=pieces[-1])
    assert r.status == 201, await r.text()
    upload_reads = sum(n for c in counters for p, n in c.items() if "/_uploads/" in p)
    assert upload_reads == 0
    r = await a.get(f"/v2/repo/blobs/{digest_of(data)}")
    assert await r.read() == data


async def test_missing_hash_state_falls_back_to_rereading(aiohttp_client, twin_drivers):
    counters = [count_reads(d) for d in twin_drivers]
    a, b = await _clients(aiohttp_client, twin_drivers)
    data = os.urandom(500_000)
    r = await a.post("/v2/repo/blobs/uploads/")
    upload_id = r.headers["Docker-Upload-UUID"]
    r = await a.patch(loc_of(r), data=data[:200_000])
    r = await a.patch(loc_of(r), data=data[200_000:450_000])
    # lose the newest state (as a crash between the data and the state write would)
    await twin_drivers[0].delete(paths.upload_hashstate("repo", upload_id, "sha256", 450_000))
    r = await b.put(f"{loc_of(r)}&digest={digest_of(data)}", data=data[450_000:])
    assert r.status == 201, await r.text()
    reread = sum(n for c in counters for p, n in c.items() if "/_uploads/" in p)
    assert reread == 300_000  # from the newest surviving state (200000) to the end
    assert await (await a.get(f"/v2/repo/blobs/{digest_of(data)}")).read() == data


async def test_state_written_in_reference_format(aiohttp_client, twin_drivers):
    a, _ = await _clients(aiohttp_client, twin_drivers)
    r = await a.post("/v2/repo/blobs/uploads/")
    upload_id = r.headers["Docker-Upload-UUID"]
    await a.patch(loc_of(r), data=b"a" * 1000)
    state = await twin_drivers[1].get_content(paths.upload_hashstate("repo", upload_id, "sha256", 1000))
    assert state[:4] == b"sha\x03" and len(state) == 4 + 32 + 64 + 8
    started = await twin_drivers[1].get_content(paths.upload_started_at("repo", upload_id))
    assert started.decode().endswith("Z")


async def test_other_secret_rejects_state(aiohttp_client, twin_drivers):
    a = await aiohttp_client(create_app(make_config(), twin_drivers[0]))
    b = await aiohttp_client(create_app(make_config(secret="another"), twin_drivers[1]))
    r = await a.post("/v2/repo/blobs/uploads/")
    r = await b.patch(loc_of(r), data=b"x")
    assert r.status == 400 and (await r.json())["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
