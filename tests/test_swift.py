"""The swift driver on a real OpenStack Swift (tests/swift_aio.py), beyond the conformance suite.

Config validation; Static Large Objects (segments, nested manifests past the cluster's limit,
moves that copy the manifest, deletes that take the segments along); bulk deletes; listing
pages; distribution's Dynamic Large Objects; retries on 503/429 and cut connections; tokens
renewed after a 401; TempURL redirects followed by a client and forged ones refused; two
registry processes alternating the PATCHes of one upload; a 1 GiB push in flat memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_support import digest_of, loc_of, make_config
from drivers.base import DriverConfigError, PathNotFound, StorageError
from drivers.factory import create_driver
from drivers.multipart import SIDECAR_SUFFIX
from emulators import SWIFT_TEMPURL_KEY, Proxy, swift_params, unique_name
from helpers import RssSampler
from registry.app import create_app
from swift_aio import KEY, SwiftServer
from test_cloud_registry import path_of, pieces, start_s3_registry

MiB = 1 << 20
KiB = 1 << 10


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_all(driver: Any, path: str) -> bytes:
    return b"".join([c async for c in driver.reader(path)])


@pytest.fixture
async def open_driver(swift_server: SwiftServer) -> AsyncIterator[Callable[..., Any]]:
    """Opens swift drivers on ONE fresh container; extra config keys may be given."""
    container = unique_name("swift")
    opened = []

    def make(**extra: Any) -> Any:
        driver = create_driver("swift", swift_params(swift_server, container=container, **extra))
        opened.append(driver)
        return driver

    yield make
    for driver in opened:
        await driver.close()


async def objects(driver: Any, under: str = "") -> list[str]:
    """Every object of the driver's container (below ``under``), segments and sidecars included."""
    return [e["name"] for e in await driver.fs.list_objects(driver.container, under)]


async def write(driver: Any, path: str, data: bytes, piece: int = 256 * KiB) -> None:
    writer = await driver.writer(path)
    for i in range(0, len(data), piece):
        await writer.write(data[i : i + piece])
    await writer.commit()


# --- configuration -----------------------------------------------------------------------

BASE = {"authurl": "http://127.0.0.1:9/auth/v1.0", "username": "a:b", "password": "pw", "container": "c"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"authurl": None}, "storage.swift.authurl is required"),
        ({"username": None}, "storage.swift.username is required"),
        ({"password": None}, "storage.swift.password is required"),
        ({"container": None}, "storage.swift.container is required"),
        ({"container": "a/b"}, "storage.swift.container: not a container name"),
        ({"authurl": "ftp://x"}, "storage.swift.authurl: not an http(s) URL"),
        ({"authversion": 4}, "storage.swift.authversion: expected 1, 2 or 3"),
        ({"chunksize": 1000}, "storage.swift.chunksize: must be at least 1048576"),
        ({"endpointtype": "private"}, "storage.swift.endpointtype: expected one of public, internal, admin"),
        ({"insecureskipverify": "perhaps"}, "storage.swift.insecureskipverify: expected true or false"),
        ({"prefix": "/a/../b"}, "storage.swift.prefix: not a clean path"),
        ({"tempurlmethods": {"GET": 1}}, "storage.swift.tempurlmethods: expected a list"),
        ({"password": ["hidden-password-value"]}, "storage.swift.password: expected a string, got <hidden>"),
    ],
)
def test_config_errors_are_clear(change: dict[str, Any], message: str) -> None:
    params = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(DriverConfigError) as info:
        create_driver("swift", params)
    assert message in str(info.value)
    assert "hidden-password-value" not in str(info.value)


async def test_config_reads_distribution_keys_and_environment_strings() -> None:
    driver = create_driver("swift", {
        **BASE, "AUTHVERSION": "3", "authurl": "https://keystone.example/v3", "tenant": 12345, "domain": "d",
        "tenantdomain": "td", "region": "RegionTwo", "endpointtype": "internal", "chunksize": "8MiB",
        "prefix": "/reg/", "insecureskipverify": "true", "tempurlmethods": "GET, PUT", "trustid": "",
    })  # fmt: skip
    try:
        auth = driver._auth_config
        assert (auth.effective_version, auth.tenant, auth.tenantdomain, auth.region, auth.endpointtype) == (
            3, "12345", "td", "RegionTwo", "internal")  # fmt: skip
        assert driver.part_size == 8 * MiB and driver.root == "c/reg/files" and driver.segments_root == "c/reg/segments"
        assert driver.fs._ssl is False and driver._tempurl_methods == ("GET", "PUT")
    finally:
        await driver.close()
    for url, version in (("http://h/auth/v1.0", 1), ("http://h:5000/v2.0", 2), ("http://h:5000/v3/", 3)):
        driver = create_driver("swift", {**BASE, "authurl": url})
        assert driver._auth_config.effective_version == version
        await driver.close()


