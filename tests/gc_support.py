"""What the garbage-collection tests share: a registry content scenario pushed through the real API,
the CLI runner, and checks of what is left in a storage root.

:func:`push_scenario` pushes, through the HTTP API of a running registry, content of every kind the
collector must judge: a tagged image and its signature (untagged referrer), an untagged image with
a referrer of its own, a tagged multi-arch index whose children are untagged, a Docker schema 2
image, a signed schema 1 manifest, an image whose layer was mounted from another repository, an
untagged Docker image and a blob no manifest references. :class:`Scenario` says what must survive
a collection with and without ``--delete-untagged``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

from fixtures_registry import (
    OCI_MANIFEST,
    SCHEMA1_SIGNED,
    Client,
    Image,
    assert_pulls,
    make_image,
    make_index,
    make_schema1,
    push_image,
    sha256,
)
from helpers import run_cli

V2 = Path("docker/registry/v2")
APP, OTHER = "gc/app", "gc/other"
#: our registry's extra config for the scenario (schema 1 pushes are off by default)
SCHEMA1_ON = "compatibility:\n  schema1:\n    enabled: true\n"


def artifact(subject: Image, label: str) -> Image:
    """An OCI artifact (artifactType, empty config, one layer) whose ``subject`` is ``subject``."""
    config, layer = b"{}", f"signature of {label}".encode()
    body = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.example.signature", "digest": sha256(layer), "size": len(layer)}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)},
        "annotations": {"org.example.label": label},
    }  # fmt: skip
    return Image(json.dumps(body, indent=2).encode(), OCI_MANIFEST, {sha256(config): config, sha256(layer): layer})


def image_using(kind: str, label: str, shared: dict[str, bytes]) -> Image:
    """An image whose layers are ``shared`` plus one of its own."""
    own = make_image(kind, label=label, n_layers=1)
    body = json.loads(own.manifest)
    layer_type = body["layers"][0]["mediaType"]
    body["layers"] += [{"mediaType": layer_type, "digest": d, "size": len(data)} for d, data in shared.items()]
    manifest = json.dumps(body, indent=3).encode()
    return Image(manifest, own.media_type, {**own.blobs, **shared})


@dataclasses.dataclass
class Scenario:
    #: (repository, tag or None, image): pushed, and what each must be after each kind of collection
    kept_always: list[tuple[str, str | None, Image]]
    #: untagged and not reachable: deleted by --delete-untagged only
    untagged: list[tuple[str, Image]]
    #: blob digests no manifest references (and the repository they were pushed to)
    orphans: list[tuple[str, str]]
    schema1: tuple[str, str, bytes, str, dict[str, bytes]]

    def blobs_of(self, images: list[Image]) -> set[str]:
        out: set[str] = set()
        for image in images:
            out |= set(image.all_blobs())
            out.add(image.digest)
            out |= {c.digest for c in image.children}
        return out

    def surviving_blobs(self, delete_untagged: bool) -> set[str]:
        images = [i for _, _, i in self.kept_always] + ([] if delete_untagged else [i for _, i in self.untagged])
        _, _, _, digest, blobs = self.schema1
        return self.blobs_of(images) | {digest} | set(blobs)


def push_scenario(client: Client, prefix: str = "") -> Scenario:
    app, other = f"{prefix}{APP}", f"{prefix}{OTHER}"
    base = make_image("oci", label=f"{prefix}base")
    push_image(client, app, base, tag="keep")
    signature = artifact(base, f"{prefix}sig-of-base")
    push_image(client, app, signature)
    old = make_image("oci", label=f"{prefix}old")
    push_image(client, app, old)
    old_signature = artifact(old, f"{prefix}sig-of-old")
    push_image(client, app, old_signature)
    index = make_index("oci", label=f"{prefix}multi")
    push_image(client, app, index, tag="multi")
    docker = make_image("docker", label=f"{prefix}docker")
    push_image(client, other, docker, tag="v2")
    old_docker = make_image("docker", label=f"{prefix}old-docker")
    push_image(client, other, old_docker)
    # a layer of base mounted into the other repository, and an image there that uses it
    shared_digest = json.loads(base.manifest)["layers"][0]["digest"]
    mount = client.request("POST", f"/v2/{other}/blobs/uploads/", query={"mount": shared_digest, "from": app})
    assert mount.status == 201, mount
    mounted = image_using("oci", f"{prefix}mounted", {shared_digest: base.blobs[shared_digest]})
    push_image(client, other, mounted, tag="mounted")
    # schema 1, signed
    s1_body, s1_digest, s1_blobs = make_schema1(other, "s1", label=f"{prefix}schema1")
    for d, data in s1_blobs.items():
        assert client.push_blob(other, data, d).status == 201
    resp = client.put_manifest(other, "s1", s1_body, SCHEMA1_SIGNED)
    assert resp.status == 201, resp
    orphan = f"{prefix}a blob no manifest references".encode() * 50
    assert client.push_blob(other, orphan).status == 201
    return Scenario(
        kept_always=[(app, "keep", base), (app, None, signature), (app, "multi", index), (other, "v2", docker),
                     (other, "mounted", mounted)],
        untagged=[(app, old), (app, old_signature), (other, old_docker)],
        orphans=[(other, sha256(orphan))],
        schema1=(other, "s1", s1_body, s1_digest, s1_blobs),
    )  # fmt: skip


def assert_survivors(client: Client, scenario: Scenario, delete_untagged: bool, *, schema1: bool = True) -> None:
    """Every survivor pulls completely (tags and digests); what had to go is gone."""
    for repo, tag, image in scenario.kept_always:
        assert_pulls(client, repo, image, ref=tag)
        assert_pulls(client, repo, image)
    for repo, image in scenario.untagged:
        if delete_untagged:
            assert client.get_manifest(repo, image.digest).status == 404, (repo, image.digest)
        else:
            assert_pulls(client, repo, image)
    if schema1:
        repo, tag, _, digest, blobs = scenario.schema1
        resp = client.get_manifest(repo, tag)
        assert resp.status == 200 and resp.header("Docker-Content-Digest") == digest, resp
        for d, data in blobs.items():
            assert client.request("GET", f"/v2/{repo}/blobs/{d}").body == data
    for repo, digest in scenario.orphans:
        assert client.request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 404


def blob_dirs(root: Path) -> set[str]:
    """Digests of the blobs whose data is in a filesystem root."""
    return {f"sha256:{p.parent.name}" for p in (root / V2 / "blobs").glob("sha256/*/*/data")}


def gc(config: Path, *args: str, timeout: float = 180) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """``registry garbage-collect ARGS --json CONFIG``: its summary and the process."""
    proc = run_cli("garbage-collect", *args, "--json", str(config), timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


REFERENCE_COUNTS = re.compile(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion")


def reference_dry_run(binary: str, config: Path) -> tuple[int, int, int]:
    """distribution 2.8.2's own ``garbage-collect --dry-run``: (marked, blobs, manifests) it counts."""
    proc = subprocess.run([binary, "garbage-collect", "--dry-run", str(config)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    m = REFERENCE_COUNTS.search(proc.stdout)
    assert m, proc.stdout[-2000:]
    return int(m.group(1)), int(m.group(2)), int(m.group(3))
