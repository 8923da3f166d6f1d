"""Blob pull, delete and every upload flow, over the filesystem and in-memory drivers."""

from __future__ import annotations

import os

from api_support import client, digest_of, driver, loc_of, make_config, push_blob  # noqa: F401
from registry.app import create_app

API = ("Docker-Distribution-API-Version", "registry/2.0")


async def error_code(r) -> str:
    body = await r.json()
    return body["errors"][0]["code"]


async def test_base_and_unknown_route(client):
    r = await client.get("/v2/")
    assert r.status == 200 and r.headers[API[0]] == API[1]
    r = await client.get("/v2/nope/nothing/here")
    assert r.status == 404 and r.headers[API[0]] == API[1]
    assert (await r.json())["errors"]


async def test_blob_get_head_range(client):
    data = os.urandom(3000)
    d = await push_blob(client, "repo", data)
    r = await client.head(f"/v2/repo/blobs/{d}")
    assert r.status == 200
    assert r.headers["Content-Length"] == "3000" and r.headers["Docker-Content-Digest"] == d
    r = await client.get(f"/v2/repo/blobs/{d}", headers={"Accept": "application/vnd.oci.image.layer.v1.tar"})
    assert r.status == 200 and await r.read() == data
    assert r.headers["Docker-Content-Digest"] == d
    r = await client.get(f"/v2/repo/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and await r.read() == data[10:20]
    assert r.headers["Content-Range"] == "bytes 10-19/3000"
    r = await client.get(f"/v2/repo/blobs/{d}", headers={"Range": "bytes=-5"})
    assert r.status == 206 and await r.read() == data[-5:]
    r = await client.get(f"/v2/repo/blobs/{d}", headers={"Range": "bytes=2990-"})
    assert r.status == 206 and await r.read() == data[2990:]
    for bad in ("bytes=5000-6000", "bytes=3000-", "bytes=9-3", "bytes=abc", "bytes=-0", "bytes=-"):
        r = await client.get(f"/v2/repo/blobs/{d}", headers={"Range": bad})
        assert r.status == 416, bad
        assert r.headers["Content-Range"] == "bytes */3000"
        assert (await r.json())["errors"][0]["code"] == "RANGE_INVALID"
    r = await client.head(f"/v2/repo/blobs/{d}", headers={"Range": "bytes=0-9"})
    assert r.status == 206 and r.headers["Content-Length"] == "10"
    r = await client.get(f"/v2/repo/blobs/{d}", headers={"Range": "Bytes=2999-5000"})  # the unit's case is free
    assert r.status == 206 and await r.read() == data[2999:]
    assert r.headers["Content-Range"] == "bytes 2999-2999/3000"
    # RFC 9110 14.2: a Range of another unit MUST be ignored; several ranges may be (the whole blob)
    for ignored in ("items=0-1", "bytes=0-1,5-9"):
        r = await client.get(f"/v2/repo/blobs/{d}", headers={"Range": ignored})
        assert r.status == 200 and await r.read() == data and "Content-Range" not in r.headers, ignored


async def test_ranges_of_an_empty_blob(client):
    """No byte range of an empty blob is satisfiable except a suffix (RFC 9110 14.1.1), which is the
    whole, empty, blob."""
    d = digest_of(b"")
    r = await client.put(f"{loc_of(await client.post('/v2/repo/blobs/uploads/'))}&digest={d}", data=b"")
    assert r.status == 201, await r.text()
    for method in ("GET", "HEAD"):
        r = await client.request(method, f"/v2/repo/blobs/{d}", headers={"Range": "bytes=0-"})
        assert r.status == 416 and r.headers["Content-Range"] == "bytes */0", method
        r = await client.request(method, f"/v2/repo/blobs/{d}", headers={"Range": "bytes=-5"})
        assert r.status == 200 and r.headers["Content-Length"] == "0" and await r.read() == b"", method


async def test_blob_unknown_and_invalid(client):
    d = digest_of(b"nothing")
    r = await client.get(f"/v2/repo/blobs/{d}")
    assert r.status == 404 and await error_code(r) == "BLOB_UNKNOWN"
    r = await client.get("/v2/repo/blobs/sha256:abc")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    r = await client.get(f"/v2/Bad_Name/blobs/{d}")
    assert r.status == 400 and await error_code(r) == "NAME_INVALID"


async def test_blob_visible_only_where_linked(client):
    d = await push_blob(client, "one", b"shared data")
    r = await client.head(f"/v2/two/blobs/{d}")
    assert r.status == 404


async def test_blob_delete(client):
    d = await push_blob(client, "repo", b"to delete")
    r = await client.delete(f"/v2/repo/blobs/{d}")
    assert r.status == 202
    r = await client.head(f"/v2/repo/blobs/{d}")
    assert r.status == 404
    r = await client.delete(f"/v2/repo/blobs/{d}")
    assert r.status == 404 and await error_code(r) == "BLOB_UNKNOWN"


async def test_delete_disabled(aiohttp_client, driver):
    c = await aiohttp_client(create_app(make_config(delete=False), driver))
    d = await push_blob(c, "repo", b"kept")
    r = await c.delete(f"/v2/repo/blobs/{d}")
    assert r.status == 405 and await error_code(r) == "UNSUPPORTED"
    assert (await c.head(f"/v2/repo/blobs/{d}")).status == 200


async def test_chunked_upload_flow(client):
    data = os.urandom(100_000)
    d = digest_of(data)
    r = await client.post("/v2/repo/blobs/uploads/")
    assert r.status == 202
    loc = loc_of(r)
    assert r.headers["Range"] == "0-0" and r.headers["Docker-Upload-UUID"] in loc
    r = await client.patch(loc, data=data[:40_000], headers={"Content-Range": "0-39999",
                                                             "Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.headers["Range"] == "0-39999"
    loc = loc_of(r)
    # out of order: must continue at 40000
    r = await client.patch(loc, data=data[50_000:60_000], headers={"Content-Range": "50000-59999"})
    assert r.status == 416 and r.headers["Range"] == "0-39999"
    r = await client.get(loc)
    assert r.status == 204 and r.headers["Range"] == "0-39999" and loc_of(r)

    async def gen():  # Transfer-Encoding: chunked, as buildah sends
        for i in range(40_000, 90_000, 7_000):
            yield data[i:min(i + 7_000, 90_000)]

    r = await client.patch(loc, data=gen())
    assert r.status == 202 and r.headers["Range"] == "0-89999"
    r = await client.put(loc_of(r) + f"&digest={d}", data=data[90_000:])
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == d and loc_of(r).endswith(f"/v2/repo/blobs/{d}")
    r = await client.get(f"/v2/repo/blobs/{d}")
    assert await r.read() == data
    r = await client.get(loc)
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_post_then_put_monolithic_and_empty_blob(client):
    for data in (b"monolithic body", b""):
        d = digest_of(data)
        r = await client.post("/v2/repo/blobs/uploads/")
        loc = loc_of(r)
        r = await client.put(f"{loc}&digest={d}", data=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status == 201, await r.text()
        r = await client.get(f"/v2/repo/blobs/{d}")
        assert r.status == 200 and await r.read() == data


async def test_put_without_body_after_patch(client):
    r = await client.post("/v2/repo/blobs/uploads/")
    r = await client.patch(loc_of(r), data=b"abc")
    r = await client.put(loc_of(r) + "&digest=" + digest_of(b"abc"))
    assert r.status == 201


async def test_digest_mismatch_leaves_nothing(client):
    r = await client.post("/v2/repo/blobs/uploads/")
    loc = loc_of(r)
    r = await client.patch(loc, data=b"real content")
    wrong = digest_of(b"other content")
    r = await client.put(loc_of(r) + f"&digest={wrong}")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    for d in (wrong, digest_of(b"real content")):
        assert (await client.head(f"/v2/repo/blobs/{d}")).status == 404
    r = await client.post(f"/v2/repo/blobs/uploads/?digest={wrong}", data=b"real content")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    assert (await client.head(f"/v2/repo/blobs/{wrong}")).status == 404


async def test_sha512(client):
    data = os.urandom(70_000)
    d = digest_of(data, "sha512")
    r = await client.post(f"/v2/repo/blobs/uploads/?digest={d}", data=data)
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == d
    # chunked, then the sha512 digest only at PUT
    data2 = data[::-1]
    d2 = digest_of(data2, "sha512")
    r = await client.post("/v2/repo/blobs/uploads/")
    r = await client.patch(loc_of(r), data=data2[:30_000])
    r = await client.patch(loc_of(r), data=data2[30_000:])
    r = await client.put(loc_of(r) + f"&digest={d2}")
    assert r.status == 201, await r.text()
    for digest, content in ((d, data), (d2, data2)):
        r = await client.get(f"/v2/repo/blobs/{digest}")
        assert r.status == 200 and await r.read() == content


async def test_cancel_upload(client):
    r = await client.post("/v2/repo/blobs/uploads/")
    loc = loc_of(r)
    await client.patch(loc, data=b"partial")
    r = await client.delete(loc)
    assert r.status == 204
    r = await client.get(loc)
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = await client.patch(loc, data=b"more")
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_tampered_state_and_unknown_upload(client):
    r = await client.post("/v2/repo/blobs/uploads/")
    loc = loc_of(r)
    path, _, state = loc.partition("?_state=")
    r = await client.patch(f"{path}?_state=AAAA{state[4:]}", data=b"x")
    assert r.status == 400 and await error_code(r) == "BLOB_UPLOAD_INVALID"
    r = await client.patch(loc.replace("/repo/", "/other/"), data=b"x")
    assert r.status == 400 and await error_code(r) == "BLOB_UPLOAD_INVALID"
    r = await client.get("/v2/repo/blobs/uploads/00000000-0000-0000-0000-000000000000")
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_mount(client):
    d = await push_blob(client, "source", b"mount me")
    r = await client.post(f"/v2/target/blobs/uploads/?mount={d}&from=source")
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == d
    assert (await client.get(f"/v2/target/blobs/{d}")).status == 200
    missing = digest_of(b"not there")
    for query in (f"mount={missing}&from=source", "mount=sha256:zz&from=source", f"mount={missing}"):
        r = await client.post(f"/v2/third/blobs/uploads/?{query}")
        assert r.status == 202, query
        assert "/v2/third/blobs/uploads/" in loc_of(r)
    # an unusable `from` is no error: the blob is found without it (tests/test_api_spec_next.py)
    for i, query in enumerate((f"mount={d}&from=source:latest", f"mount={d}&from=Bad..", f"mount={d}")):
        r = await client.post(f"/v2/fourth{i}/blobs/uploads/?{query}")
        assert r.status == 201 and r.headers["Docker-Content-Digest"] == d, query


async def test_monolithic_push_of_stored_blob_checks_the_body(client):
    d = await push_blob(client, "one", b"stored once")
    r = await client.post(f"/v2/two/blobs/uploads/?digest={d}", data=b"something else")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    assert (await client.head(f"/v2/two/blobs/{d}")).status == 404
    r = await client.post(f"/v2/two/blobs/uploads/?digest={d}", data=b"stored once")
    assert r.status == 201
    assert await (await client.get(f"/v2/two/blobs/{d}")).read() == b"stored once"
