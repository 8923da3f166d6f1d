"""Interop with the reference registry (distribution 2.8.2) serving the SAME storage directory.

Both registries run as real processes on free loopback ports, with the filesystem driver on one root
and one ``http.secret``. What one writes, the other must serve byte for byte with equal digests:
OCI and Docker schema 2 images, OCI indexes and Docker manifest lists, deletions, cross-repository
mounts, and uploads started on one registry and finished on the other (our upload state token
uses distribution's ``_state`` format and Go's binary SHA-256 state under ``hashstates/``).

Only what both support is compared: 2.8.2 has no referrers API, no ``OCI-Subject``, no tag deletion,
does not paginate tags, and answers some malformed requests with 500.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import require_tool, run_cli
from fixtures_registry import (
    OCI_MANIFEST,
    REFERENCE_BINARY,
    SCHEMA1_SIGNED,
    Client,
    Image,
    RunningRegistry,
    assert_pulls,
    make_image,
    make_index,
    make_schema1,
    push_image,
    sha256,
    start_or_fail,
)

V2 = Path("docker/registry/v2")


@pytest.fixture(scope="module")
def ours(our_registry: RunningRegistry) -> Client:
    return our_registry.client


@pytest.fixture(scope="module")
def ref(reference_registry: RunningRegistry) -> Client:
    return reference_registry.client


@pytest.fixture(scope="module")
def root(our_registry: RunningRegistry, reference_registry: RunningRegistry) -> Path:
    assert our_registry.root == reference_registry.root
    return our_registry.root / V2


def _pair(ours: Client, ref: Client, direction: str) -> tuple[Client, Client]:
    return (ours, ref) if direction == "ours-to-reference" else (ref, ours)


DIRECTIONS = ["ours-to-reference", "reference-to-ours"]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_image_pushed_to_one_is_pulled_from_the_other(ours, ref, kind, direction):
    pusher, puller = _pair(ours, ref, direction)
    repo = f"interop/{kind}-image-{direction}"
    image = make_image(kind, label=f"{kind}-{direction}")
    push_image(pusher, repo, image, tag="v1")
    assert_pulls(puller, repo, image, ref="v1")
    assert_pulls(puller, repo, image)  # by digest
    tags = puller.request("GET", f"/v2/{repo}/tags/list")
    assert tags.status == 200 and tags.json() == {"name": repo, "tags": ["v1"]}, tags


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_multi_arch_index_pushed_to_one_is_pulled_from_the_other(ours, ref, kind, direction):
    pusher, puller = _pair(ours, ref, direction)
    repo = f"interop/{kind}-index-{direction}"
    index = make_index(kind, label=f"{kind}-index-{direction}")
    push_image(pusher, repo, index, tag="multi")
    assert_pulls(puller, repo, index, ref="multi")
    # the children are reachable by digest from both registries
    for child in index.children:
        assert_pulls(pusher, repo, child)


def test_tag_and_manifest_deleted_via_ours_are_gone_on_both(ours, ref):
    repo = "interop/delete-via-ours"
    image = make_image("oci", label="delete-via-ours")
    push_image(ours, repo, image, tag="keep")
    assert ours.put_manifest(repo, "gone", image.manifest, OCI_MANIFEST).status == 201
    assert ref.get_manifest(repo, "gone").status == 200
    # tag deletion (spec 1.1; the reference cannot do it) removes the tag only
    resp = ours.request("DELETE", f"/v2/{repo}/manifests/gone")
    assert resp.status == 202, resp
    for client in (ours, ref):
        assert client.get_manifest(repo, "gone").status == 404
        assert client.get_manifest(repo, "keep").status == 200
        assert client.get_manifest(repo, image.digest).status == 200
        assert client.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["keep"]
    # deleting by digest removes the manifest and every tag pointing at it
    resp = ours.request("DELETE", f"/v2/{repo}/manifests/{image.digest}")
    assert resp.status == 202, resp
    for client in (ours, ref):
        assert client.get_manifest(repo, image.digest).status == 404
        assert client.get_manifest(repo, "keep").status == 404
        tags = client.request("GET", f"/v2/{repo}/tags/list")
        assert tags.status in (200, 404), tags
        if tags.status == 200:
            assert not tags.json().get("tags"), tags


def test_manifest_deleted_via_reference_is_gone_on_ours(ours, ref):
    repo = "interop/delete-via-reference"
    image = make_image("docker", label="delete-via-reference")
    push_image(ours, repo, image, tag="latest")
    resp = ref.request("DELETE", f"/v2/{repo}/manifests/{image.digest}")
    assert resp.status == 202, resp
    assert ours.get_manifest(repo, image.digest).status == 404
    assert ours.get_manifest(repo, "latest").status == 404
    # blobs stay (no garbage collection): still pullable by digest from both
    for client in (ours, ref):
        for digest in image.blobs:
            assert client.request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 200


def test_blob_deleted_via_ours_is_gone_on_reference(ours, ref):
    repo = "interop/blob-delete"
    data = b"a blob to unlink" * 100
    assert ours.push_blob(repo, data).status == 201
    assert ref.request("HEAD", f"/v2/{repo}/blobs/{sha256(data)}").status == 200
    assert ours.request("DELETE", f"/v2/{repo}/blobs/{sha256(data)}").status == 202
    assert ref.request("HEAD", f"/v2/{repo}/blobs/{sha256(data)}").status == 404
    assert ours.request("HEAD", f"/v2/{repo}/blobs/{sha256(data)}").status == 404


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_blob_mounted_across_repositories(ours, ref, direction):
    mounter, reader = _pair(ours, ref, direction)
    src, dst = f"interop/mount-src-{direction}", f"interop/mount-dst-{direction}"
    data = f"mounted blob {direction}".encode() * 50
    digest = sha256(data)
    assert reader.push_blob(src, data).status == 201
    resp = mounter.request("POST", f"/v2/{dst}/blobs/uploads/", query={"mount": digest, "from": src})
    assert resp.status == 201, resp
    assert resp.header("Docker-Content-Digest") == digest, resp
    for client in (ours, ref):
        blob = client.request("GET", f"/v2/{dst}/blobs/{digest}")
        assert blob.status == 200 and blob.body == data, blob


def test_catalog_agrees(ours, ref, root):
    """Same repositories. 2.8.2 counts a directory as a repository when it holds ``_layers`` (even with no
    manifest); we count ``_manifests``. Compared where the two definitions agree."""
    push_image(ref, "interop/catalog/nested", make_image("oci", label="catalog"), tag="x")
    ours_repos = ours.request("GET", "/v2/_catalog", query={"n": "1000"}).json()["repositories"]
    ref_repos = ref.request("GET", "/v2/_catalog", query={"n": "1000"}).json()["repositories"]
    assert "interop/catalog/nested" in ours_repos and "interop/catalog/nested" in ref_repos
    for repo in ours_repos:
        if (root / "repositories" / repo / "_layers").is_dir():
            assert repo in ref_repos, repo
    for repo in ref_repos:
        if (root / "repositories" / repo / "_manifests").is_dir():
            assert repo in ours_repos, repo


def _go_sha256_state_length(state: bytes) -> int:
    """Bytes hashed so far, from Go's crypto/sha256 MarshalBinary: "sha\\x03", 8 words, 64-byte block, len."""
    assert state[:4] == b"sha\x03", state[:8]
    assert len(state) == 4 + 32 + 64 + 8, len(state)
    return struct.unpack(">Q", state[-8:])[0]