# --- large objects -------------------------------------------------------------------------


async def test_writes_are_static_large_objects_and_resume_from_a_small_sidecar(open_driver: Callable[..., Any]) -> None:
    first = open_driver(chunksize=MiB)
    data = data_of(3 * MiB + 300 * KiB, 1)
    writer = await first.writer("/up/data")
    await writer.write(data[: MiB + 200 * KiB])  # one segment, and a tail under 1 MiB
    await writer.close()
    sidecar = await first.fs._cat_file(first._key("/up/data") + SIDECAR_SUFFIX)
    assert 200 * KiB < len(sidecar) < 200 * KiB + 4 * KiB  # the short tail waits in the sidecar
    second = open_driver(chunksize=MiB)
    writer = await second.writer("/up/data", append=True)
    assert writer.size == MiB + 200 * KiB
    await writer.write(data[MiB + 200 * KiB :])
    await writer.close()
    sidecar = await second.fs._cat_file(second._key("/up/data") + SIDECAR_SUFFIX)
    assert len(sidecar) < MiB + 4 * KiB
    third = open_driver(chunksize=MiB)
    writer = await third.writer("/up/data", append=True)
    await writer.commit()
    head = await third.fs.request("HEAD", third._key("/up/data"))
    assert head.headers["X-Static-Large-Object"] == "True"
    manifest = await third.fs.get_manifest(third._key("/up/data"))
    assert all(entry["bytes"] >= MiB for entry in manifest[:-1])  # no small segment but the last
    assert sum(entry["bytes"] for entry in manifest) == len(data)
    assert await read_all(third, "/up/data") == data
    assert await third.list("/up") == ["/up/data"]
    await third.delete("/up")
    assert await objects(third) == []  # the segments went with the manifest


async def test_manifests_nest_past_the_clusters_segment_limit(open_driver: Callable[..., Any]) -> None:
    driver = open_driver(chunksize=MiB)
    await driver._ensure_ready()
    assert driver.max_segments == 100  # what the fixture's cluster says in /info
    driver.max_segments = 3  # a smaller limit: two levels of nesting on 13 segments
    data = data_of(13 * MiB - 5, 2)
    await write(driver, "/big/data", data)
    top = await driver.fs.get_manifest(driver._key("/big/data"))
    assert len(top) == 2 and all(entry.get("sub_slo") for entry in top)
    assert hashlib.sha256(await read_all(driver, "/big/data")).digest() == hashlib.sha256(data).digest()
    assert (await driver.stat("/big/data")).size == len(data)
    await driver.delete("/big/data")
    assert await objects(driver) == []


async def test_move_copies_the_manifest_and_drops_replaced_segments(
    open_driver: Callable[..., Any], swift_server: SwiftServer
) -> None:
    async with Proxy(swift_server.endpoint, rewrite_urls=True) as proxy:
        driver = open_driver(chunksize=MiB, authurl=proxy.url + "/auth/v1.0")
        old, new = data_of(2 * MiB + 7, 3), data_of(3 * MiB + 9, 4)
        await write(driver, "/blobs/x/data", old)
        await write(driver, "/uploads/u/data", new)
        old_segments = [e["name"] for e in await driver.fs.get_manifest(driver._key("/blobs/x/data"))]
        new_segments = [e["name"] for e in await driver.fs.get_manifest(driver._key("/uploads/u/data"))]
        before = len(proxy.requests)
        await driver.move("/uploads/u/data", "/blobs/x/data")
        during = list(zip(proxy.requests[before:], proxy.queries[before:]))
        assert [q for (m, _), q in during if m == "COPY"] == ["multipart-manifest=get"]
        assert not [p for (m, p), _ in during if m in ("PUT", "GET") and "/segments/" in p]  # no data moved
        assert [e["name"] for e in await driver.fs.get_manifest(driver._key("/blobs/x/data"))] == new_segments
        assert await read_all(driver, "/blobs/x/data") == new
        left = ["/" + driver.container + "/" + name for name in await objects(driver, driver.prefix + "/segments/")]
        assert sorted(left) == sorted(new_segments)  # the replaced object's segments are gone
        assert not set(old_segments) & set(left)
        assert await driver.list("/") == ["/blobs"]
        await driver.delete("/blobs")
        assert await objects(driver) == []


