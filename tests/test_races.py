"""Races inside one registry process, on real drivers (filesystem, inmemory, S3 on moto).

Within one process the manifest and tag operations of a repository are linearizable
(registry/store/locks.py): whatever the interleaving, the outcome is one some order of the
operations gives, nobody gets a 500, and every tag the listing shows resolves. Bounded rounds;
each round is a fresh manifest. Races between processes are in test_races_processes.py.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from api_support import (  # noqa: F401  (fixtures)
    OCI_MANIFEST,
    client,
    digest_of,
    driver,
    image_manifest,
    loc_of,
    push_blob,
    push_image,
)
from registry.api.base import STORE_KEY
from registry.store import paths

ROUNDS = {"filesystem": 20, "inmemory": 20, "s3": 4}


def rounds(driver: Any) -> int:
    return ROUNDS.get(driver.name, 4)


async def listed_tags(client: Any, repo: str) -> list[str]:
    r = await client.get(f"/v2/{repo}/tags/list")
    if r.status == 404:
        return []
    assert r.status == 200, await r.text()
    return (await r.json())["tags"]


async def assert_tags_resolve(client: Any, repo: str) -> dict[str, str]:
    """Every listed tag GETs 200 with a manifest whose digest is its header; tag -> digest."""
    out = {}
    for tag in await listed_tags(client, repo):
        r = await client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200, (tag, r.status, await r.text())
        body = await r.read()
        assert digest_of(body) == r.headers["Docker-Content-Digest"]
        by_digest = await client.get(f"/v2/{repo}/manifests/{digest_of(body)}", headers={"Accept": OCI_MANIFEST})
        assert by_digest.status == 200, (tag, "listed, but its manifest is gone")
        out[tag] = digest_of(body)
    return out


def store_of(client: Any) -> Any:
    return client.server.app[STORE_KEY]


async def test_tag_put_racing_delete_by_digest(client, driver):
    """Tag PUTs of a manifest racing its delete by digest: each PUT 201, the delete 202, and the
    end state is a sequential one: the manifest exists exactly when some tag PUT came after the
    delete, and then only tags that point at it remain."""
    for n in range(rounds(driver)):
        d, body = await push_image(client, "race/tagdel", f"base{n}", seed=f"r{n}".encode())

        async def tag(i: int) -> int:
            r = await client.put(f"/v2/race/tagdel/manifests/t{n}-{i}", data=body,
                                 headers={"Content-Type": OCI_MANIFEST})
            return r.status

        async def delete() -> int:
            return (await client.delete(f"/v2/race/tagdel/manifests/{d}")).status

        statuses = await asyncio.gather(tag(0), delete(), tag(1), tag(2))
        assert statuses == [201, 202, 201, 201], statuses
        tags = await assert_tags_resolve(client, "race/tagdel")
        exists = (await client.head(f"/v2/race/tagdel/manifests/{d}", headers={"Accept": OCI_MANIFEST})).status == 200
        ours = {t for t, digest in tags.items() if digest == d}
        assert f"base{n}" not in tags  # it pointed at the manifest when the delete came
        assert exists == bool(ours), (exists, tags)
    assert store_of(client).locks.busy() == 0


async def test_tag_move_racing_delete_of_old_manifest(client, driver):
    """Moving a tag from A to B while A is deleted: in every order the tag ends at B."""
    for n in range(rounds(driver)):
        a, _ = await push_image(client, "race/move", f"t{n}", seed=f"a{n}".encode())
        b, body_b = await push_image(client, "race/move", None, seed=f"b{n}".encode())

        async def move() -> int:
            r = await client.put(f"/v2/race/move/manifests/t{n}", data=body_b, headers={"Content-Type": OCI_MANIFEST})
            return r.status

        async def delete() -> int:
            return (await client.delete(f"/v2/race/move/manifests/{a}")).status

        assert await asyncio.gather(delete(), move()) == [202, 201]
        tags = await assert_tags_resolve(client, "race/move")
        assert tags.get(f"t{n}") == b, tags


async def test_delete_racing_pulls(client, driver):
    """Pulls racing a delete get the whole manifest and blob or a 404, never a 500 or a part."""
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(600_000)
    await push_blob(client, "race/pull", config)
    await push_blob(client, "race/pull", layer)
    for n in range(rounds(driver)):
        body = image_manifest(config, [layer], annotations={"round": str(n)})
        d = digest_of(body)
        r = await client.put(f"/v2/race/pull/manifests/p{n}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201

        async def pull(ref: str) -> int:
            r = await client.get(f"/v2/race/pull/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            if r.status == 200:
                assert await r.read() == body
            return r.status

        async def pull_blob() -> int:
            r = await client.get(f"/v2/race/pull/blobs/{digest_of(layer)}")
            assert r.status == 200 and await r.read() == layer
            return r.status

        async def delete() -> int:
            return (await client.delete(f"/v2/race/pull/manifests/{d}")).status

        statuses = await asyncio.gather(pull(f"p{n}"), pull(d), delete(), pull(f"p{n}"), pull(d), pull_blob())
        assert statuses[2] == 202
        assert set(statuses[:2] + statuses[3:5]) <= {200, 404}, statuses
        assert await listed_tags(client, "race/pull") == []


async def test_concurrent_pushes_with_upload_purging(client, driver):
    """Many pushes into one repository while upload purging removes stale sessions there (its
    deletes empty and prune ``_uploads`` under the pushes' feet): every push 201, every blob whole."""
    st = store_of(client)
    stale_at = b"2000-01-01T00:00:00.000000Z"
    stop = asyncio.Event()

    async def purge_loop() -> int:
        purged = 0
        while not stop.is_set():
            await driver.put_content(paths.upload_started_at("race/purge", f"stale-{purged}"), stale_at)
            purged += len(await st.uploads.purge(3600))
            await asyncio.sleep(0)
        return purged

    async def chunked(i: int) -> bytes:
        data = os.urandom(50_000 + i)
        r = await client.post("/v2/race/purge/blobs/uploads/")
        assert r.status == 202, await r.text()
        r = await client.patch(loc_of(r), data=data[:20_000])
        assert r.status == 202, await r.text()
        r = await client.put(f"{loc_of(r)}&digest={digest_of(data)}", data=data[20_000:])
        assert r.status == 201, await r.text()
        return data

    async def monolithic(i: int) -> bytes:
        data = os.urandom(30_000 + i)
        await push_blob(client, "race/purge", data)
        return data

    n = 24 if driver.name != "s3" else 6
    purger = asyncio.ensure_future(purge_loop())
    try:
        pushed = await asyncio.gather(*(chunked(i) for i in range(n)), *(monolithic(i) for i in range(n)))
    finally:
        stop.set()
        purged = await purger
    assert purged > 0
    for data in pushed:
        r = await client.get(f"/v2/race/purge/blobs/{digest_of(data)}")
        assert r.status == 200 and await r.read() == data