def _upload_dir(root: Path, repo: str, location: str) -> Path:
    upload_id = location.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return root / "repositories" / repo / "_uploads" / upload_id


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_upload_started_on_one_is_finished_on_the_other(ours, ref, root, direction):
    starter, finisher = _pair(ours, ref, direction)
    repo = f"interop/upload-{direction}"
    data = bytes(range(256)) * 300 + direction.encode()
    first, second = data[:40000], data[40000:]
    resp = starter.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert resp.status == 202, resp
    resp = starter.request("PATCH", resp.location_path(), body=first,
                           headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 202 and resp.header("Range") == f"0-{len(first) - 1}", resp
    # the starter saved Go's binary hash state at the offset it reached: the finisher resumes it
    state_file = _upload_dir(root, repo, resp.location_path()) / "hashstates" / "sha256" / str(len(first))
    assert state_file.is_file(), sorted(p.name for p in state_file.parent.parent.parent.rglob("*"))
    assert _go_sha256_state_length(state_file.read_bytes()) == len(first)
    status = finisher.request("GET", resp.location_path())
    assert status.status == 204 and status.header("Range") == f"0-{len(first) - 1}", status
    resp = finisher.request("PATCH", status.location_path(), body=second,
                            headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 202 and resp.header("Range") == f"0-{len(data) - 1}", resp
    resp = finisher.request("PUT", resp.location_path(), query={"digest": sha256(data)})
    assert resp.status == 201, resp
    assert resp.header("Docker-Content-Digest") == sha256(data), resp
    assert not state_file.parent.parent.parent.exists(), "the finished upload left its _uploads directory behind"
    for client in (ours, ref):
        blob = client.request("GET", f"/v2/{repo}/blobs/{sha256(data)}")
        assert blob.status == 200 and blob.body == data, blob


def test_upload_token_from_one_registry_cannot_be_forged(ours, ref):
    """A Location whose state was tampered with is refused by both, never a 500."""
    resp = ours.request("POST", "/v2/interop/forged/blobs/uploads/")
    loc = resp.location_path()
    path, _, query = loc.partition("?")
    tampered = path + "?" + query.replace("_state=", "_state=AAAA")
    for client in (ours, ref):
        answer = client.request("PATCH", tampered, body=b"x", headers={"Content-Type": "application/octet-stream"})
        assert answer.status in (400, 404), answer


# --------------------------------------------------------------------------- Docker schema 1

SCHEMA1_ON = "compatibility:\n  schema1:\n    enabled: true\n"


def _start_pair(tmp_path_factory: pytest.TempPathFactory, name: str, extra_config: str = ""):
    """Ours and the reference on a fresh shared root of their own (for tests that rewrite the whole root)."""
    require_tool(REFERENCE_BINARY, hint="`make apt-deps` installs docker-registry")
    shared = tmp_path_factory.mktemp(f"{name}-root")
    work = tmp_path_factory.mktemp(name)
    ours_reg = start_or_fail("ours", shared, work, extra_config)
    try:
        ref_reg = start_or_fail("reference", shared, work, extra_config)
    except BaseException:
        ours_reg.stop()
        raise
    return ours_reg, ref_reg


@pytest.fixture(scope="module")
def schema1_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Client]]:
    """Both registries with schema 1 pushes enabled (off by default in both), on their own shared root."""
    ours_reg, ref_reg = _start_pair(tmp_path_factory, "schema1", SCHEMA1_ON)
    yield ours_reg.client, ref_reg.client
    ref_reg.stop()
    ours_reg.stop()