async def test_directory_delete_is_bulk_and_takes_segments_along(
    open_driver: Callable[..., Any], swift_server: SwiftServer
) -> None:
    async with Proxy(swift_server.endpoint, rewrite_urls=True) as proxy:
        driver = open_driver(chunksize=MiB, authurl=proxy.url + "/auth/v1.0")
        limit = asyncio.Semaphore(16)

        async def put(i: int) -> None:
            async with limit:
                await driver.put_content(f"/d/small/{i:03d}", b"x" * i)

        await asyncio.gather(*(put(i) for i in range(40)))
        await write(driver, "/d/large", data_of(2 * MiB + 1, 5))  # a Static Large Object
        writer = await driver.writer("/d/upload/data")  # an upload in progress: segments, a sidecar
        await writer.write(data_of(2 * MiB + 300 * KiB, 6))
        await writer.close()
        await driver.put_content("/d-sibling", b"stays")
        assert len(await objects(driver, driver.prefix + "/segments/")) == 5
        before = len(proxy.requests)
        await driver.delete("/d")
        during = list(zip(proxy.requests[before:], proxy.queries[before:]))
        bulk = [q for (m, _), q in during if m == "POST" and "bulk-delete" in q]
        assert len(bulk) == 2  # the upload's segments, then the 40 small files: one request each
        assert len([1 for (m, _), _ in during if m == "DELETE"]) == 2  # the large object, the sidecar
        assert await objects(driver, driver.prefix + "/segments/") == []
        assert await driver.list("/") == ["/d-sibling"]
        with pytest.raises(PathNotFound):
            await driver.writer("/d/upload/data", append=True)
        await driver.delete("/d-sibling")


async def test_listings_page_with_markers_and_delimiters(
    open_driver: Callable[..., Any], swift_server: SwiftServer
) -> None:
    async with Proxy(swift_server.endpoint, rewrite_urls=True) as proxy:
        driver = open_driver(authurl=proxy.url + "/auth/v1.0")
        files = [f"/l/f{i:02d}" for i in range(10)] + [f"/l/d{i}/x/y" for i in range(5)] + ["/l/d2/z"]
        for path in files:
            await driver.put_content(path, path.encode())
        driver.fs.listing_limit = 3  # Swift caps pages at 10,000 entries; paging must not care
        before = len(proxy.requests)
        assert await driver.list("/l") == sorted([f"/l/f{i:02d}" for i in range(10)] + [f"/l/d{i}" for i in range(5)])
        pages = [q for (m, _), q in zip(proxy.requests[before:], proxy.queries[before:]) if m == "GET" and "format=json" in q]
        assert len(pages) == 6 and sum("marker=" in q for q in pages) == 5  # 15 entries, 3 a page, +1 empty
        assert await driver.list("/l/d2") == ["/l/d2/x", "/l/d2/z"]
        walked = [info.path async for info in driver.walk("/l")]
        assert [p for p in walked if p.startswith("/l/d2")] == ["/l/d2", "/l/d2/x", "/l/d2/x/y", "/l/d2/z"]
        assert len(walked) == 10 + 5 * 3 + 1
        await driver.delete("/l")
        assert await driver.list("/") == []


