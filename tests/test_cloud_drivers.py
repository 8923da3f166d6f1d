"""Cloud-driver behaviour beyond the conformance suite, on the real emulators.

Config validation, resumable multipart uploads across instances, the memory budget spilling
to disk, server-side multipart copies, presigned URLs (azurite checks SAS signatures),
retries through a proxy that fails requests with 503/429, and credentials that never show up
in errors or logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from drivers.base import DriverConfigError, PathNotFound, StorageError
from drivers.factory import create_driver
from drivers.multipart import SIDECAR_SUFFIX, MemoryBudget, PartWriter
from emulators import (
    AZURITE_KEY,
    Proxy,
    S3_SECRET_KEY,
    Emulator,
    azure_params,
    gcs_params,
    oss_params,
    s3_params,
)

MiB = 1 << 20
KiB = 1 << 10


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_all(driver: Any, path: str) -> bytes:
    return b"".join([c async for c in driver.reader(path)])


PARAMS: dict[str, Callable[..., dict[str, Any]]] = {
    "s3": s3_params,
    "oss": oss_params,
    "gcs": gcs_params,
    "azure": azure_params,
}
SMALL_PART = {"s3": 5 * MiB, "oss": 5 * MiB, "gcs": 1 * MiB, "azure": 1 * MiB}


@pytest.fixture(params=["s3", "oss", "gcs", "azure"])
def backend(request: pytest.FixtureRequest) -> tuple[str, Emulator]:
    fixture = {"s3": "moto_emulator", "oss": "moto_emulator", "gcs": "gcs_emulator", "azure": "azurite_emulator"}
    return request.param, request.getfixturevalue(fixture[request.param])


@pytest.fixture
async def open_driver(backend: tuple[str, Emulator]) -> AsyncIterator[Callable[..., Any]]:
    """Opens drivers of the backend on ONE fresh bucket; extra config keys may be given."""
    name, emu = backend
    base = PARAMS[name](emu, chunksize=SMALL_PART[name])
    opened = []

    def make(**extra: Any) -> Any:
        driver = create_driver(name, {**base, **extra})
        opened.append(driver)
        return driver

    yield make
    for driver in opened:
        await driver.close()


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("s3", {"region": "us-east-1"}, "storage.s3.bucket is required"),
        ("s3", {"bucket": "b"}, "storage.s3.region is required"),
        ("s3", {"bucket": "b", "region": "r", "chunksize": 1024}, "storage.s3.chunksize: must be at least 5242880"),
        ("s3", {"bucket": "b", "region": "r", "secure": "maybe"}, "storage.s3.secure: expected true or false"),
        ("s3", {"bucket": "b", "region": "r", "accesskey": "AKIA"}, "accesskey and secretkey must be given together"),
        ("s3", {"bucket": "b", "region": "r", "storageclass": "COLD"}, "storage.s3.storageclass: expected one of"),
        ("s3", {"bucket": "b", "region": "r", "multipartcopymaxconcurrency": "many"}, "expected an integer"),
        ("gcs", {}, "storage.gcs.bucket is required"),
        ("gcs", {"bucket": "b", "chunksize": 300000}, "must be a multiple of 262144"),
        ("gcs", {"bucket": "b", "keyfile": "/nonexistent/key.json"}, "storage.gcs.keyfile: cannot read"),
        ("gcs", {"bucket": "b", "credentials": {"type": "service_account"}}, "lacks client_email, private_key"),
        ("azure", {"accountkey": AZURITE_KEY, "container": "c"}, "storage.azure.accountname is required"),
        ("azure", {"accountname": "a", "accountkey": "not base64!", "container": "c"}, "not a base64 account key"),
        ("azure", {"accountname": "a", "accountkey": AZURITE_KEY}, "storage.azure.container is required"),
        ("oss", {"bucket": "b", "accesskeyid": "k", "accesskeysecret": "s"}, "storage.oss.region is required"),
        ("oss", {"bucket": "b", "region": "oss-cn-beijing", "accesskeyid": "k"}, "accesskeyid and accesskeysecret"),
    ],
)
def test_config_errors_are_clear(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(DriverConfigError) as info:
        create_driver(name, params)
    assert message in str(info.value)


def test_config_accepts_environment_strings() -> None:
    """``REGISTRY_STORAGE_S3_*`` overrides arrive as strings (and keys in any case)."""
    driver = create_driver(
        "s3",
        {"BUCKET": "b", "region": "eu-west-1", "secure": "false", "chunksize": "8MiB", "forcepathstyle": "true",
         "multipartcopythresholdsize": "67108864", "encrypt": "true", "keyid": "kms-key"},
    )  # fmt: skip
    assert driver.part_size == 8 * MiB
    assert driver.copy_threshold == 64 * MiB
    assert driver._put_extra == {"StorageClass": "STANDARD", "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "kms-key"}


async def test_oss_endpoint_from_region_and_virtual_hosted_urls() -> None:
    """OSS wants virtual-hosted addressing at ``<region>[-internal].aliyuncs.com``: botocore
    builds exactly that (a presigned URL is built locally, no request needed). On moto's IP
    endpoint botocore falls back to path style by itself, which is how the suite runs OSS."""
    driver = create_driver(
        "oss", {"bucket": "reg-bucket", "region": "oss-cn-beijing", "internal": True, "accesskeyid": "k",
                "accesskeysecret": "secret-x", "rootdirectory": "/root"},
    )  # fmt: skip
    try:
        assert driver.fs.endpoint_url == "https://oss-cn-beijing-internal.aliyuncs.com"
        assert driver.fs.config_kwargs["request_checksum_calculation"] == "when_required"
        url = await driver.redirect_url("/docker/registry/v2/blobs/x/data")
        assert url is not None
        assert url.startswith("https://reg-bucket.oss-cn-beijing-internal.aliyuncs.com/root/docker/registry/v2/blobs/x/data?")
        assert "oss-cn-beijing%2Fs3%2Faws4_request" in url  # SigV4 scoped to the OSS region
    finally:
        await driver.close()


def test_metadata_addresses_are_disabled() -> None:
    import drivers.cloud  # noqa: F401

    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert os.environ["NO_GCE_CHECK"].lower() == "true"


# --- resumable multipart uploads -------------------------------------------------------


async def test_upload_resumes_on_another_instance_without_moving_parts(open_driver: Callable[..., Any]) -> None:
    """PATCHes landing on different instances: each resumes from the small sidecar alone."""
    first = open_driver()
    part = first.part_size
    data = data_of(2 * part + part // 2 + 123, 1)
    pieces = [data[: part + 7], data[part + 7 : 2 * part + 99], data[2 * part + 99 :]]
    writer = await first.writer("/uploads/u1/data")
    await writer.write(pieces[0])
    await writer.close()
    for piece in pieces[1:]:
        other = open_driver()
        writer = await other.writer("/uploads/u1/data", append=True)
        assert writer.size == len(data) - sum(len(p) for p in pieces[pieces.index(piece) :])
        # the state another instance needs is small: never more than one part of bytes
        sidecar = await other._part_store().get_small(other._key("/uploads/u1/data") + SIDECAR_SUFFIX)
        assert len(sidecar) < part + 4 * KiB
        await writer.write(piece)
        await writer.close()
    last = open_driver()
    writer = await last.writer("/uploads/u1/data", append=True)
    assert writer.size == len(data)
    await writer.commit()
    assert hashlib.sha256(await read_all(last, "/uploads/u1/data")).digest() == hashlib.sha256(data).digest()
    assert await last.list("/uploads/u1") == ["/uploads/u1/data"]  # the sidecar is gone
    await last.delete("/uploads")


async def test_deleting_an_upload_directory_aborts_its_multipart_upload(moto_emulator: Emulator) -> None:
    """Upload purging deletes the directory of an abandoned upload: its parts must go too."""
    driver = create_driver("s3", s3_params(moto_emulator, chunksize=5 * MiB))
    try:
        writer = await driver.writer("/repo/_uploads/u1/data")
        await writer.write(data_of(6 * MiB, 5))  # one part uploaded, the rest in the sidecar
        await writer.close()
        await driver.put_content("/repo/_uploads/u1/startedat", b"2020-01-01T00:00:00Z")
        listed = await driver._s3("list_multipart_uploads", Bucket=driver.bucket)
        assert len(listed.get("Uploads", [])) == 1
        await driver.delete("/repo/_uploads/u1")
        listed = await driver._s3("list_multipart_uploads", Bucket=driver.bucket)
        assert listed.get("Uploads", []) == []
        assert await driver.list("/") == []
    finally:
        await driver.close()


async def test_fresh_writer_discards_an_abandoned_upload(open_driver: Callable[..., Any]) -> None:
    driver = open_driver()
    writer = await driver.writer("/up/data")
    await writer.write(data_of(driver.part_size + 5, 2))
    await writer.close()
    writer = await driver.writer("/up/data")
    await writer.write(b"new")
    await writer.commit()
    assert await driver.get_content("/up/data") == b"new"
    with pytest.raises(PathNotFound):
        await driver.writer("/up/data", append=True)
    await driver.delete("/up")


async def test_memory_budget_spills_to_disk(open_driver: Callable[..., Any]) -> None:
    """Eight concurrent uploads under a budget of two parts: the rest spools to disk."""
    driver = open_driver()
    part = driver.part_size
    budget = MemoryBudget(2 * part)
    blobs = [data_of(2 * part + 1000 * i, 10 + i) for i in range(8)]

    async def upload(i: int) -> None:
        key = driver._key(f"/mem/{i}")
        writer = PartWriter(driver._part_store(), f"/mem/{i}", key, part, budget=budget)
        for start in range(0, len(blobs[i]), 256 * KiB):
            await writer.write(blobs[i][start : start + 256 * KiB])
        await writer.commit()

    await asyncio.gather(*(upload(i) for i in range(8)))
    assert budget.used == 0
    assert budget.peak <= 2 * part
    for i, expected in enumerate(blobs):
        assert await read_all(driver, f"/mem/{i}") == expected
    await driver.delete("/mem")


async def test_direct_write_to_final_key_is_one_request_for_small_blobs(open_driver: Callable[..., Any]) -> None:
    """The store writes a blob whose digest it knows straight to blobs/...: no upload, no copy."""
    driver = open_driver()
    writer = await driver.writer("/blobs/sha256/ab/abcd/data")
    await writer.write(b"config blob")
    assert writer._state is None  # no multipart upload was started
    await writer.commit()
    assert await driver.get_content("/blobs/sha256/ab/abcd/data") == b"config blob"
    await driver.delete("/blobs")


async def test_s3_large_move_is_a_parallel_multipart_copy(moto_emulator: Emulator) -> None:
    driver = create_driver(
        "s3", s3_params(moto_emulator, multipartcopythresholdsize=5 * MiB, multipartcopychunksize=5 * MiB)
    )
    try:
        data = data_of(17 * MiB + 3, 3)
        await driver.put_content("/uploads/x/data", data)
        await driver.move("/uploads/x/data", "/blobs/x/data")
        head = await driver._s3("head_object", Bucket=driver.bucket, Key=driver._key("/blobs/x/data").split("/", 1)[1])
        assert head["ETag"].strip('"').endswith("-4")  # four copied parts
        assert await read_all(driver, "/blobs/x/data") == data
        assert await driver.list("/") == ["/blobs"]
    finally:
        await driver.close()


# --- redirects -------------------------------------------------------------------------


async def test_azure_sas_redirect_is_verified_by_azurite(azurite_emulator: Emulator) -> None:
    driver = create_driver("azure", azure_params(azurite_emulator))
    try:
        await driver.put_content("/blobs/b/data", b"layer bytes")
        url = await driver.redirect_url("/blobs/b/data")
        assert url is not None and "sig=" in url
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 200 and await resp.read() == b"layer bytes"
            forged = url.replace("sp=r", "sp=rw")
            async with session.get(forged) as resp:
                assert resp.status == 403  # azurite checks the signature
    finally:
        await driver.close()


async def test_gcs_signed_url_with_a_service_account_key(gcs_emulator: Emulator, tmp_path: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    keyfile = tmp_path / "key.json"
    keyfile.write_text(json.dumps({
        "type": "service_account", "client_email": "registry@test.iam.gserviceaccount.com",
        "private_key": pem, "private_key_id": "k1", "token_uri": "http://127.0.0.1:9/token",
        "project_id": "test",
    }))  # fmt: skip
    driver = create_driver("gcs", gcs_params(gcs_emulator, keyfile=str(keyfile)))
    unsigned = create_driver("gcs", gcs_params(gcs_emulator))
    try:
        await driver.put_content("/blobs/g/data", b"gcs bytes")
        url = await driver.redirect_url("/blobs/g/data")
        assert url is not None and "X-Goog-Signature=" in url and url.startswith(gcs_emulator.endpoint)
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200 and await resp.read() == b"gcs bytes"
        assert await unsigned.redirect_url("/blobs/g/data") is None  # nothing to sign with
        await driver.delete("/blobs")
    finally:
        await driver.close()
        await unsigned.close()


async def test_s3_redirect_only_with_signing_credentials(moto_emulator: Emulator) -> None:
    params = s3_params(moto_emulator)
    signed = create_driver("s3", params)
    try:
        await signed.put_content("/b/data", b"x" * 10)
        url = await signed.redirect_url("/b/data")
        assert url is not None and "X-Amz-Signature=" in url
        assert S3_SECRET_KEY not in url
    finally:
        await signed.close()


# --- retries ---------------------------------------------------------------------------


async def test_requests_are_retried_on_503_and_429(backend: tuple[str, Emulator]) -> None:
    name, emu = backend
    async with Proxy(emu.endpoint, fail_every=3) as proxy:
        params = PARAMS[name](emu, chunksize=SMALL_PART[name])
        endpoint_key = {"s3": "regionendpoint", "oss": "endpoint", "gcs": "endpoint", "azure": "serviceurl"}[name]
        params[endpoint_key] = params[endpoint_key].replace(emu.endpoint, proxy.url)
        driver = create_driver(name, params)
        try:
            data = data_of(2 * driver.part_size + 77, 4)
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
        finally:
            await driver.close()
        assert proxy.failed >= 5, proxy.failed


# --- secrets ---------------------------------------------------------------------------


async def test_credentials_never_in_errors_or_logs(
    moto_emulator: Emulator, azurite_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "session-token-that-must-not-leak-0123456789"
    s3 = create_driver("s3", s3_params(moto_emulator, bucket="no-such-bucket-here", sessiontoken=token))
    wrong_key = "d3JvbmcgYWNjb3VudCBrZXkgdGhhdCBtdXN0IG5vdCBsZWFrIGFueXdoZXJlIQ=="
    azure = create_driver("azure", azure_params(azurite_emulator, accountkey=wrong_key))
    errors: list[str] = []
    try:
        for driver in (s3, azure):
            for op in (driver.put_content("/x/y", b"data"), driver.get_content("/x/y"), driver.list("/x")):
                with pytest.raises(StorageError) as info:
                    await op
                errors.append(f"{info.value!s} {info.value!r} {info.value.__cause__!r}")
            errors.append(repr(driver))
        errors.append(caplog.text)
        text = "\n".join(errors)
        assert "403" in text or "AuthenticationFailed" in text  # azurite refused the wrong key
        for secret in (S3_SECRET_KEY, token, wrong_key, AZURITE_KEY):
            assert secret not in text
    finally:
        await s3.close()
        await azure.close()


def test_config_errors_never_echo_secrets() -> None:
    with pytest.raises(DriverConfigError) as info:
        create_driver("s3", {"bucket": "b", "region": "r", "accesskey": "AKIA", "secretkey": ["top-secret-value"]})
    assert "top-secret-value" not in str(info.value) and "storage.s3.secretkey" in str(info.value)


async def test_s3_bulk_delete_is_one_request_per_thousand_keys(moto_emulator: Emulator) -> None:
    """The collector's sweep on S3: DeleteObjects with 1,000 keys a request, not one DELETE per key."""
    driver = create_driver("s3", s3_params(moto_emulator, rootdirectory="/bulk-delete"))
    calls: list[tuple[str, int]] = []
    original = driver._s3

    async def counting(method: str, **kwargs: Any) -> Any:
        calls.append((method, len(kwargs.get("Delete", {}).get("Objects", []))))
        return await original(method, **kwargs)

    try:
        paths = [f"/blobs/{i % 7}/f{i}" for i in range(2100)]
        present = paths[::150]  # S3 deletes keys that do not exist without complaint: few need to exist
        await asyncio.gather(*(driver.put_content(p, b"x") for p in present))
        await driver.put_content("/blobs/keep", b"k")
        driver._s3 = counting  # type: ignore[method-assign]
        await driver.delete_files(paths)
        assert sorted(n for m, n in calls if m == "delete_objects") == [100, 1000, 1000]
        assert [m for m, _ in calls if m != "delete_objects"] == []
        listed = [i.path async for page in driver.list_files("/") for i in page]
        assert listed == ["/blobs/keep"]
        assert sum(m == "list_objects_v2" for m, _ in calls) == 1
        await driver.delete("/blobs")
    finally:
        await driver.close()
