"""The registry as real processes on object storage (moto): uploads shared by two instances,
and memory under many concurrent large pushes."""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from drivers.base import PathNotFound
from emulators import Emulator, Proxy, s3_params
from fixtures_registry import RunningRegistry
from helpers import ROOT, RssSampler, free_port, wait_http

MiB = 1 << 20
SECRET = "two-instances-share-this-secret-0123456789"


def start_s3_registry(name: str, params: dict[str, Any], workdir: Path, *, driver: str = "s3",
                      **storage: Any) -> RunningRegistry:  # fmt: skip
    """``python -m registry serve`` on the s3 driver (or ``driver``), on a free port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {driver: params, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}, **storage},  # fmt: skip
        "http": {"addr": f"127.0.0.1:{port}", "secret": SECRET},
    }
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", str(path)], stdout=log, stderr=subprocess.STDOUT,
            cwd=ROOT, env={k: v for k, v in __import__("os").environ.items() if not k.startswith("REGISTRY_")},
        )  # fmt: skip
    running = RunningRegistry(name, port, workdir, proc, log_path, path)
    try:
        wait_http(f"{running.url}/v2/", timeout=30, proc=proc)
    except Exception:
        running.stop()
        raise RuntimeError(f"registry {name} did not start:\n{running.log_tail()}") from None
    return running


def path_of(location: str) -> str:
    parts = urllib.parse.urlsplit(location)
    return urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))


def pieces(total: int, seed: int, chunk: int = MiB) -> Iterator[bytes]:
    """Deterministic incompressible bytes, generated piece by piece (never held whole)."""
    base = random.Random(seed).randbytes(chunk)
    for i, start in enumerate(range(0, total, chunk)):
        r = (i * 104_729) % chunk
        yield (base[r:] + base[:r])[: min(chunk, total - start)]


async def test_chunked_upload_alternating_between_two_processes(moto_emulator: Emulator, tmp_path: Path) -> None:
    """Two registry processes share one bucket and one http.secret; the PATCHes of one upload
    alternate between them. Each resumes the multipart upload from its small state object:
    no process reads back the bytes written so far."""
    async with Proxy(moto_emulator.endpoint) as proxy:
        params = s3_params(moto_emulator, chunksize=5 * MiB, regionendpoint=proxy.url)
        a = start_s3_registry("a", params, tmp_path)
        b = start_s3_registry("b", params, tmp_path)
        try:
            data = random.Random(7).randbytes(3 * 6 * MiB + 1234)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            async with aiohttp.ClientSession() as http:
                r = await http.post(f"{a.url}/v2/shared/repo/blobs/uploads/")
                assert r.status == 202, await r.text()
                location = path_of(r.headers["Location"])
                step = 6 * MiB
                for i, start in enumerate(range(0, len(data), step)):
                    piece = data[start : start + step]
                    server = (a, b)[i % 2]
                    r = await http.patch(
                        server.url + location, data=piece,
                        headers={"Content-Range": f"{start}-{start + len(piece) - 1}",
                                 "Content-Type": "application/octet-stream"},
                    )  # fmt: skip
                    assert r.status == 202, await r.text()
                    assert r.headers["Range"] == f"0-{start + len(piece) - 1}"
                    location = path_of(r.headers["Location"])
                r = await http.put(f"{b.url}{location}&digest={digest}")
                assert r.status == 201, await r.text()
                for server in (a, b):
                    async with http.get(f"{server.url}/v2/shared/repo/blobs/{digest}") as got:
                        assert got.status == 200 and hashlib.sha256(await got.read()).hexdigest() == digest[7:]
        finally:
            a.stop()
            b.stop()
        upload_data = [
            (m, p) for m, p in proxy.requests if "/_uploads/" in p and p.endswith("/data") and m == "GET"
        ]
        assert upload_data == [], "an instance read back upload data"
        parts = [p for m, p in proxy.requests if m == "PUT" and "/_uploads/" in p and p.endswith("/data")]
        assert len(parts) >= 3  # the bytes went out as multipart parts as they arrived


PUSHES, PUSH_SIZE = 16, 64 * MiB
#: the bound asserted on the registry process's RSS growth while 16 x 64 MiB (1 GiB) stream in
#: at once: the drivers' part-buffer budget (32 MiB here; the rest spools to disk), plus the API
#: layer's two 4 MiB body batches per upload (128 MiB), plus HTTP, SDK and allocator overhead.
#: Measured here: about 255 MiB (217 MiB with MALLOC_ARENA_MAX=2); the bound leaves room for
#: allocator variance, and is far below what holding each upload (64 MiB x 16) would take.
MEMORY_BOUND = 384 * MiB


@pytest.mark.slow
async def test_concurrent_large_pushes_stay_in_bounded_memory(moto_emulator: Emulator, tmp_path: Path) -> None:
    params = s3_params(moto_emulator, uploadmemorybudget=32 * MiB)
    registry = start_s3_registry("mem", params, tmp_path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as http:
            # warm up (imports, first connections) before taking the baseline
            r = await http.post(f"{registry.url}/v2/warm/blobs/uploads/?digest=sha256:{hashlib.sha256(b'w').hexdigest()}",
                                data=b"w")  # fmt: skip
            assert r.status == 201, await r.text()
            with RssSampler(registry.proc.pid) as rss:

                async def push(i: int) -> str:
                    r = await http.post(f"{registry.url}/v2/load/r{i}/blobs/uploads/")
                    assert r.status == 202, await r.text()
                    hasher = hashlib.sha256()

                    async def body() -> AsyncIterator[bytes]:
                        for piece in pieces(PUSH_SIZE, seed=100 + i):
                            hasher.update(piece)
                            yield piece

                    r = await http.patch(registry.url + path_of(r.headers["Location"]), data=body(),
                                         headers={"Content-Type": "application/octet-stream"})  # fmt: skip
                    assert r.status == 202, await r.text()
                    digest = "sha256:" + hasher.hexdigest()
                    r = await http.put(f"{registry.url}{path_of(r.headers['Location'])}&digest={digest}")
                    assert r.status == 201, await r.text()
                    return digest

                started = time.monotonic()
                digests = await asyncio.gather(*(push(i) for i in range(PUSHES)))
                elapsed = time.monotonic() - started
            growth = rss.peak - rss.baseline
            print(f"\n{PUSHES} x {PUSH_SIZE // MiB} MiB pushed in {elapsed:.1f}s; registry RSS "
                  f"baseline {rss.baseline / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB, growth {growth / MiB:.0f} MiB; {rss.samples} samples")  # fmt: skip
            r = await http.head(f"{registry.url}/v2/load/r3/blobs/{digests[3]}")
            assert r.status == 200 and int(r.headers["Content-Length"]) == PUSH_SIZE
            assert growth < MEMORY_BOUND, f"registry memory grew by {growth / MiB:.0f} MiB"
    finally:
        registry.stop()


async def test_monolithic_push_goes_straight_to_the_blob_key(moto_emulator: Emulator, aiohttp_client: Any) -> None:
    """``POST ?digest=`` with the body: the digest is known before the bytes arrive, so the bytes
    stream to ``blobs/.../data`` directly: no upload object, no server-side copy. A wrong
    digest leaves nothing behind."""
    from api_support import make_config
    from drivers.factory import create_driver
    from registry.app import create_app

    async with Proxy(moto_emulator.endpoint) as proxy:
        driver = create_driver("s3", s3_params(moto_emulator, chunksize=5 * MiB, regionendpoint=proxy.url))
        try:
            client = await aiohttp_client(create_app(make_config(), driver))
            data = random.Random(9).randbytes(12 * MiB + 5)  # a multipart upload, three parts
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = await client.post(f"/v2/direct/blobs/uploads/?digest={digest}", data=data)
            assert r.status == 201, await r.text()
            assert not [p for _, p in proxy.requests if "/_uploads/" in p], "an upload object was written"
            assert [m for m, p in proxy.requests if p.endswith(digest[7:] + "/data") and m == "PUT"]
            r = await client.get(f"/v2/direct/blobs/{digest}", allow_redirects=False)
            assert r.status == 307
            wrong = "sha256:" + "0" * 64
            r = await client.post(f"/v2/direct/blobs/uploads/?digest={wrong}", data=b"not that")
            assert r.status == 400 and (await r.json())["errors"][0]["code"] == "DIGEST_INVALID"
            assert await driver.list("/docker/registry/v2/blobs/sha256") == [
                f"/docker/registry/v2/blobs/sha256/{digest[7:9]}"
            ]
            with pytest.raises(PathNotFound):
                await driver.writer(f"/docker/registry/v2/blobs/sha256/00/{'0' * 64}/data", append=True)
        finally:
            await driver.close()


async def test_post_then_single_put_goes_straight_to_the_blob_key(moto_emulator: Emulator, aiohttp_client: Any) -> None:
    """``POST`` then one ``PUT ?digest=`` with the whole body: no PATCH came, so the digest is
    known before the bytes, and they go to ``blobs/.../data`` without an upload copy."""
    from api_support import make_config
    from drivers.factory import create_driver
    from registry.app import create_app

    async with Proxy(moto_emulator.endpoint) as proxy:
        driver = create_driver("s3", s3_params(moto_emulator, chunksize=5 * MiB, regionendpoint=proxy.url))
        try:
            client = await aiohttp_client(create_app(make_config(redirect_disable=True), driver))
            data = random.Random(10).randbytes(11 * MiB)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = await client.post("/v2/single/blobs/uploads/")
            assert r.status == 202
            location = path_of(r.headers["Location"])
            before = len(proxy.requests)
            r = await client.put(f"{location}&digest={digest}", data=data)
            assert r.status == 201, await r.text()
            during = proxy.requests[before:]
            assert not [p for m, p in during if m == "PUT" and "/_uploads/" in p and p.endswith("/data")]
            assert (await client.get(f"/v2/single/blobs/{digest}")).status == 200
            assert await (await client.get(f"/v2/single/blobs/{digest}")).read() == data
            assert await driver.list("/docker/registry/v2/repositories/single") == [
                "/docker/registry/v2/repositories/single/_layers"
            ]  # the upload is gone
            # a wrong digest: 400, the bytes are not stored
            r = await client.post("/v2/single/blobs/uploads/")
            r = await client.put(f"{path_of(r.headers['Location'])}&digest=sha256:{'1' * 64}", data=b"other")
            assert r.status == 400 and (await r.json())["errors"][0]["code"] == "DIGEST_INVALID"
        finally:
            await driver.close()
