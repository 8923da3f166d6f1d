"""Storage faults across push, pull, delete and upload resume, on real drivers (filesystem, S3 on moto).

tests/faults.py makes the n-th call of one operation of the real driver fail (a full disk, a timeout,
a connection reset) through the driver's own error translation. Every case checks what a client
sees: a clean OCI error naming the cause (507 STORAGE_FULL, 503 UNAVAILABLE with Retry-After), one
log line without a traceback, nothing half visible, no session or temporary file left behind, and
that the client's retry succeeds with every byte intact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_support import OCI_MANIFEST, digest_of, image_manifest, loc_of, make_config, push_blob
from drivers.base import PathNotFound, StorageDriver
from drivers.filesystem import FilesystemDriver
from faults import FaultyDriver
from registry.app import create_app
from registry.store import paths

EXPECTED = {"enospc": (507, "STORAGE_FULL"), "timeout": (503, "UNAVAILABLE"), "reset": (503, "UNAVAILABLE")}
#: (driver, operation) a one-request push makes no call of, by design: S3 streams it straight to
#: the blob's key (tests/test_cloud_registry.py), so there is no move to fail. Any other fault
#: that does not fire fails its test: a step that stopped calling the driver is news.
NO_CALL_IN_MONOLITHIC_PUSH = {("s3", "move")}


@pytest.fixture(params=["filesystem", "s3"])
async def faulty(request: Any, tmp_path: Path) -> AsyncIterator[FaultyDriver]:
    if request.param == "s3":
        from drivers.factory import create_driver
        from emulators import s3_params

        inner: StorageDriver = create_driver("s3", s3_params(request.getfixturevalue("moto_emulator")))
    else:
        inner = FilesystemDriver(str(tmp_path / "root"))
    driver = FaultyDriver(inner)
    yield driver
    await driver.close()


@pytest.fixture
async def client(aiohttp_client: Any, faulty: FaultyDriver) -> Any:
    return await aiohttp_client(create_app(make_config(redirect_disable=True), faulty))


async def assert_fault(r: Any, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    """The answer names the cause in the OCI envelope; the log says it in one line, no traceback."""
    status, code = EXPECTED[fault]
    body = await r.json()
    assert r.status == status and body["errors"][0]["code"] == code, (r.status, body)
    assert body["errors"][0]["message"] and "Traceback" not in await r.text()
    if status == 503:
        assert int(r.headers["Retry-After"]) > 0
    records = [rec for rec in caplog.records if code in rec.getMessage()]
    assert records, [rec.getMessage() for rec in caplog.records]
    assert all(rec.exc_info is None and "\n" not in rec.getMessage() for rec in records)
    assert not any(rec.exc_info for rec in caplog.records if rec.name.startswith("registry"))
    caplog.clear()


async def no_sessions_left(driver: FaultyDriver, repo: str) -> None:
    """No upload session, and on the filesystem no temporary file, anywhere below the repository."""
    try:
        sessions = await driver.inner.list(f"{paths.repo(repo)}/_uploads")
    except PathNotFound:
        sessions = []
    assert sessions == [], sessions
    if isinstance(driver.inner, FilesystemDriver):
        leftovers = [str(p) for p in Path(driver.inner.root).rglob("*") if "~" in p.name]
        assert leftovers == [], leftovers


async def no_multipart_uploads(driver: FaultyDriver) -> None:
    """On S3: no multipart upload left open (its parts would be billed forever)."""
    inner: Any = driver.inner
    if inner.name == "s3":
        listed = await inner._s3("list_multipart_uploads", Bucket=inner.bucket)
        prefix = inner.root.split("/", 1)[1] if "/" in inner.root else ""
        assert [u["Key"] for u in listed.get("Uploads", []) if u["Key"].startswith(prefix)] == []


# --- push -------------------------------------------------------------------------------------------

MONOLITHIC_FAULTS = [
    ("writer.write", "enospc"), ("writer.write", "reset"), ("writer.commit", "enospc"),
    ("writer.commit", "timeout"), ("move", "timeout"), ("put_content", "enospc"),
]


@pytest.mark.parametrize("op,fault", MONOLITHIC_FAULTS, ids=[f"{o}-{f}" for o, f in MONOLITHIC_FAULTS])
async def test_monolithic_push_fault_then_retry(client, faulty, caplog, op, fault):
    data = os.urandom(6 << 20)  # more than one writer flush and one S3 part
    d = digest_of(data)
    rule = faulty.fail(op, fault, path="/_layers/" if op == "put_content" else "")
    r = await client.post(f"/v2/faults/push/blobs/uploads/?digest={d}", data=data)
    if not rule.fired:
        assert (faulty.inner.name, op) in NO_CALL_IN_MONOLITHIC_PUSH, f"{faulty.inner.name}: no {op} call in one request"
        pytest.skip(f"this driver makes no {op} call in a one-request push")
    await assert_fault(r, fault, caplog)
    faulty.clear()
    assert (await client.head(f"/v2/faults/push/blobs/{d}")).status == 404  # nothing half visible
    await no_sessions_left(faulty, "faults/push")
    await no_multipart_uploads(faulty)
    r = await client.post(f"/v2/faults/push/blobs/uploads/?digest={d}", data=data)
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/faults/push/blobs/{d}")
    assert r.status == 200 and await r.read() == data
    await no_sessions_left(faulty, "faults/push")


@pytest.mark.parametrize("fault", ["enospc", "timeout"])
async def test_patch_fault_then_resume_from_the_reported_range(client, faulty, caplog, fault):
    """A PATCH that fails midway: the session stays, its Range says what arrived, and the client
    continues from there (it never has to start over)."""
    data = os.urandom(12 << 20)
    d = digest_of(data)
    r = await client.post("/v2/faults/resume/blobs/uploads/")
    r = await client.patch(loc_of(r), data=data[: 5 << 20])
    assert r.status == 202
    loc = loc_of(r)
    faulty.fail("writer.write", fault, nth=2)
    r = await client.patch(loc, data=data[5 << 20:], headers={"Content-Range": f"{5 << 20}-{len(data) - 1}"})
    await assert_fault(r, fault, caplog)
    faulty.clear()
    status = await client.get(loc)
    assert status.status == 204
    have = int(status.headers["Range"].split("-")[1]) + 1
    assert 5 << 20 <= have < len(data)
    r = await client.patch(loc_of(status), data=data[have:], headers={"Content-Range": f"{have}-{len(data) - 1}"})
    assert r.status == 202, await r.text()
    r = await client.put(f"{loc_of(r)}&digest={d}")
    assert r.status == 201, await r.text()
    assert await (await client.get(f"/v2/faults/resume/blobs/{d}")).read() == data
    await no_sessions_left(faulty, "faults/resume")
    await no_multipart_uploads(faulty)


COMMIT_FAULTS = [
    ("writer.commit", "enospc", ""), ("put_content", "enospc", "/hashstates/"), ("move", "reset", ""),
    ("put_content", "timeout", "/_layers/"), ("delete", "timeout", "/_uploads/"),
]


@pytest.mark.parametrize("op,fault,where", COMMIT_FAULTS, ids=[f"{o}-{f}" for o, f, _ in COMMIT_FAULTS])
async def test_commit_fault_then_retry(client, faulty, caplog, op, fault, where):
    """The closing PUT fails at each of its storage steps; the same PUT again (no data resent)
    answers 201 for the right digest."""
    data = os.urandom(300_000)
    d = digest_of(data)
    r = await client.post("/v2/faults/commit/blobs/uploads/")
    r = await client.patch(loc_of(r), data=data[:200_000])
    loc = loc_of(r)
    rule = faulty.fail(op, fault, path=where)
    r = await client.put(f"{loc}&digest={d}", data=data[200_000:])
    assert rule.fired, f"{faulty.inner.name}: no {op} call at this point of a commit"
    await assert_fault(r, fault, caplog)
    faulty.clear()
    r = await client.put(f"{loc}&digest={d}", data=data[200_000:])  # the client's retry, as it was
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == d, await r.text()
    assert await (await client.get(f"/v2/faults/commit/blobs/{d}")).read() == data
    await no_sessions_left(faulty, "faults/commit")
    await no_multipart_uploads(faulty)


@pytest.mark.parametrize("nth", range(1, 6))
async def test_manifest_put_fault_then_retry(client, faulty, caplog, nth):
    """The n-th small write of a tagged manifest PUT hits a full disk: 507, the tag is either
    absent or complete, nothing dangles, and the retry stores it all."""
    config, layer = b'{"os":"linux","architecture":"amd64"}', os.urandom(2000)
    await push_blob(client, "faults/manifest", config)
    await push_blob(client, "faults/manifest", layer)
    body = image_manifest(config, [layer], subject={"mediaType": OCI_MANIFEST, "digest": digest_of(b"s"), "size": 1})
    rule = faulty.fail("put_content", "enospc", nth=nth)
    r = await client.put("/v2/faults/manifest/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert rule.fired, f"a manifest PUT made fewer than {nth} small writes"
    await assert_fault(r, "enospc", caplog)
    faulty.clear()
    tags = (await (await client.get("/v2/faults/manifest/tags/list")).json())["tags"]
    by_tag = await client.get("/v2/faults/manifest/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert (tags == ["v1"]) == (by_tag.status == 200), (tags, by_tag.status)
    r = await client.put("/v2/faults/manifest/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    r = await client.get("/v2/faults/manifest/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status == 200 and await r.read() == body
    referrers = (await (await client.get(f"/v2/faults/manifest/referrers/{digest_of(b's')}")).json())["manifests"]
    assert [m["digest"] for m in referrers] == [digest_of(body)]
    if isinstance(faulty.inner, FilesystemDriver):
        assert [str(p) for p in Path(faulty.inner.root).rglob("*") if "~" in p.name] == []


# --- pull -------------------------------------------------------------------------------------------

async def test_pull_faults_then_retry(client, faulty, caplog):
    data = os.urandom(3 << 20)
    config = b'{"os":"linux"}'
    await push_blob(client, "faults/pull", config)
    d = await push_blob(client, "faults/pull", data)
    body = image_manifest(config, [data])
    r = await client.put("/v2/faults/pull/manifests/latest", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    for op, fault in (("get_content", "timeout"), ("stat", "reset")):
        faulty.fail(op, fault)
        r = await client.get("/v2/faults/pull/manifests/latest", headers={"Accept": OCI_MANIFEST})
        await assert_fault(r, fault, caplog)
        faulty.clear()
        r = await client.get("/v2/faults/pull/manifests/latest", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and await r.read() == body
    faulty.fail("stat", "timeout", path="/blobs/")
    r = await client.get(f"/v2/faults/pull/blobs/{d}")
    await assert_fault(r, "timeout", caplog)
    faulty.clear()
    if not isinstance(faulty.inner, FilesystemDriver):  # streamed (the filesystem sends the file)
        faulty.fail("reader.next", "reset", nth=2)
        with pytest.raises(aiohttp.ClientPayloadError):  # cut short: never a wrong body
            r = await client.get(f"/v2/faults/pull/blobs/{d}")
            await r.read()
        faulty.clear()
        assert any("connection closed" in rec.getMessage() for rec in caplog.records)
    r = await client.get(f"/v2/faults/pull/blobs/{d}")
    assert r.status == 200 and await r.read() == data


# --- delete -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("nth", range(1, 5))
async def test_delete_fault_then_retry(client, faulty, caplog, nth):
    """A delete by digest fails at its n-th removal: nothing dangles, and the retry completes it."""
    config, layer = b'{"os":"linux"}', os.urandom(1000)
    await push_blob(client, "faults/delete", config)
    await push_blob(client, "faults/delete", layer)
    body = image_manifest(config, [layer], subject={"mediaType": OCI_MANIFEST, "digest": digest_of(b"t"), "size": 1})
    d = digest_of(body)
    for tag in ("a", "b"):
        r = await client.put(f"/v2/faults/delete/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201
    rule = faulty.fail("delete", "timeout", nth=nth)
    r = await client.delete(f"/v2/faults/delete/manifests/{d}")
    assert rule.fired, f"a delete by digest made fewer than {nth} removals"
    await assert_fault(r, "timeout", caplog)
    faulty.clear()
    for tag in (await (await client.get("/v2/faults/delete/tags/list")).json())["tags"]:
        r = await client.get(f"/v2/faults/delete/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200, f"tag {tag} listed but not served"
    r = await client.delete(f"/v2/faults/delete/manifests/{d}")
    assert r.status in (202, 404), await r.text()
    assert (await client.head(f"/v2/faults/delete/manifests/{d}", headers={"Accept": OCI_MANIFEST})).status == 404
    assert (await (await client.get("/v2/faults/delete/tags/list")).json())["tags"] == []
    r = await client.get(f"/v2/faults/delete/referrers/{digest_of(b't')}")
    assert (await r.json())["manifests"] == []



def test_storage_errors_map_to_one_table():
    """registry/errors.py maps each typed driver error once: full 507, may-pass 503 + Retry-After,
    anything else 500 naming the kind; no storage path or backend message reaches the client."""
    from drivers.base import StorageError, StorageFull, StorageUnavailable
    from registry.errors import storage_error

    full = storage_error(StorageFull("filesystem", "/docker/registry/v2/x", "OSError: [Errno 28]"))
    assert (full.status, full.code.name) == (507, "STORAGE_FULL")
    unavailable = storage_error(StorageUnavailable("s3", "/docker/registry/v2/x", "ReadTimeoutError: secret"))
    assert unavailable.status == 503 and int(unavailable.headers["Retry-After"]) > 0
    other = storage_error(StorageError("s3", "/docker/registry/v2/x", "weird"))
    assert other.status == 500 and "storage error" in other.message
    for err in (full, unavailable, other):
        text = str(err.body())
        assert "/docker/registry" not in text and "secret" not in text and "Errno" not in text