def _schema1_payload(body: bytes, media_type: str) -> bytes:
    """What Docker clients digest: the JWS payload (signatures cut out by formatLength/formatTail)."""
    if media_type != SCHEMA1_SIGNED:
        return body
    protected = json.loads(body)["signatures"][0]["protected"]
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    tail = header["formatTail"]
    return body[:header["formatLength"]] + base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_signed_schema1_pushed_to_one_is_served_by_the_other(schema1_pair, direction):
    """The reference stores only the canonical payload and re-signs it with its own key on every GET;
    we keep the pushed signed bytes. So: same digest everywhere, the payload under it byte for byte,
    and our registry serves the exact bytes it was sent."""
    ours, ref = schema1_pair
    pusher, puller = _pair(ours, ref, direction)
    repo = f"interop/schema1-{direction}"
    signed, digest, blobs = make_schema1(repo, "old", label=direction)
    for blob_digest, data in blobs.items():
        assert pusher.push_blob(repo, data, blob_digest).status == 201
    resp = pusher.put_manifest(repo, "old", signed, SCHEMA1_SIGNED)
    assert resp.status == 201, resp
    assert resp.header("Docker-Content-Digest") == digest, resp
    for client in (ours, ref):
        for reference in ("old", digest):
            got = client.get_manifest(repo, reference)
            assert got.status == 200, got
            assert got.header("Docker-Content-Digest") == digest, got
            media_type = (got.header("Content-Type") or "").split(";")[0]
            assert media_type in (SCHEMA1_SIGNED, "application/vnd.docker.distribution.manifest.v1+json"), got
            assert sha256(_schema1_payload(got.body, media_type)) == digest, "served bytes do not hash to the digest"
            if client is ours and pusher is ours:
                assert got.body == signed and media_type == SCHEMA1_SIGNED, "ours must serve the bytes it was sent"


