"""What distribution-spec main (the next version) adds, through the real app on filesystem and S3
(moto): tag parameters with ``OCI-Tag`` (all or none), the digest algorithm a client asks for
(``digest-algorithm=`` uploads streamed and resumed without re-reading, sha512 manifests through
tags, referrers and deletes), mounts without ``from`` (never from a repository the caller may not
pull), and the listing bounds (``catalog.maxentries``, ``tags.maxtags``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from yarl import URL

from api_support import OCI_INDEX, OCI_MANIFEST, count_reads, digest_of, image_manifest, loc_of, make_config, push_blob
from auth_support import SERVICE, PASSWORDS, basic, make_pki, make_users, token_auth_block, tokenserver_block
from drivers.base import StorageDriver, StorageFull
from drivers.factory import create_driver
from drivers.filesystem import FilesystemDriver
from registry.app import create_app

BACKENDS = ["filesystem", "s3"]


@pytest.fixture(params=BACKENDS)
def storage(request: Any, tmp_path: Any) -> Callable[[], StorageDriver]:
    """Opens drivers on one fresh storage: each call is another instance (another registry)."""
    if request.param == "s3":
        from emulators import s3_params

        params = s3_params(request.getfixturevalue("moto_emulator"))
        return lambda: create_driver("s3", dict(params))
    root = str(tmp_path / "root")
    return lambda: FilesystemDriver(root)


async def app_client(aiohttp_client: Any, driver: StorageDriver, **config: Any) -> Any:
    return await aiohttp_client(create_app(make_config(redirect_disable=True, **config), driver))


@pytest.fixture
async def client(aiohttp_client: Any, storage: Callable[[], StorageDriver]) -> Any:
    return await app_client(aiohttp_client, storage())


async def put_image(client: Any, name: str, seed: bytes, algorithm: str = "sha256", query: str = "",
                    ref: str | None = None, **extra: Any) -> tuple[str, bytes, Any]:
    """Push an image's blobs and its manifest by digest (in ``algorithm``) or ``ref``; the response."""
    config, layer = b'{"seed":"' + seed + b'"}', b"layer " + seed * 64
    for blob in (config, layer):
        d = digest_of(blob, algorithm)
        r = await client.post(f"/v2/{name}/blobs/uploads/?digest={d}", data=blob)
        assert r.status == 201, await r.text()
    body = json.loads(image_manifest(config, [layer], **extra))
    body["config"]["digest"] = digest_of(config, algorithm)
    body["layers"][0]["digest"] = digest_of(layer, algorithm)
    raw = json.dumps(body, indent=2).encode()
    d = digest_of(raw, algorithm)
    r = await client.put(f"/v2/{name}/manifests/{ref or d}{query}", data=raw, headers={"Content-Type": OCI_MANIFEST})
    return d, raw, r


