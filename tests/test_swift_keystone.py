"""The swift driver authenticating with Keystone v3 (tests/keystone_aio.py: Debian's keystone on
sqlite, and a Swift proxy with keystonemiddleware in front of the same Swift servers).

Every scope distribution's keys can ask for: a project by name in the user's domain, a project by
id, a trust; the catalog's object-store endpoint picked by region and interface; the failures a
wrong password or region gives. Keystone 22 has no v2.0 API: v2 is not tested.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import aiohttp
import pytest

from drivers.base import StorageError
from drivers.factory import create_driver
from emulators import unique_name
from keystone_aio import PASSWORD, PROJECT, REGION, USER, Keystone

MiB = 1 << 20


def keystone_params(ks: Keystone, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "authurl": ks.url, "username": USER, "password": PASSWORD, "domain": "Default", "tenant": PROJECT,
        "region": REGION, "container": unique_name("ks"), "secretkey": "keystone-tempurl-key-0123456789",
        "chunksize": MiB,
    }  # fmt: skip
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize("scope", ["project-name", "project-id", "trust", "internal-endpoint"])
async def test_v3_scopes_round_trip(keystone_server: Keystone, scope: str) -> None:
    ks = keystone_server
    extra: dict[str, Any] = {
        "project-name": {"authversion": 3},
        "project-id": {"tenant": None, "tenantid": ks.project_id},
        "trust": {"tenant": None, "trustid": ks.trust_id},
        "internal-endpoint": {"endpointtype": "internal", "tenantdomain": "Default"},
    }[scope]
    if scope == "trust" and not ks.trust_id:
        pytest.fail("the fixture could not create a trust")
    driver = create_driver("swift", keystone_params(ks, **extra))
    try:
        data = random.Random(1).randbytes(2 * MiB + 333)  # two segments and a short one: an SLO
        writer = await driver.writer("/ks/up/data")
        await writer.write(data[:MiB + 5])
        await writer.close()
        writer = await driver.writer("/ks/up/data", append=True)
        await writer.write(data[MiB + 5 :])
        await writer.commit()
        await driver.move("/ks/up/data", "/ks/blob/data")
        assert await driver.list("/ks") == ["/ks/blob"]
        got = b"".join([c async for c in driver.reader("/ks/blob/data")])
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        token = driver.fs._token
        assert token.project_id == ks.project_id
        assert token.storage_url == f"{ks.swift_url}/v1/AUTH_{ks.project_id}"  # from the catalog
        url = await driver.redirect_url("/ks/blob/data")
        assert url is not None and url.startswith(token.storage_url)
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200 and await resp.read() == data
        await driver.delete("/ks")
        assert await driver.list("/") == []
        assert [e["name"] for e in await driver.fs.list_objects(driver.container)] == []  # segments too
    finally:
        await driver.close()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"password": "wrong-keystone-password"}, "POST /v3/auth/tokens answered 401: authentication refused"),
        ({"region": "Nowhere"}, "no public object-store endpoint in region 'Nowhere' in the catalog"),
        ({"tenant": "no-such-project"}, "answered 401"),
    ],
)
async def test_v3_failures_are_clear(keystone_server: Keystone, change: dict[str, Any], message: str) -> None:
    driver = create_driver("swift", keystone_params(keystone_server, **change))
    try:
        with pytest.raises(StorageError) as info:
            await driver.put_content("/x", b"x")
        assert message in str(info.value)
        assert PASSWORD not in str(info.value) and "wrong-keystone-password" not in str(info.value)
    finally:
        await driver.close()