# --------------------------------------------------------------------------- referrers over a shared root


def _artifact(subject_digest: str, subject_size: int, label: str) -> Image:
    """An OCI artifact (artifactType, empty config) whose ``subject`` is the given image manifest."""
    config, layer = b"{}", f"signature {label}".encode()
    body = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.example.signature", "digest": sha256(layer), "size": len(layer)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size},
        "annotations": {"org.example.label": label},
    }
    return Image(json.dumps(body, indent=2).encode(), OCI_MANIFEST, {sha256(config): config, sha256(layer): layer})


def _referrer_labels(client: Client, repo: str, subject: str) -> list[str]:
    resp = client.request("GET", f"/v2/{repo}/referrers/{subject}")
    assert resp.status == 200, resp
    return sorted(m.get("annotations", {}).get("org.example.label", "?") for m in resp.json()["manifests"])


def test_referrer_deleted_via_reference_disappears_from_our_referrers(ours, ref):
    repo = "interop/referrers-delete"
    image = make_image("oci", label="referrers-delete")
    push_image(ours, repo, image, tag="v1")
    keep, drop = (_artifact(image.digest, len(image.manifest), label) for label in ("keep", "drop"))
    push_image(ours, repo, keep)
    push_image(ours, repo, drop)
    assert _referrer_labels(ours, repo, image.digest) == ["drop", "keep"]
    assert ref.request("DELETE", f"/v2/{repo}/manifests/{drop.digest}").status == 202
    assert _referrer_labels(ours, repo, image.digest) == ["keep"]


def test_referrer_pushed_via_reference_is_listed_by_ours(ours, ref):
    """The reference knows nothing of referrers; a signature pushed through it (the subject field is stored
    as part of the manifest) must still show in our referrers list for the shared storage (issue 3: the
    referrers index "can be rebuilt from the manifests")."""
    repo = "interop/referrers-from-reference"
    image = make_image("oci", label="referrers-from-reference")
    push_image(ours, repo, image, tag="v1")
    push_image(ours, repo, _artifact(image.digest, len(image.manifest), "via-ours"))
    push_image(ref, repo, _artifact(image.digest, len(image.manifest), "via-reference"))
    assert _referrer_labels(ours, repo, image.digest) == ["via-ours", "via-reference"]


def test_delete_by_digest_via_ours_removes_tags_written_by_the_reference(ours, ref):
    """Tags the reference wrote are not in our reverse tag index; deleting the manifest by digest through
    ours must still leave no tag that lists but does not resolve, on either registry."""
    repo = "interop/reverse-index"
    image = make_image("oci", label="reverse-index")
    push_image(ref, repo, image, tag="t-ref")
    assert ours.put_manifest(repo, "t-ours", image.manifest, image.media_type).status == 201
    other = make_image("oci", label="reverse-index-other")
    push_image(ours, repo, other, tag="unrelated")
    assert ours.request("DELETE", f"/v2/{repo}/manifests/{image.digest}").status == 202
    for client in (ours, ref):
        for tag in ("t-ref", "t-ours"):
            assert client.get_manifest(repo, tag).status == 404
        listed = client.request("GET", f"/v2/{repo}/tags/list").json()["tags"]
        assert listed == ["unrelated"], f"tags that do not resolve are listed: {listed}"