async def resolve(client: Any, name: str, ref: str) -> str | None:
    r = await client.head(f"/v2/{name}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    return r.headers.get("Docker-Content-Digest") if r.status == 200 else None


async def tag_list(client: Any, name: str) -> list[str]:
    r = await client.get(f"/v2/{name}/tags/list")
    return (await r.json())["tags"] if r.status == 200 else []


async def error_code(r: Any) -> str:
    return (await r.json())["errors"][0]["code"]


# --------------------------------------------------------------------------- 1. tag parameters


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_tag_parameters_apply_every_tag_and_answer_oci_tag(client, algorithm):
    d, body, r = await put_image(client, "repo", b"a", algorithm, "?tag=1.2.3&tag=1.2&tag=1&tag=latest&tag=1")
    assert r.status == 201, await r.text()
    assert r.headers.getall("OCI-Tag") == ["1.2.3", "1.2", "1", "latest"]  # one line each, duplicates once
    assert r.headers["Docker-Content-Digest"] == d
    for tag in ("1.2.3", "1.2", "1", "latest"):
        assert await resolve(client, "repo", tag) == d
    assert await tag_list(client, "repo") == ["1", "1.2", "1.2.3", "latest"]
    g = await client.get("/v2/repo/manifests/latest", headers={"Accept": OCI_MANIFEST})
    assert await g.read() == body and g.headers["Docker-Content-Digest"] == d


async def test_tag_parameters_move_tags_and_keep_the_old_manifest(client):
    old, _, r = await put_image(client, "repo", b"old", query="?tag=latest&tag=stable")
    assert r.status == 201
    new, _, r = await put_image(client, "repo", b"new", "sha512", "?tag=latest&tag=edge")
    assert r.status == 201 and r.headers.getall("OCI-Tag") == ["latest", "edge"]
    assert [await resolve(client, "repo", t) for t in ("latest", "stable", "edge")] == [new, old, new]
    assert await resolve(client, "repo", old) == old
    # a delete by digest takes the tags that point at it, sha512 too
    assert (await client.delete(f"/v2/repo/manifests/{new}")).status == 202
    assert await tag_list(client, "repo") == ["stable"]


async def test_push_by_tag_takes_tag_parameters_too_and_no_parameters_no_header(client):
    d, _, r = await put_image(client, "repo", b"t", ref="main", query="?tag=extra")
    assert r.status == 201 and r.headers.getall("OCI-Tag") == ["main", "extra"]
    assert await resolve(client, "repo", "extra") == d
    _, _, r = await put_image(client, "repo", b"u", ref="plain")
    assert r.status == 201 and "OCI-Tag" not in r.headers  # as before: nothing new without parameters


@pytest.mark.parametrize("query,status,code", [
    ("?tag=good&tag=bad:tag&tag=other", 400, "TAG_INVALID"),
    ("?tag=good&tag=" + "x" * 129, 400, "TAG_INVALID"),
    ("?tag=.hidden", 400, "TAG_INVALID"),
    ("?" + "&".join(f"tag=t{i}" for i in range(101)), 414, "TAG_INVALID"),
])
async def test_invalid_tag_parameters_write_nothing(client, query, status, code):
    before, _, r = await put_image(client, "repo", b"keep", ref="good")
    d, _, r = await put_image(client, "repo", b"never", query=query)
    assert r.status == status and await error_code(r) == code
    assert await resolve(client, "repo", d) is None  # not even the manifest
    assert await tag_list(client, "repo") == ["good"] and await resolve(client, "repo", "good") == before


def _file_by_file(driver: Any) -> None:
    """Batches of small files go through ``put_content`` one by one (the contract's default
    ``put_contents``), so a test can fail or hold one file of a batch."""
    driver.put_contents = functools.partial(StorageDriver.put_contents, driver)


async def test_tag_parameters_are_all_or_none_when_a_write_fails(client):
    first, _, r = await put_image(client, "repo", b"first", query="?tag=a&tag=b")
    store_driver = _store(client).driver
    original = store_driver.put_content

    async def failing(path: str, data: bytes) -> None:
        if path.endswith("/_manifests/tags/c/current/link"):
            raise StorageFull(store_driver.name, path, "No space left on device")  # as a driver raises it
        await original(path, data)

    store_driver.put_content = failing  # type: ignore[method-assign]
    _file_by_file(store_driver)
    try:
        second, _, r = await put_image(client, "repo", b"second", query="?tag=a&tag=b&tag=c&tag=d")
        assert r.status == 507 and await error_code(r) == "STORAGE_FULL"
    finally:
        store_driver.put_content = original  # type: ignore[method-assign]
        del store_driver.put_contents
    # none moved, none appeared: a and b still name the first manifest, c and d do not exist
    assert [await resolve(client, "repo", t) for t in "abcd"] == [first, first, None, None]
    assert await tag_list(client, "repo") == ["a", "b"]
    # the retry applies them all
    again, _, r = await put_image(client, "repo", b"second", query="?tag=a&tag=b&tag=c&tag=d")
    assert r.status == 201 and again == second
    assert [await resolve(client, "repo", t) for t in "abcd"] == [second] * 4


async def test_tag_parameters_all_or_none_when_the_filesystem_batch_fails(aiohttp_client, tmp_path, monkeypatch):
    """The same on the filesystem's own batch (one pass, renames in stage order): a rename that
    fails among the tags' links puts back the tags already moved, and a retry applies them all."""
    import errno

    from drivers import filesystem

    client = await app_client(aiohttp_client, FilesystemDriver(str(tmp_path / "root")))
    first, _, r = await put_image(client, "repo", b"first", query="?tag=a&tag=b")
    real_rename = os.rename

    def rename(src: str, dst: str) -> None:
        if dst.endswith("/_manifests/tags/c"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(filesystem.os, "rename", rename)
    second, _, r = await put_image(client, "repo", b"second", query="?tag=a&tag=b&tag=c&tag=d")
    monkeypatch.undo()
    assert r.status == 507 and await error_code(r) == "STORAGE_FULL"
    assert [await resolve(client, "repo", t) for t in "abcd"] == [first, first, None, None]
    assert await tag_list(client, "repo") == ["a", "b"]
    again, _, r = await put_image(client, "repo", b"second", query="?tag=a&tag=b&tag=c&tag=d")
    assert r.status == 201 and again == second
    assert [await resolve(client, "repo", t) for t in "abcd"] == [second] * 4


async def test_readers_see_all_tags_moved_or_none(client):
    """While the tags' links are written, a reader of any of them waits for the outcome."""
    first, _, _ = await put_image(client, "repo", b"first", query="?tag=a&tag=b")
    store_driver = _store(client).driver
    original = store_driver.put_content
    a_written, release = asyncio.Event(), asyncio.Event()

    async def slow(path: str, data: bytes) -> None:
        if path.endswith("/tags/b/current/link"):
            await release.wait()
        await original(path, data)
        if path.endswith("/tags/a/current/link"):
            a_written.set()

    store_driver.put_content = slow  # type: ignore[method-assign]
    _file_by_file(store_driver)
    try:
        push = asyncio.ensure_future(put_image(client, "repo", b"second", query="?tag=a&tag=b"))
        await asyncio.wait_for(a_written.wait(), 30)
        readers = [asyncio.ensure_future(resolve(client, "repo", t)) for t in ("a", "b")]
        listing = asyncio.ensure_future(tag_list(client, "repo"))
        await asyncio.sleep(0.2)
        assert not any(t.done() for t in readers), "a reader saw the tags half moved"
        release.set()
        second, _, r = await push
        assert r.status == 201
        assert [await t for t in readers] == [second, second]
        assert await listing == ["a", "b"]
    finally:
        release.set()
        store_driver.put_content = original  # type: ignore[method-assign]
        del store_driver.put_contents


def _store(client: Any) -> Any:
    from registry.api.base import STORE_KEY

    return client.server.app[STORE_KEY]


# --------------------------------------------------------------------------- 2. digest algorithms


async def test_manifest_by_tag_in_the_digest_parameters_algorithm(client):
    d, body, r = await put_image(client, "repo", b"tagged", "sha512", ref="v1")
    assert r.status == 201
    sha256 = r.headers["Docker-Content-Digest"]
    assert sha256 == digest_of(body)  # no parameter: sha256, as before
    d2, body2, r = await put_image(client, "repo", b"tagged512", "sha512", ref="v2",
                                   query=f"?digest={digest_of(b'x', 'sha512')}")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    assert await resolve(client, "repo", "v2") is None
    config, layer = b'{"seed":"tagged512"}', b"layer " + b"tagged512" * 64
    manifest = json.loads(image_manifest(config, [layer]))
    manifest["config"]["digest"], manifest["layers"][0]["digest"] = digest_of(config, "sha512"), digest_of(layer, "sha512")
    raw = json.dumps(manifest).encode()
    r = await client.put(f"/v2/repo/manifests/v2?digest={digest_of(raw, 'sha512')}", data=raw,
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == digest_of(raw, "sha512")
    assert await resolve(client, "repo", "v2") == digest_of(raw, "sha512")


async def test_sha512_through_referrers_and_deletes(client):
    subject, _, r = await put_image(client, "repo", b"subject", "sha512", "?tag=img")
    assert r.status == 201
    size = int((await client.head(f"/v2/repo/manifests/{subject}", headers={"Accept": OCI_MANIFEST})).headers["Content-Length"])
    referrer, _, r = await put_image(
        client, "repo", b"sig", "sha512", "?tag=sig", artifactType="application/vnd.example.sig",
        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": size})
    assert r.status == 201 and r.headers["OCI-Subject"] == subject
    listed = (await (await client.get(f"/v2/repo/referrers/{subject}")).json())["manifests"]
    assert [(m["digest"], m["artifactType"]) for m in listed] == [(referrer, "application/vnd.example.sig")]
    assert (await client.delete("/v2/repo/manifests/sig")).status == 202  # the tag only
    assert await resolve(client, "repo", referrer) == referrer
    assert (await client.delete(f"/v2/repo/manifests/{referrer}")).status == 202
    assert (await (await client.get(f"/v2/repo/referrers/{subject}")).json())["manifests"] == []
    assert (await client.delete(f"/v2/repo/manifests/{subject}")).status == 202
    assert await tag_list(client, "repo") == []


async def chunked_upload(clients: list[Any], name: str, data: bytes, algorithm: str | None, pieces: int = 4,
                         keep_state: bool = True) -> Any:
    query = f"?digest-algorithm={algorithm}" if algorithm else ""
    r = await clients[0].post(f"/v2/{name}/blobs/uploads/{query}")
    assert r.status == 202, await r.text()
    loc = loc_of(r)
    step = -(-len(data) // pieces)
    for i, start in enumerate(range(0, len(data), step)):
        piece = data[start:start + step]
        if not keep_state:
            loc = str(URL(loc).with_query(None))  # a client that drops the registry's state
        r = await clients[i % len(clients)].patch(
            loc, data=piece, headers={"Content-Range": f"{start}-{start + len(piece) - 1}"})
        assert r.status == 202, await r.text()
        loc = loc_of(r)
    return loc


@pytest.mark.parametrize("keep_state", [True, False])
async def test_digest_algorithm_upload_streams_and_resumes_across_instances(aiohttp_client, storage, keep_state):
    drivers = [storage(), storage()]
    counters = [count_reads(d) for d in drivers]
    clients = [await app_client(aiohttp_client, d) for d in drivers]
    data = os.urandom(6 * 1024 * 1024 + 17)
    d = digest_of(data, "sha512")
    loc = await chunked_upload(clients, "repo", data, "sha512", keep_state=keep_state)
    r = await clients[1].put(f"{loc}{'&' if '?' in loc else '?'}digest={d}")
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == d
    assert sum(n for c in counters for p, n in c.items() if "/_uploads/" in p) == 0, "the upload was read back"
    g = await clients[0].get(f"/v2/repo/blobs/{d}")
    assert g.status == 200 and g.headers["Docker-Content-Digest"] == d
    assert hashlib.sha512(await g.read()).hexdigest() == d.split(":")[1]


async def test_digest_algorithm_closed_with_another_digest_still_verifies(client):
    data = os.urandom(300_000)
    loc = await chunked_upload([client], "repo", data, "sha512")
    r = await client.put(f"{loc}&digest={digest_of(data)}")  # sha256 after all: re-read, still right
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == digest_of(data)
    loc = await chunked_upload([client], "repo", data, None)  # and the default: sha256 streamed
    r = await client.put(f"{loc}&digest={digest_of(data, 'sha512')}&x=1")
    assert r.status == 201
    loc = await chunked_upload([client], "repo", data, "sha512")
    r = await client.put(f"{loc}&digest={digest_of(data + b'!', 'sha512')}")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"


@pytest.mark.parametrize("query", ["digest-algorithm=md5", "digest-algorithm=sha384", "digest-algorithm=",
                                   "digest-algorithm=SHA512"])
async def test_unsupported_digest_algorithm_is_400(client, query):
    r = await client.post(f"/v2/repo/blobs/uploads/?{query}")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"


async def test_digest_algorithm_with_a_monolithic_push(client):
    data = b"one request"
    r = await client.post(f"/v2/repo/blobs/uploads/?digest-algorithm=sha512&digest={digest_of(data, 'sha512')}",
                          data=data)
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == digest_of(data, "sha512")
    r = await client.post(f"/v2/repo/blobs/uploads/?digest-algorithm=sha256&digest={digest_of(data, 'sha512')}",
                          data=data)
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    # POST then PUT with the body, in the session's algorithm
    r = await client.post("/v2/repo/blobs/uploads/?digest-algorithm=sha512")
    r = await client.put(f"{loc_of(r)}&digest={digest_of(b'in the put', 'sha512')}", data=b"in the put")
    assert r.status == 201


# --------------------------------------------------------------------------- 3. mounts without from


async def test_mount_without_from_finds_a_repository_that_has_the_blob(client):
    d = await push_blob(client, "source", b"shared layer")
    r = await client.post(f"/v2/target/blobs/uploads/?mount={d}")
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == d
    assert r.headers["Location"].endswith(f"/v2/target/blobs/{d}")
    assert await (await client.get(f"/v2/target/blobs/{d}")).read() == b"shared layer"
    r = await client.post(f"/v2/target/blobs/uploads/?mount={d}")  # already there: 201 too
    assert r.status == 201
    # a `from` without the blob is no obstacle either
    r = await client.post(f"/v2/third/blobs/uploads/?mount={d}&from=nothing-here")
    assert r.status == 201


async def test_mount_without_from_never_mounts_unlinked_data(client):
    d = await push_blob(client, "source", b"deleted layer")
    assert (await client.delete(f"/v2/source/blobs/{d}")).status == 202  # the data stays for the collector
    r = await client.post(f"/v2/target/blobs/uploads/?mount={d}")
    assert r.status == 202 and "/v2/target/blobs/uploads/" in loc_of(r)
    assert (await client.head(f"/v2/target/blobs/{d}")).status == 404
    # a manifest's bytes are stored as a blob but are no layer of any repository
    m, _, r = await put_image(client, "source", b"m", ref="v1")
    r = await client.post(f"/v2/target/blobs/uploads/?mount={m}")
    assert r.status == 202
    missing = digest_of(b"never pushed", "sha512")
    assert (await client.post(f"/v2/target/blobs/uploads/?mount={missing}")).status == 202


async def test_mount_without_from_with_tokens_only_from_repositories_the_token_may_pull(
        aiohttp_client, storage, tmp_path):
    pki = make_pki(tmp_path / "pki")
    make_users(tmp_path / "htpasswd")
    c = await app_client(aiohttp_client, storage(), auth=token_auth_block(),
                         tokenserver=tokenserver_block(tmp_path, pki))

    async def bearer(user: str, *scopes: str) -> dict[str, str]:
        r = await c.get("/auth/token", params=[("service", SERVICE)] + [("scope", s) for s in scopes],
                        headers={"Authorization": basic(user, PASSWORDS[user])})
        return {"Authorization": f"Bearer {(await r.json())['token']}"}

    layer = b"private layer"
    d = digest_of(layer)
    bob = await bearer("bob", "repository:bob/secret:pull,push")
    assert (await c.post(f"/v2/bob/secret/blobs/uploads/?digest={d}", data=layer, headers=bob)).status == 201
    # alice asks for bob's repository too, but may not read it: no mount, nothing revealed
    alice = await bearer("alice", "repository:alice/dst:pull,push", "repository:bob/secret:pull")
    r = await c.post(f"/v2/alice/dst/blobs/uploads/?mount={d}", headers=alice)
    assert r.status == 202
    assert (await c.head(f"/v2/alice/dst/blobs/{d}", headers=alice)).status == 404
    # once alice has it in a repository of hers, a token that may pull that one mounts it,
    # even though bob linked the blob last (the hint names bob's repository)
    src = await bearer("alice", "repository:alice/src:pull,push")
    assert (await c.post(f"/v2/alice/src/blobs/uploads/?digest={d}", data=layer, headers=src)).status == 201
    assert (await c.post(f"/v2/bob/secret/blobs/uploads/?digest={d}", data=layer, headers=bob)).status == 201
    both = await bearer("alice", "repository:alice/dst:pull,push", "repository:alice/src:pull")
    r = await c.post(f"/v2/alice/dst/blobs/uploads/?mount={d}", headers=both)
    assert r.status == 201
    # a token without pull on alice/src does not mount from it
    only = await bearer("alice", "repository:alice/dst2:pull,push")
    assert (await c.post(f"/v2/alice/dst2/blobs/uploads/?mount={d}", headers=only)).status == 202


# --------------------------------------------------------------------------- 4. listing bounds


async def follow(client: Any, path: str) -> tuple[list[list[str]], str]:
    """Every page, following ``Link`` headers; the key of the list."""
    pages, key = [], "tags" if "/tags/" in path else "repositories"
    while path:
        r = await client.get(path)
        assert r.status == 200, await r.text()
        pages.append((await r.json())[key])
        link = r.headers.get("Link")
        path = link[link.index("<") + 1:link.index(">")] if link else ""
    return pages, key


async def test_catalog_maxentries(aiohttp_client, storage):
    c = await app_client(aiohttp_client, storage(), catalog={"maxentries": 3})
    names = [f"repo{i}" for i in range(7)]
    for name in names:
        await put_image(c, name, name.encode(), ref="v1")
    pages, _ = await follow(c, "/v2/_catalog")
    assert pages == [names[0:3], names[3:6], names[6:7]]
    pages, _ = await follow(c, "/v2/_catalog?n=100")  # n above maxentries: served as maxentries
    assert [len(p) for p in pages] == [3, 3, 1]
    pages, _ = await follow(c, "/v2/_catalog?n=2")
    assert [len(p) for p in pages] == [2, 2, 2, 1]


async def test_tags_list_is_bounded_without_n(aiohttp_client, storage):
    c = await app_client(aiohttp_client, storage(), tags={"maxtags": 3})
    tags = [f"t{i}" for i in range(7)]
    d, _, r = await put_image(c, "repo", b"x", query="?" + "&".join(f"tag={t}" for t in tags))
    assert r.status == 201
    r = await c.get("/v2/repo/tags/list")
    assert (await r.json())["tags"] == tags[:3]
    assert r.headers["Link"] == '</v2/repo/tags/list?n=3&last=t2>; rel="next"'
    pages, _ = await follow(c, "/v2/repo/tags/list")
    assert pages == [tags[0:3], tags[3:6], tags[6:7]]
    pages, _ = await follow(c, "/v2/repo/tags/list?n=2")
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    r = await c.get("/v2/repo/tags/list?n=0")
    assert (await r.json())["tags"] == [] and "Link" not in r.headers
    r = await c.get("/v2/repo/tags/list?last=t5")
    assert (await r.json())["tags"] == ["t6"] and "Link" not in r.headers


async def test_listing_defaults_keep_todays_answers(client):
    tags = [f"t{i:04d}" for i in range(30)]
    await put_image(client, "repo", b"x", query="?" + "&".join(f"tag={t}" for t in tags))
    r = await client.get("/v2/repo/tags/list")
    assert (await r.json())["tags"] == tags and "Link" not in r.headers
    r = await client.get("/v2/repo/tags/list?n=10")
    assert (await r.json())["tags"] == tags[:10]
    assert r.headers["Link"] == '</v2/repo/tags/list?n=10&last=t0009>; rel="next"'
    r = await client.get("/v2/_catalog")
    assert (await r.json())["repositories"] == ["repo"] and "Link" not in r.headers


# --------------------------------------------------------------------------- notifications


async def test_events_name_every_tag_and_the_mount_source(aiohttp_client, storage):
    """One manifest push event per tag of a tag-parameter push; a mount without ``from`` names
    the repository it came from, as a mount with ``from`` does."""
    from observe_support import Receiver

    receiver = Receiver().start()
    try:
        c = await app_client(aiohttp_client, storage(), notifications={"endpoints": [
            {"name": "t", "url": receiver.url, "timeout": "2s", "backoff": "100ms", "threshold": 3}]})
        d, _, r = await put_image(c, "repo", b"events", query="?tag=a&tag=b")
        assert r.status == 201
        blob = await push_blob(c, "src", b"mount me for events")
        assert (await c.post(f"/v2/dst/blobs/uploads/?mount={blob}")).status == 201
        wanted = {("push", "repo", d, "a"), ("push", "repo", d, "b"), ("mount", "dst", blob, "")}
        for _ in range(300):
            events = receiver.events()
            seen = {(e["action"], e["target"]["repository"], e["target"].get("digest", ""), e["target"].get("tag", ""))
                    for e in events}
            if wanted <= seen:
                break
            await asyncio.sleep(0.1)
        assert wanted <= seen, seen
        manifest_pushes = [e for e in events if e["action"] == "push" and e["target"].get("digest") == d]
        assert len(manifest_pushes) == 2
        mount = next(e for e in events if e["action"] == "mount")
        assert mount["target"]["fromRepository"] == "src"
    finally:
        receiver.close()