async def test_dynamic_large_objects_written_by_distribution(open_driver: Callable[..., Any]) -> None:
    """distribution 2.x wrote Dynamic Large Objects: a manifest with ``X-Object-Manifest`` over
    numbered segments under ``<prefix>/segments/``. They read, move and delete here."""
    driver = open_driver()
    await driver._ensure_ready()
    fs, container = driver.fs, driver.container
    segments = f"{driver.prefix}/segments/0ab/{'c' * 37}"
    parts = [data_of(MiB + 11, 7), data_of(MiB, 8), b"tail"]
    for i, part in enumerate(parts, 1):
        await fs.put_object(f"{container}/{segments}/{i:016d}", part)
    await fs.put_object(driver._key("/blobs/dlo/data"), b"", headers={"X-Object-Manifest": f"{container}/{segments}"})
    data = b"".join(parts)
    assert (await driver.stat("/blobs/dlo/data")).size == len(data)
    assert await read_all(driver, "/blobs/dlo/data") == data
    await driver.move("/blobs/dlo/data", "/blobs/moved/data")
    assert await read_all(driver, "/blobs/moved/data") == data
    assert len(await objects(driver, f"{driver.prefix}/segments/")) == 3  # the move kept them
    await driver.delete("/blobs")
    assert await objects(driver) == []


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["503-429", "cut-connections"])
async def test_requests_are_retried(open_driver: Callable[..., Any], swift_server: SwiftServer, failure: str) -> None:
    kind = {"fail_every": 3} if failure == "503-429" else {"drop_every": 4}
    async with Proxy(swift_server.endpoint, rewrite_urls=True, **kind) as proxy:
        driver = open_driver(chunksize=MiB, authurl=proxy.url + "/auth/v1.0")
        data = data_of(3 * MiB + 77, 9)
        await driver.put_content("/r/small", b"small")
        writer = await driver.writer("/r/big")
        for start in range(0, len(data), 512 * KiB):
            await writer.write(data[start : start + 512 * KiB])
        await writer.close()
        writer = await driver.writer("/r/big", append=True)
        await writer.commit()
        assert await driver.get_content("/r/small") == b"small"
        assert await read_all(driver, "/r/big") == data
        assert await driver.list("/r") == ["/r/big", "/r/small"]
        await driver.move("/r/big", "/r/moved")
        await driver.delete("/r")
        assert await driver.list("/") == []
        assert await objects(driver) == []
    assert proxy.failed + proxy.dropped >= 5, (proxy.failed, proxy.dropped)


async def test_a_revoked_token_is_renewed(open_driver: Callable[..., Any], swift_server: SwiftServer) -> None:
    driver = open_driver()
    await driver.put_content("/t/file", b"before")
    old = driver.fs._token.value
    swift_server.forget_tokens()  # tempauth's tokens live in memcached: all of them are gone now
    assert await driver.get_content("/t/file") == b"before"  # a 401, a new token, the same request
    assert driver.fs._token.value != old
    await driver.delete("/t")