def test_tag_added_later_by_the_reference_is_found_after_reindex(ours, ref, our_registry):
    """A tag the reference adds to a manifest our reverse index already knows is not found by an
    O(own tags) delete; `registry reindex` (the documented remedy) makes the delete complete."""
    repo = "interop/reverse-index-later"
    image = make_image("oci", label="reverse-index-later")
    push_image(ours, repo, image, tag="t-ours")
    assert ref.put_manifest(repo, "t-ref-later", image.manifest, image.media_type).status == 201
    result = run_cli("reindex", "--config", str(our_registry.config_path), repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{repo}: ") and "2 tags" in result.stdout, result.stdout
    assert ours.request("DELETE", f"/v2/{repo}/manifests/{image.digest}").status == 202
    for client in (ours, ref):
        assert client.get_manifest(repo, "t-ref-later").status == 404
    tags = ours.request("GET", f"/v2/{repo}/tags/list")
    assert tags.status == 404 or not tags.json().get("tags"), f"a tag that does not resolve is listed: {tags!r}"


def test_tag_moved_by_reference_survives_deletion_of_its_old_target_via_ours(ours, ref):
    repo = "interop/moved-tag"
    old, new = make_image("oci", label="moved-old"), make_image("oci", label="moved-new")
    push_image(ours, repo, old, tag="moving")
    push_image(ref, repo, new, tag="moving")  # the reference moves the tag; our reverse index still has it
    assert ours.request("DELETE", f"/v2/{repo}/manifests/{old.digest}").status == 202
    for client in (ours, ref):
        got = client.get_manifest(repo, "moving")
        assert got.status == 200 and got.body == new.manifest, got


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_sha512_blob_pushed_to_one_is_pulled_from_the_other(ours, ref, direction):
    import hashlib

    pusher, puller = _pair(ours, ref, direction)
    repo = f"interop/sha512-{direction}"
    data = f"a sha512 blob {direction}".encode() * 2000
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    assert pusher.push_blob(repo, data, digest).status == 201
    got = puller.request("GET", f"/v2/{repo}/blobs/{digest}")
    assert got.status == 200 and got.body == data, got
    assert got.header("Docker-Content-Digest") == digest, got


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_upload_started_on_one_is_cancelled_on_the_other(ours, ref, direction):
    starter, canceller = _pair(ours, ref, direction)
    repo = f"interop/cancel-{direction}"
    loc = starter.request("POST", f"/v2/{repo}/blobs/uploads/").location_path()
    resp = starter.request("PATCH", loc, body=b"partial", headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 202, resp
    cancel = canceller.request("DELETE", resp.location_path())
    assert cancel.status == 204, cancel
    for client in (ours, ref):
        assert client.request("GET", resp.location_path()).status == 404


# --------------------------------------------------------------------------- the reference's garbage collector


@pytest.fixture
def gc_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRegistry, RunningRegistry]]:
    ours_reg, ref_reg = _start_pair(tmp_path_factory, "gc")
    yield ours_reg, ref_reg
    ref_reg.stop()
    ours_reg.stop()


