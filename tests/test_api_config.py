"""Config keys the API honours: schema 1, read-only mode, prefix, Location styles."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from api_support import OCI_MANIFEST, digest_of, driver, loc_of, make_config, push_blob, push_image  # noqa: F401
from registry.app import create_app
from registry.store import paths
from registry.reference import try_digest
from test_manifests import LAYER1, LAYER2, pretty_sign, schema1_payload

SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


async def test_schema1_refused_by_default_and_stored_like_the_reference(aiohttp_client, driver):
    payload = schema1_payload()
    body = pretty_sign(payload, [ec.generate_private_key(ec.SECP256R1())])
    off = await aiohttp_client(create_app(make_config(), driver))
    await push_blob(off, "library/app", LAYER1)
    await push_blob(off, "library/app", LAYER2)
    r = await off.put("/v2/library/app/manifests/v1", data=body, headers={"Content-Type": SIGNED})
    assert r.status == 400 and (await r.json())["errors"][0]["code"] == "MANIFEST_INVALID"
    on = await aiohttp_client(create_app(make_config(schema1=True), driver))
    r = await on.put("/v2/library/app/manifests/v1", data=body, headers={"Content-Type": SIGNED})
    assert r.status == 201, await r.text()
    d = r.headers["Docker-Content-Digest"]
    assert d == digest_of(payload)
    # the blob holds the canonical payload (what distribution stores); GET serves the signed bytes
    assert await driver.get_content(paths.blob_data(try_digest(d))) == payload
    for ref in ("v1", d):
        r = await on.get(f"/v2/library/app/manifests/{ref}", headers={"Accept": SIGNED})
        assert r.status == 200 and await r.read() == body
        assert r.headers["Content-Type"] == SIGNED and r.headers["Docker-Content-Digest"] == d
    # stored schema 1 manifests are served even when pushing them is off
    r = await off.get("/v2/library/app/manifests/v1")
    assert r.status == 200 and await r.read() == body


async def test_readonly(aiohttp_client, driver):
    rw = await aiohttp_client(create_app(make_config(), driver))
    d, _ = await push_image(rw, "repo", "v1")
    ro = await aiohttp_client(create_app(make_config(readonly=True), driver))
    for method, path in (("POST", "/v2/repo/blobs/uploads/"), ("PUT", "/v2/repo/manifests/v2"),
                         ("DELETE", f"/v2/repo/manifests/{d}"), ("DELETE", f"/v2/repo/blobs/{d}")):
        r = await ro.request(method, path, data=b"{}")
        assert r.status == 405 and (await r.json())["errors"][0]["code"] == "UNSUPPORTED", (method, path)
    assert (await ro.get("/v2/repo/manifests/v1")).status == 200


async def test_prefix_and_locations(aiohttp_client, driver):
    c = await aiohttp_client(create_app(make_config(http={"prefix": "/reg/", "host": "https://r.example.com"}), driver))
    assert (await c.get("/reg/v2/")).status == 200
    assert (await c.get("/v2/")).status == 404
    r = await c.post("/reg/v2/repo/blobs/uploads/")
    assert r.headers["Location"].startswith("https://r.example.com/reg/v2/repo/blobs/uploads/")
    r = await c.patch(loc_of(r), data=b"abc")
    assert r.status == 202
    c2 = await aiohttp_client(create_app(make_config(http={"relativeurls": True}), driver))
    r = await c2.post("/v2/repo/blobs/uploads/")
    assert r.headers["Location"].startswith("/v2/repo/blobs/uploads/")
    c3 = await aiohttp_client(create_app(make_config(), driver))
    r = await c3.post("/v2/repo/blobs/uploads/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "front:8443"})
    assert r.headers["Location"].startswith("https://front:8443/v2/repo/blobs/uploads/")


async def test_upload_purging(aiohttp_client, driver):
    import asyncio

    from registry.store import Store

    c = await aiohttp_client(create_app(make_config(), driver))
    r = await c.post("/v2/a/b/blobs/uploads/")
    old_id = r.headers["Docker-Upload-UUID"]
    old = loc_of(await c.patch(loc_of(r), data=b"old"))
    # started a day ago (the reference writes startedat the same way, RFC 3339 UTC)
    await driver.put_content(paths.upload_started_at("a/b", old_id), b"2020-01-01T00:00:00Z")
    fresh = loc_of(await c.post("/v2/other/blobs/uploads/"))
    store = Store(driver, secret="s")
    assert len(await store.uploads.purge(3600, dryrun=True)) == 1
    assert (await c.get(old)).status == 204
    purged = await store.uploads.purge(3600)
    assert [p.split("/_uploads/")[0].rsplit("repositories/", 1)[1] for p in purged] == ["a/b"]
    assert (await c.get(old)).status == 404 and (await c.get(fresh)).status == 204
    # the background task of a registry configured with a tiny age and interval
    maint = {"uploadpurging": {"enabled": True, "age": "50ms", "interval": "50ms"}}
    cfg = make_config()
    from registry.config import StorageConfig

    cfg.storage = StorageConfig.from_raw({"inmemory": {}, "maintenance": maint})
    await aiohttp_client(create_app(cfg, driver))
    for _ in range(100):
        if (await c.get(fresh)).status == 404:
            break
        await asyncio.sleep(0.05)
    assert (await c.get(fresh)).status == 404


async def test_layer_url_policy(aiohttp_client, driver):
    import json

    from api_support import OCI_MANIFEST

    cfg = make_config(validation={"manifests": {"urls": {"allow": ["^https://cdn\\.example\\.com/"],
                                                           "deny": ["/forbidden/"]}}})
    c = await aiohttp_client(create_app(cfg, driver))
    config = b"{}"
    await push_blob(c, "repo", config)

    def manifest(url):
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest_of(config), "size": 2},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                                       "digest": digest_of(url.encode()), "size": 5, "urls": [url]}]}).encode()

    for url, status in (("https://cdn.example.com/layer", 201), ("https://cdn.example.com/forbidden/x", 400),
                        ("https://other.example.com/layer", 400), ("ftp://cdn.example.com/x", 400),
                        ("https://cdn.example.com/a#frag", 400)):
        r = await c.put("/v2/repo/manifests/t", data=manifest(url), headers={"Content-Type": OCI_MANIFEST})
        assert r.status == status, (url, await r.text())


async def _index_with_missing_child(c, name: str) -> tuple[bytes, str, str]:
    """An index of two linux images, amd64 pushed and arm64 not (a sparse index)."""
    import json

    from api_support import OCI_INDEX, push_image

    amd64, body = await push_image(c, name, None, seed=b"amd64")
    arm64_missing = digest_of(b"never pushed")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd64, "size": len(body),
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": arm64_missing, "size": 500,
         "platform": {"architecture": "arm64", "os": "linux"}},
    ]}).encode()
    return index, amd64, arm64_missing


@pytest.mark.parametrize(("validation", "status"), [
    ({}, 400),                                                          # default: all children must exist
    ({"manifests": {"indexes": {"platforms": "all"}}}, 400),
    ({"manifests": {"indexes": {"platforms": "none"}}}, 201),           # sparse indexes accepted
    ({"manifests": {"indexes": {"platforms": "List", "platformlist": [{"architecture": "amd64", "os": "linux"}]}}},
     201),                                                              # only amd64 must exist
    ({"manifests": {"indexes": {"platforms": "list", "platformlist": [{"architecture": "arm64", "os": "linux"}]}}},
     400),
    ({"manifests": {"indexes": {"platforms": "list"}}}, 400),           # an empty list means every platform
    ({"disabled": True}, 201),                                          # validation off: no child checks
    ({"disabled": True, "enabled": True}, 400),                         # the deprecated enabled wins
])
async def test_index_validation_as_distribution(aiohttp_client, driver, validation, status):
    from api_support import OCI_INDEX

    c = await aiohttp_client(create_app(make_config(validation=validation), driver))
    index, _, missing = await _index_with_missing_child(c, "sparse")
    r = await c.put("/v2/sparse/manifests/multi", data=index, headers={"Content-Type": OCI_INDEX})
    assert r.status == status, await r.text()
    if status == 400:
        body = await r.json()
        assert body["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN" and missing in json_text(body)


def json_text(body) -> str:
    import json

    return json.dumps(body)


async def test_validation_disabled_skips_the_url_rules(aiohttp_client, driver):
    import json

    cfg = make_config(validation={"disabled": True, "manifests": {"urls": {"allow": ["^https://cdn\\.example\\.com/"]}}})
    c = await aiohttp_client(create_app(cfg, driver))
    config = b"{}"
    await push_blob(c, "repo", config)
    for url, status in (("https://elsewhere.example.com/layer", 201), ("ftp://cdn.example.com/x", 400)):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest_of(config), "size": 2},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                                       "digest": digest_of(url.encode()), "size": 5, "urls": [url]}]}).encode()
        r = await c.put("/v2/repo/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == status, (url, await r.text())


def test_bad_platforms_option_is_refused():
    from registry.config import ConfigError

    with pytest.raises(ConfigError, match="invalid platforms option 'some'"):
        make_config(validation={"manifests": {"indexes": {"platforms": "some"}}})