async def test_wrong_credentials_are_a_clear_error_without_secrets(
    swift_server: SwiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-swift-password-that-must-not-leak"
    driver = create_driver("swift", swift_params(swift_server, password=wrong))
    texts = []
    try:
        for op in (driver.put_content("/x", b"1"), driver.get_content("/x"), driver.list("/")):
            with pytest.raises(StorageError) as info:
                await op
            texts.append(f"{info.value!s} {info.value!r} {info.value.__cause__!r}")
        assert "answered 401" in texts[0] and "authentication refused" in texts[0]
    finally:
        await driver.close()
    good = create_driver("swift", swift_params(swift_server))
    try:
        await good.put_content("/x", b"1")
        texts.append(str(await good.redirect_url("/x")))
        token = good.fs._token.value
        await good.delete("/x")
    finally:
        await good.close()
    text = "\n".join(texts) + caplog.text
    for secret in (wrong, KEY, SWIFT_TEMPURL_KEY, token):
        assert secret not in text


# --- TempURL redirects ---------------------------------------------------------------------


async def test_tempurl_redirect_is_followed_and_forgeries_are_refused(
    aiohttp_client: Any, open_driver: Callable[..., Any]
) -> None:
    driver = open_driver()
    client = await aiohttp_client(create_app(make_config(), driver))
    data = data_of(6 * MiB + 5, 10)  # two segments: a Static Large Object
    d = digest_of(data)
    r = await client.post("/v2/repo/blobs/uploads/")
    r = await client.patch(loc_of(r), data=data[:4 * MiB])
    r = await client.put(f"{loc_of(r)}&digest={d}", data=data[4 * MiB:])
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/repo/blobs/{d}", allow_redirects=False)
    assert r.status == 307
    url = r.headers["Location"]
    assert url.startswith(driver.fs._token.storage_url + "/") and "temp_url_sig=" in url
    head_url = await driver.redirect_url(f"/docker/registry/v2/blobs/sha256/{d[7:9]}/{d[7:]}/data", "HEAD")
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as got:  # what a client does with the 307
            assert got.status == 200 and await got.read() == data
        async with session.get(url, headers={"Range": "bytes=5000000-5000009"}) as got:
            assert got.status == 206 and await got.read() == data[5_000_000:5_000_010]
        async with session.head(head_url) as got:
            assert got.status == 200 and int(got.headers["Content-Length"]) == len(data)
        base, _, query = url.partition("?")
        fields = dict(item.split("=", 1) for item in query.split("&"))
        sig, expires = fields["temp_url_sig"], int(fields["temp_url_expires"])
        flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        other = base.rsplit("/", 2)[0] + "/" + "f" * 64 + "/data"
        forged = {
            "signature changed": f"{base}?temp_url_sig={flipped}&temp_url_expires={expires}",
            "expiry extended": f"{base}?temp_url_sig={sig}&temp_url_expires={expires + 3600}",
            "another object": f"{other}?temp_url_sig={sig}&temp_url_expires={expires}",
            "no signature": base,
            "signed with another key": await _signed(driver, base, "GET", "not-the-key", expires),
            "expired": await _signed(driver, base, "GET", SWIFT_TEMPURL_KEY, int(time.time()) - 10),
        }
        for why, bad in forged.items():
            async with session.get(bad) as got:
                assert got.status == 401, why
        async with session.put(url, data=b"overwrite") as got:  # signed for GET, not PUT
            assert got.status == 401
        async with session.delete(url) as got:
            assert got.status == 401
    assert await driver.get_content(f"/docker/registry/v2/blobs/sha256/{d[7:9]}/{d[7:]}/data") == data
    # storage.redirect.disable: the registry serves the bytes itself
    direct = await aiohttp_client(create_app(make_config(redirect_disable=True), driver))
    r = await direct.get(f"/v2/repo/blobs/{d}", allow_redirects=False)
    assert r.status == 200 and await r.read() == data


async def _signed(driver: Any, url: str, method: str, key: str, expires: int) -> str:
    """A TempURL for the object at ``url`` signed with ``key`` (the signature Swift checks)."""
    key_path = driver.container + url.split("/" + driver.container, 1)[1]
    return await driver.fs.temp_url(key_path, method, key, expires, driver._temp_digest)


async def test_tempurl_key_is_set_once_and_shared(open_driver: Callable[..., Any]) -> None:
    configured = open_driver()
    await configured.put_content("/k/file", b"key test")
    head = await configured.fs.request("HEAD", configured.container)
    assert head.headers["X-Container-Meta-Temp-Url-Key"] == SWIFT_TEMPURL_KEY
    unconfigured = open_driver(secretkey=None)  # no secretkey: the container's key is used
    url = await unconfigured.redirect_url("/k/file")
    assert url is not None and unconfigured._temp_key == SWIFT_TEMPURL_KEY
    async with aiohttp.ClientSession() as session, session.get(url) as got:
        assert got.status == 200 and await got.read() == b"key test"
    await configured.delete("/k")
    fresh = create_driver("swift", {**swift_params_of(configured), "container": unique_name("nokey"), "secretkey": None})
    try:  # a container without a key and no secretkey: a random key is made, as distribution does
        await fresh.put_content("/f", b"fresh")
        url = await fresh.redirect_url("/f")
        assert url is not None and fresh._temp_key and len(fresh._temp_key) == 64
        async with aiohttp.ClientSession() as session, session.get(url) as got:
            assert got.status == 200 and await got.read() == b"fresh"
        await fresh.delete("/f")
    finally:
        await fresh.close()


def swift_params_of(driver: Any) -> dict[str, Any]:
    auth = driver._auth_config
    return {"authurl": auth.authurl, "username": auth.username, "password": auth.password,
            "container": driver.container, "prefix": driver.prefix}  # fmt: skip


# --- the registry on Swift, as processes ------------------------------------------------------


async def test_chunked_upload_alternating_between_two_processes(swift_server: SwiftServer, tmp_path: Path) -> None:
    """Two registry processes on one container and one http.secret; the PATCHes of one upload
    alternate between them. Each resumes from the small sidecar: no process reads back the bytes
    written so far, segments go out as the bytes arrive, the commit writes a manifest (and the
    tail under 1 MiB the sidecar held) and copies it to the blob's key."""
    async with Proxy(swift_server.endpoint, rewrite_urls=True) as proxy:
        params = swift_params(swift_server, authurl=proxy.url + "/auth/v1.0", chunksize=5 * MiB)
        a = start_s3_registry("a", params, tmp_path, driver="swift")
        b = start_s3_registry("b", params, tmp_path, driver="swift")
        try:
            data = data_of(4 * (5 * MiB + 700 * KiB) + 1234, 11)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            async with aiohttp.ClientSession() as http:
                r = await http.post(f"{a.url}/v2/shared/repo/blobs/uploads/")
                assert r.status == 202, await r.text()
                location = path_of(r.headers["Location"])
                step = 5 * MiB + 700 * KiB
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
                before_commit = len(proxy.requests)
                r = await http.put(f"{b.url}{location}&digest={digest}")
                assert r.status == 201, await r.text()
                commit = proxy.requests[before_commit:]
                for server in (a, b):
                    async with http.get(f"{server.url}/v2/shared/repo/blobs/{digest}") as got:
                        assert got.status == 200 and hashlib.sha256(await got.read()).hexdigest() == digest[7:]
        finally:
            a.stop()
            b.stop()
    segment_puts = [p for m, p in proxy.requests if m == "PUT" and "/segments/" in p]
    assert len(segment_puts) >= 5  # the bytes went out as segments while they arrived
    read_back = [p for m, p in proxy.requests if m == "GET" and ("/segments/" in p or "/_uploads/" in p and p.endswith("/data"))]
    assert read_back == [], "an instance read back upload data"
    # the commit writes the manifest and at most the sidecar's short tail as the last segment
    assert len([p for m, p in commit if m == "PUT" and "/segments/" in p]) <= 1, "the commit moved data"
    assert [m for m, p in commit if m == "COPY"] == ["COPY"]  # upload -> blob: the manifest is copied


#: the bound on the registry's RSS growth while 1 GiB streams through it into Swift (push) and
#: back out (pull, redirects off): two 5 MiB segments in flight, the API layer's body batches,
#: aiohttp buffers and allocator slack. Measured here: about 37 MiB; holding the blob would take
#: 1024 MiB.
MEMORY_BOUND = 128 * MiB


@pytest.mark.slow
async def test_1gib_push_and_pull_through_the_registry_in_flat_memory(swift_server: SwiftServer, tmp_path: Path) -> None:
    params = swift_params(swift_server, chunksize=5 * MiB)  # 205 segments: nested past the limit of 100
    registry = start_s3_registry("mem", params, tmp_path, driver="swift", redirect={"disable": True})
    size = 1 << 30
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as http:
            warm = hashlib.sha256(b"w").hexdigest()
            r = await http.post(f"{registry.url}/v2/warm/blobs/uploads/?digest=sha256:{warm}", data=b"w")
            assert r.status == 201, await r.text()
            with RssSampler(registry.proc.pid) as rss:
                r = await http.post(f"{registry.url}/v2/big/blobs/uploads/")
                assert r.status == 202, await r.text()
                hasher = hashlib.sha256()

                async def body() -> AsyncIterator[bytes]:
                    for piece in pieces(size, seed=12):
                        hasher.update(piece)
                        yield piece

                started = time.monotonic()
                r = await http.patch(registry.url + path_of(r.headers["Location"]), data=body(),
                                     headers={"Content-Type": "application/octet-stream"})  # fmt: skip
                assert r.status == 202, await r.text()
                digest = "sha256:" + hasher.hexdigest()
                r = await http.put(f"{registry.url}{path_of(r.headers['Location'])}&digest={digest}")
                assert r.status == 201, await r.text()
                pushed = time.monotonic() - started
                back, length = hashlib.sha256(), 0
                async with http.get(f"{registry.url}/v2/big/blobs/{digest}") as got:
                    assert got.status == 200
                    async for chunk in got.content.iter_chunked(MiB):
                        back.update(chunk)
                        length += len(chunk)
                assert length == size and back.hexdigest() == digest[7:]
            growth = rss.peak - rss.baseline
            print(f"\n1 GiB pushed in {pushed:.1f}s, pulled in {time.monotonic() - started - pushed:.1f}s; registry RSS "
                  f"baseline {rss.baseline / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB, growth {growth / MiB:.0f} MiB; {rss.samples} samples")  # fmt: skip
            assert growth < MEMORY_BOUND, f"registry memory grew by {growth / MiB:.0f} MiB"
    finally:
        registry.stop()