def test_reference_garbage_collect_keeps_everything_we_pushed(gc_pair):
    """`registry garbage-collect` (2.8.2, without --delete-untagged) over a root we wrote: every manifest we
    pushed (tagged, untagged, index children, referrers) and its blobs survive, our referrers list still
    answers, and only a blob no manifest references is swept."""
    import subprocess

    ours_reg, ref_reg = gc_pair
    ours = ours_reg.client
    repo = "gc/images"
    tagged, untagged = make_image("oci", label="gc-tagged"), make_image("docker", label="gc-untagged")
    index = make_index("oci", label="gc-index")
    push_image(ours, repo, tagged, tag="keep")
    push_image(ours, repo, untagged)
    push_image(ours, repo, index, tag="multi")
    signature = _artifact(tagged.digest, len(tagged.manifest), "gc-signature")
    push_image(ours, repo, signature)
    orphan = b"a blob no manifest references"
    assert ours.push_blob(repo, orphan).status == 201
    run = subprocess.run([REFERENCE_BINARY, "garbage-collect", str(ref_reg.config_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    for client in (ours, ref_reg.client):
        assert_pulls(client, repo, tagged, ref="keep")
        assert_pulls(client, repo, index, ref="multi")
        assert_pulls(client, repo, untagged)
        assert_pulls(client, repo, signature)
        assert client.request("GET", f"/v2/{repo}/blobs/{sha256(orphan)}").status == 404
    assert _referrer_labels(ours, repo, tagged.digest) == ["gc-signature"]
    # pushing the swept blob again brings it back
    assert ours.push_blob(repo, orphan).status == 201
    assert ours.request("GET", f"/v2/{repo}/blobs/{sha256(orphan)}").body == orphan


def _blob_data_path(root: Path, digest: str) -> Path:
    alg, hexpart = digest.split(":")
    return root / "blobs" / alg / hexpart[:2] / hexpart / "data"


def test_repush_restores_data_lost_from_the_shared_root(ours, ref, root):
    """If a blob's data vanished from storage (another tool, a partial restore) while the repository links
    stay, pushing the same content again must make it readable: a 201 that leaves a 404 behind is a lie."""
    repo = "interop/data-loss"
    image = make_image("oci", label="data-loss", n_layers=1)
    push_image(ours, repo, image, tag="v1")
    layer = [d for d in image.blobs if d != json.loads(image.manifest)["config"]["digest"]][0]
    _blob_data_path(root, image.digest).unlink()
    _blob_data_path(root, layer).unlink()
    for client in (ours, ref):
        assert client.get_manifest(repo, "v1").status == 404
        assert client.request("GET", f"/v2/{repo}/blobs/{layer}").status == 404
    assert ours.push_blob(repo, image.blobs[layer], layer).status == 201
    resp = ours.put_manifest(repo, "v1", image.manifest, image.media_type)
    assert resp.status == 201, resp
    for client in (ours, ref):
        assert_pulls(client, repo, image, ref="v1")


def test_upload_startedat_is_rfc3339_both_ways(ours, ref, root):
    """The reference's upload purger parses ``startedat`` with Go's RFC 3339; ours must write that format
    (and read the reference's, which carries nanoseconds)."""
    import re

    rfc3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
    for client, repo in ((ours, "interop/startedat-ours"), (ref, "interop/startedat-ref")):
        loc = client.request("POST", f"/v2/{repo}/blobs/uploads/").location_path()
        startedat = (_upload_dir(root, repo, loc) / "startedat").read_text()
        assert rfc3339.fullmatch(startedat), startedat
        other = ref if client is ours else ours
        assert other.request("GET", loc).status == 204
        assert other.request("DELETE", loc).status == 204


# --------------------------------------------------------------------------- every data set of the conformance suite

from test_conformance import NEXT_DATA  # noqa: E402  (the upstream suite's data sets, built once)


#: the data sets distribution 2.8.2 refuses as a whole (it predates them): sha512 manifest digests
#: (400 DIGEST_INVALID) and OCI non-distributable layers that were never pushed (500 with
#: MANIFEST_BLOB_UNKNOWN). Any other refusal fails the test instead of skipping it.
REFERENCE_REFUSES = {"sha512", "tag-param-sha512", "non-distributable-layers"}


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", [n for n, td in NEXT_DATA.items() if not td.push_bad_digest])
def test_conformance_data_set_pushed_to_one_is_served_by_the_other(ours, ref, name, direction):
    """Each data set of the upstream suite (artifacts, empty config, nested indexes, subjects, data fields,
    non-distributable layers, custom fields, sha512...) pushed by digest to one registry is served byte for
    byte by the other. The reference may refuse what 2.8.2 does not know: those manifests are skipped for
    the reference-to-ours direction only; whatever it accepted must be served by ours."""
    pusher, puller = _pair(ours, ref, direction)
    td = NEXT_DATA[name]
    repo = f"interop/data-{name}-{direction}"
    for digest, data in td.blobs.items():
        assert pusher.push_blob(repo, data, digest).status == 201
    accepted, refused = [], []
    for digest in td.man_order:
        content = td.manifests[digest]
        resp = pusher.put_manifest(repo, digest, content, json.loads(content).get("mediaType", OCI_MANIFEST))
        if pusher is ref and resp.status != 201:
            refused.append(resp)
            continue
        assert resp.status == 201, resp
        accepted.append(digest)
    if not accepted:
        assert name in REFERENCE_REFUSES, f"2.8.2 refused data set {name}: {refused[0].status} {refused[0].body[:200]!r}"
        pytest.skip(f"distribution 2.8.2 refuses this data set: {refused[0].status} {refused[0].body[:200]!r}")
    for digest in accepted:
        got = puller.get_manifest(repo, digest)
        assert got.status == 200 and got.body == td.manifests[digest], got
        assert got.header("Docker-Content-Digest") == digest, got
    for digest, data in td.blobs.items():
        got = puller.request("GET", f"/v2/{repo}/blobs/{digest}")
        assert got.status == 200 and got.body == data, got
