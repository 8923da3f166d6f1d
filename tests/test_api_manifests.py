"""Manifests, tags, catalog and referrers through the API, over both drivers."""

from __future__ import annotations

import json

from api_support import (  # noqa: F401
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, client, digest_of, driver, image_manifest, loc_of, push_blob,
    push_image,
)


async def code(r) -> str:
    return (await r.json())["errors"][0]["code"]


async def test_get_by_tag_and_digest(client):
    d, body = await push_image(client, "repo", "v1")
    for ref in ("v1", d):
        r = await client.get(f"/v2/repo/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and await r.read() == body
        assert r.headers["Content-Type"] == OCI_MANIFEST and r.headers["Docker-Content-Digest"] == d
        assert r.headers["ETag"] == f'"{d}"'
        r = await client.head(f"/v2/repo/manifests/{ref}")
        assert r.status == 200 and r.headers["Content-Length"] == str(len(body))
    r = await client.get("/v2/repo/manifests/v1", headers={"If-None-Match": f'"{d}"'})
    assert r.status == 304


async def test_docker_schema2_and_accept(client):
    d, body = await push_image(client, "repo", "docker", media_type=DOCKER_MANIFEST)
    r = await client.get("/v2/repo/manifests/docker", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 200 and r.headers["Content-Type"] == DOCKER_MANIFEST
    await push_image(client, "repo", "oci")
    r = await client.get("/v2/repo/manifests/oci", headers={"Accept": DOCKER_MANIFEST})
    assert r.status == 404 and await code(r) == "MANIFEST_UNKNOWN"
    # repeated Accept headers are merged (skopeo sends one line per type)
    headers = [("Accept", DOCKER_MANIFEST), ("Accept", OCI_MANIFEST)]
    r = await client.get("/v2/repo/manifests/oci", headers=headers)
    assert r.status == 200


async def test_put_validation(client):
    config, layer = b"{}", b"layer"
    body = image_manifest(config, [layer])
    r = await client.put("/v2/repo/manifests/t", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await code(r) == "MANIFEST_BLOB_UNKNOWN"
    await push_blob(client, "repo", config)
    await push_blob(client, "repo", layer)
    wrong = digest_of(b"other")
    r = await client.put(f"/v2/repo/manifests/{wrong}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await code(r) == "DIGEST_INVALID"
    r = await client.put("/v2/repo/manifests/t", data=b"{not json", headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await code(r) == "MANIFEST_INVALID"
    r = await client.put("/v2/repo/manifests/bad:tag", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400 and await code(r) == "DIGEST_INVALID"  # a ":" makes it a digest reference
    r = await client.put("/v2/repo/manifests/t", data=b" " * (5 << 20), headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 413 and await code(r) == "SIZE_INVALID"
    r = await client.put(f"/v2/repo/manifests/{digest_of(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and loc_of(r).endswith(digest_of(body))
    assert (await client.get("/v2/repo/manifests/t")).status == 404


async def test_index_requires_children(client):
    d1, b1 = await push_image(client, "multi", None, seed=b"a")
    d2, b2 = await push_image(client, "multi", None, seed=b"b")
    missing = digest_of(b"missing manifest")
    entries = [{"mediaType": OCI_MANIFEST, "digest": x, "size": 10,
                "platform": {"architecture": a, "os": "linux"}} for x, a in ((d1, "amd64"), (d2, "arm64"))]
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                      "manifests": entries + [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 3}]}).encode()
    r = await client.put("/v2/multi/manifests/all", data=bad, headers={"Content-Type": OCI_INDEX})
    assert r.status == 400 and await code(r) == "MANIFEST_BLOB_UNKNOWN"
    good = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    r = await client.put("/v2/multi/manifests/all", data=good, headers={"Content-Type": OCI_INDEX})
    assert r.status == 201
    r = await client.get("/v2/multi/manifests/all", headers={"Accept": OCI_INDEX})
    assert await r.read() == good and r.headers["Content-Type"] == OCI_INDEX


async def test_delete_by_tag_and_digest(client):
    d, _ = await push_image(client, "repo", "a")
    for tag in ("b", "c"):
        r = await client.put(f"/v2/repo/manifests/{tag}", data=(await (await client.get("/v2/repo/manifests/a")).read()),
                             headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201
    r = await client.delete("/v2/repo/manifests/a")
    assert r.status == 202
    assert (await client.get("/v2/repo/manifests/a")).status == 404
    assert (await client.get(f"/v2/repo/manifests/{d}")).status == 200
    tags = (await (await client.get("/v2/repo/tags/list")).json())["tags"]
    assert tags == ["b", "c"]
    # retag c elsewhere: deleting d must leave it
    d2, _ = await push_image(client, "repo", "c", seed=b"other")
    r = await client.delete(f"/v2/repo/manifests/{d}")
    assert r.status == 202
    assert (await client.get(f"/v2/repo/manifests/{d}")).status == 404
    assert (await client.get("/v2/repo/manifests/b")).status == 404
    assert (await client.get("/v2/repo/manifests/c")).status == 200
    assert (await (await client.get("/v2/repo/tags/list")).json())["tags"] == ["c"]
    r = await client.delete(f"/v2/repo/manifests/{d}")
    assert r.status == 404 and await code(r) == "MANIFEST_UNKNOWN"
    r = await client.delete("/v2/repo/manifests/nope")
    assert r.status == 404 and await code(r) == "MANIFEST_UNKNOWN"


async def test_tags_pagination(client):
    d, body = await push_image(client, "repo", "t00")
    for i in range(1, 7):
        await client.put(f"/v2/repo/manifests/t{i:02d}", data=body, headers={"Content-Type": OCI_MANIFEST})
    r = await client.get("/v2/repo/tags/list")
    assert (await r.json()) == {"name": "repo", "tags": [f"t{i:02d}" for i in range(7)]}
    r = await client.get("/v2/repo/tags/list?n=3")
    assert (await r.json())["tags"] == ["t00", "t01", "t02"]
    assert r.headers["Link"] == '</v2/repo/tags/list?n=3&last=t02>; rel="next"'
    r = await client.get("/v2/repo/tags/list?n=3&last=t02")
    assert (await r.json())["tags"] == ["t03", "t04", "t05"]
    r = await client.get("/v2/repo/tags/list?n=3&last=t05")
    assert (await r.json())["tags"] == ["t06"] and "Link" not in r.headers
    r = await client.get("/v2/repo/tags/list?n=0")
    assert (await r.json())["tags"] == []
    r = await client.get("/v2/repo/tags/list?n=abc")
    assert r.status == 400 and await code(r) == "PAGINATION_NUMBER_INVALID"
    r = await client.get("/v2/repo/tags/list?n=99999999999999999999999")
    assert r.status == 400 and await code(r) == "PAGINATION_NUMBER_INVALID"
    r = await client.get("/v2/nothere/tags/list")
    assert r.status == 404 and await code(r) == "NAME_UNKNOWN"


async def test_catalog(client):
    for name in ("b", "a", "a/b", "a-c", "x/y/z"):
        await push_image(client, name, "latest")
    await push_blob(client, "blobonly", b"no manifest")
    r = await client.get("/v2/_catalog")
    assert (await r.json())["repositories"] == ["a", "a/b", "a-c", "b", "x/y/z"]
    r = await client.get("/v2/_catalog?n=2")
    assert (await r.json())["repositories"] == ["a", "a/b"]
    assert r.headers["Link"] == '</v2/_catalog?n=2&last=a%2Fb>; rel="next"'
    r = await client.get("/v2/_catalog?n=2&last=a/b")
    assert (await r.json())["repositories"] == ["a-c", "b"]
    r = await client.get("/v2/_catalog?n=2&last=b")
    assert (await r.json())["repositories"] == ["x/y/z"] and "Link" not in r.headers


async def test_referrers(client):
    subject, subject_body = await push_image(client, "repo", "v1")
    empty = b"{}"
    await push_blob(client, "repo", empty)
    refs = []
    for art, ann in (("application/vnd.example.sbom", "one"), ("application/vnd.example.sig", "two")):
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": art,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty), "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_body)},
            "annotations": {"note": ann},
        }).encode()
        r = await client.put(f"/v2/repo/manifests/{digest_of(body)}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201 and r.headers["OCI-Subject"] == subject
        refs.append((digest_of(body), art, body))
    r = await client.get(f"/v2/repo/referrers/{subject}")
    assert r.status == 200 and r.headers["Content-Type"] == OCI_INDEX
    index = await r.json()
    assert index["mediaType"] == OCI_INDEX
    assert {m["digest"] for m in index["manifests"]} == {d for d, _, _ in refs}
    sbom = next(m for m in index["manifests"] if m["artifactType"] == "application/vnd.example.sbom")
    assert sbom["annotations"] == {"note": "one"} and sbom["size"] == len(refs[0][2])
    r = await client.get(f"/v2/repo/referrers/{subject}?artifactType=application/vnd.example.sig")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in (await r.json())["manifests"]] == [refs[1][0]]
    # a subject that does not exist (yet) is fine; the list of an unknown digest is empty
    r = await client.get(f"/v2/repo/referrers/{digest_of(b'nothing')}")
    assert r.status == 200 and (await r.json())["manifests"] == []
    r = await client.get("/v2/repo/referrers/sha256:bad")
    assert r.status == 400 and await code(r) == "DIGEST_INVALID"
    # deleting a referrer removes it from the list
    await client.delete(f"/v2/repo/manifests/{refs[0][0]}")
    r = await client.get(f"/v2/repo/referrers/{subject}")
    assert [m["digest"] for m in (await r.json())["manifests"]] == [refs[1][0]]


async def test_subject_may_be_missing(client):
    empty = b"{}"
    await push_blob(client, "repo", empty)
    ghost = digest_of(b"ghost")
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.example.config", "digest": digest_of(empty), "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": ghost, "size": 10},
    }).encode()
    r = await client.put("/v2/repo/manifests/sig", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201 and r.headers["OCI-Subject"] == ghost
    r = await client.get(f"/v2/repo/referrers/{ghost}")
    assert (await r.json())["manifests"][0]["artifactType"] == "application/vnd.example.config"


async def test_manifests_written_by_another_registry_are_adopted(client):
    """Storage written the reference's way (blob, revision link, tag links; none of our indexes)."""
    from registry.reference import try_digest
    from registry.store import paths

    from registry.app import DRIVER_KEY

    driver = client.app[DRIVER_KEY]
    subject, subject_body = await push_image(client, "repo", "v1")
    empty = b"{}"
    await push_blob(client, "repo", empty)
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty), "size": 2},
        "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_body)},
    }).encode()
    d = try_digest(digest_of(body))
    for path, data in ((paths.blob_data(d), body), (paths.revision_link("repo", d), str(d).encode()),
                       (paths.tag_index_link("repo", "foreign", d), str(d).encode()),
                       (paths.tag_current_link("repo", "foreign"), str(d).encode())):
        await driver.put_content(path, data)
    r = await client.get(f"/v2/repo/referrers/{subject}")
    assert [m["digest"] for m in (await r.json())["manifests"]] == [str(d)]
    # a tag ours adds later, then a delete by digest: both tags go
    r = await client.put("/v2/repo/manifests/ours", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert (await client.delete(f"/v2/repo/manifests/{d}")).status == 202
    assert (await (await client.get("/v2/repo/tags/list")).json())["tags"] == ["v1"]


async def test_lost_or_damaged_manifest_data(client):
    from registry.app import DRIVER_KEY
    from registry.reference import try_digest
    from registry.store import paths

    driver = client.app[DRIVER_KEY]
    d, body = await push_image(client, "repo", "v1")
    data_path = paths.blob_data(try_digest(d))
    await driver.put_content(data_path, body.replace(b"layer", b"LAYER", 1))  # same size, other bytes
    r = await client.get("/v2/repo/manifests/v1")
    assert r.status == 404 and (await r.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    r = await client.put("/v2/repo/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert await (await client.get("/v2/repo/manifests/v1")).read() == body
    await driver.delete(data_path)  # lost
    assert (await client.get("/v2/repo/manifests/v1")).status == 404
    r = await client.put("/v2/repo/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201
    assert await (await client.get(f"/v2/repo/manifests/{d}")).read() == body
