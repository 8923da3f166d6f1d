"""skopeo (Debian package, a real client nobody here wrote) against our registry.

Images are generated in the test (real tar.gz layers from ``tarfile``) as an OCI layout or as a
``dir:`` layout (the transport that keeps a Docker schema 2 manifest as it is), copied into our
registry with ``--preserve-digests`` and copied back out, then compared byte for byte with digests.
Also ``skopeo inspect`` (raw and parsed), ``list-tags`` and ``delete``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fixtures_registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    Image,
    RunningRegistry,
    assert_pulls,
    make_image,
    make_index,
    sha256,
)

pytestmark = pytest.mark.usefixtures("skopeo_binary")


@pytest.fixture(scope="module")
def reg(our_registry: RunningRegistry) -> RunningRegistry:
    if our_registry.prefix:
        pytest.skip("docker:// references cannot address a registry under an http.prefix")
    return our_registry


@pytest.fixture(scope="module")
def skopeo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment that reads nothing from the user's containers config: empty auth, own tmp."""
    home = tmp_path_factory.mktemp("skopeo-home")
    auth = home / "auth.json"
    auth.write_text("{}")
    registries = home / "registries.conf"
    registries.write_text('unqualified-search-registries = []\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(auth), CONTAINERS_REGISTRIES_CONF=str(registries),
               TMPDIR=str(home), XDG_RUNTIME_DIR=str(home))
    return env


def skopeo(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = ["skopeo", "--insecure-policy", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def docker_ref(reg: RunningRegistry, repo: str, ref: str) -> str:
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"docker://{reg.hostport}/{repo}{sep}{ref}"


TLS_OFF = ("--src-tls-verify=false", "--dest-tls-verify=false")


# --------------------------------------------------------------------------- layouts


def write_oci_layout(path: Path, image: Image, tag: str) -> None:
    """An OCI image layout (image-spec) holding ``image`` (and its children) under ref name ``tag``."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    everything = {**image.all_blobs(), image.digest: image.manifest}
    for child in image.children:
        everything[child.digest] = child.manifest
    for digest, data in everything.items():
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]}
    (path / "index.json").write_text(json.dumps(index))


def read_oci_layout(path: Path, tag: str) -> tuple[str, bytes, dict[str, bytes]]:
    """(manifest digest, manifest bytes, every blob by digest) of ``tag`` in an OCI layout."""
    index = json.loads((path / "index.json").read_text())
    [desc] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    blobs = {f"sha256:{p.name}": p.read_bytes() for p in (path / "blobs" / "sha256").iterdir()}
    for digest, data in blobs.items():
        assert sha256(data) == digest, f"layout blob {digest} is corrupt"
    return desc["digest"], blobs[desc["digest"]], blobs


def write_dir_layout(path: Path, image: Image) -> None:
    """containers/image's ``dir:`` transport: manifest.json as is, blobs named by their hex digest."""
    path.mkdir(parents=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    (path / "manifest.json").write_bytes(image.manifest)
    for child in image.children:
        (path / f"{child.digest.split(':', 1)[1]}.manifest.json").write_bytes(child.manifest)
    for digest, data in image.all_blobs().items():
        (path / digest.split(":", 1)[1]).write_bytes(data)


def assert_same_blobs(expected: dict[str, bytes], actual: dict[str, bytes]) -> None:
    for digest, data in expected.items():
        assert digest in actual, f"blob {digest} missing after the round trip"
        assert actual[digest] == data, f"blob {digest} differs after the round trip"


# --------------------------------------------------------------------------- tests


def test_oci_image_round_trip_byte_for_byte(reg, skopeo_env, tmp_path):
    image = make_image("oci", label="skopeo-oci")
    write_oci_layout(tmp_path / "src", image, "v1")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", f"oci:{tmp_path / 'src'}:v1",
           docker_ref(reg, "skopeo/oci", "v1"))
    assert_pulls(reg.client, "skopeo/oci", image, ref="v1")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", docker_ref(reg, "skopeo/oci", "v1"),
           f"oci:{tmp_path / 'back'}:v1")
    digest, manifest, blobs = read_oci_layout(tmp_path / "back", "v1")
    assert digest == image.digest and manifest == image.manifest
    assert_same_blobs(image.blobs, blobs)


def test_docker_schema2_image_round_trip_byte_for_byte(reg, skopeo_env, tmp_path):
    image = make_image("docker", label="skopeo-docker")
    assert image.media_type == DOCKER_MANIFEST
    write_dir_layout(tmp_path / "src", image)
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", f"dir:{tmp_path / 'src'}",
           docker_ref(reg, "skopeo/docker", "v1"))
    assert_pulls(reg.client, "skopeo/docker", image, ref="v1")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", docker_ref(reg, "skopeo/docker", "v1"),
           f"dir:{tmp_path / 'back'}")
    back = tmp_path / "back"
    assert (back / "manifest.json").read_bytes() == image.manifest
    assert_same_blobs(image.blobs, {f"sha256:{p.name}": p.read_bytes() for p in back.iterdir()
                                    if len(p.name) == 64})


def test_oci_layout_converted_to_docker_schema2_on_push(reg, skopeo_env, tmp_path):
    """``--format v2s2``: skopeo rewrites the manifest as Docker schema 2; we store and serve it as sent."""
    image = make_image("oci", label="skopeo-v2s2")
    write_oci_layout(tmp_path / "src", image, "v1")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--format", "v2s2", f"oci:{tmp_path / 'src'}:v1",
           docker_ref(reg, "skopeo/v2s2", "v1"))
    raw = skopeo(skopeo_env, "inspect", "--tls-verify=false", "--raw", docker_ref(reg, "skopeo/v2s2", "v1")).stdout
    served = reg.client.get_manifest("skopeo/v2s2", "v1")
    assert served.status == 200 and served.body == raw.encode()
    assert served.header("Content-Type") == DOCKER_MANIFEST, served
    body = json.loads(served.body)
    assert body["mediaType"] == DOCKER_MANIFEST
    # the layers are the same bytes (gzip stays gzip); only the media types changed
    assert [layer["digest"] for layer in body["layers"]] == [
        d for d in image.blobs if d != json.loads(image.manifest)["config"]["digest"]]
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", docker_ref(reg, "skopeo/v2s2", "v1"),
           f"dir:{tmp_path / 'back'}")
    assert (tmp_path / "back" / "manifest.json").read_bytes() == served.body


def test_multi_arch_oci_index_round_trip(reg, skopeo_env, tmp_path):
    index = make_index("oci", label="skopeo-index")
    write_oci_layout(tmp_path / "src", index, "multi")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", f"oci:{tmp_path / 'src'}:multi",
           docker_ref(reg, "skopeo/index", "multi"))
    assert_pulls(reg.client, "skopeo/index", index, ref="multi")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", docker_ref(reg, "skopeo/index", "multi"),
           f"oci:{tmp_path / 'back'}:multi")
    digest, manifest, blobs = read_oci_layout(tmp_path / "back", "multi")
    assert digest == index.digest and manifest == index.manifest
    for child in index.children:
        assert blobs.get(child.digest) == child.manifest
    assert_same_blobs(index.all_blobs(), blobs)


def test_docker_manifest_list_round_trip(reg, skopeo_env, tmp_path):
    index = make_index("docker", label="skopeo-list")
    assert index.media_type == DOCKER_LIST
    write_dir_layout(tmp_path / "src", index)
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", f"dir:{tmp_path / 'src'}",
           docker_ref(reg, "skopeo/list", "multi"))
    assert_pulls(reg.client, "skopeo/list", index, ref="multi")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", docker_ref(reg, "skopeo/list", "multi"),
           f"dir:{tmp_path / 'back'}")
    back = tmp_path / "back"
    assert (back / "manifest.json").read_bytes() == index.manifest
    for child in index.children:
        assert (back / f"{child.digest.split(':', 1)[1]}.manifest.json").read_bytes() == child.manifest


def test_inspect_list_tags_and_delete(reg, skopeo_env, tmp_path):
    image = make_image("oci", label="skopeo-inspect")
    write_oci_layout(tmp_path / "src", image, "v1")
    for tag in ("v1", "v2", "latest"):
        skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", f"oci:{tmp_path / 'src'}:v1",
               docker_ref(reg, "skopeo/inspect", tag))
    info = json.loads(skopeo(skopeo_env, "inspect", "--tls-verify=false", docker_ref(reg, "skopeo/inspect", "v1")).stdout)
    body = json.loads(image.manifest)
    assert info["Digest"] == image.digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Layers"] == [layer["digest"] for layer in body["layers"]]
    assert sorted(info["RepoTags"]) == ["latest", "v1", "v2"]
    raw = skopeo(skopeo_env, "inspect", "--tls-verify=false", "--raw", docker_ref(reg, "skopeo/inspect", "v2")).stdout
    assert raw.encode() == image.manifest
    config = skopeo(skopeo_env, "inspect", "--tls-verify=false", "--config", "--raw",
                    docker_ref(reg, "skopeo/inspect", "latest")).stdout
    assert sha256(config.encode()) == body["config"]["digest"]
    tags = json.loads(skopeo(skopeo_env, "list-tags", "--tls-verify=false", f"docker://{reg.hostport}/skopeo/inspect").stdout)
    assert tags["Repository"].endswith("skopeo/inspect") and sorted(tags["Tags"]) == ["latest", "v1", "v2"]
    # skopeo delete resolves the tag and deletes the manifest by digest: every tag on it goes
    skopeo(skopeo_env, "delete", "--tls-verify=false", docker_ref(reg, "skopeo/inspect", "v2"))
    client: Client = reg.client
    for ref in ("v1", "v2", "latest", image.digest):
        assert client.get_manifest("skopeo/inspect", ref).status == 404
    gone = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--tls-verify=false",
                           docker_ref(reg, "skopeo/inspect", "v1")], capture_output=True, text=True, env=skopeo_env)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower(), gone.stderr


def test_skopeo_accept_headers_get_the_stored_type(reg, skopeo_env, tmp_path):
    """skopeo sends six Accept lines; every stored type must come back unchanged, including OCI index."""
    index = make_index("oci", label="skopeo-accept", arches=("amd64", "s390x"))
    write_oci_layout(tmp_path / "src", index, "x")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", f"oci:{tmp_path / 'src'}:x",
           docker_ref(reg, "skopeo/accept", "x"))
    raw = skopeo(skopeo_env, "inspect", "--tls-verify=false", "--raw", docker_ref(reg, "skopeo/accept", "x")).stdout
    assert raw.encode() == index.manifest
    assert json.loads(raw)["mediaType"] == OCI_INDEX
    child = skopeo(skopeo_env, "inspect", "--tls-verify=false", "--raw",
                   docker_ref(reg, "skopeo/accept", index.children[1].digest)).stdout
    assert child.encode() == index.children[1].manifest
    assert json.loads(child)["mediaType"] == OCI_MANIFEST


def test_large_layer_in_one_patch(reg, skopeo_env, tmp_path):
    """skopeo pushes each layer as one PATCH with the whole body: a 24 MiB incompressible layer round trip."""
    import gzip
    import io
    import random
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        data = random.Random(7).randbytes(24 * 1024 * 1024)
        info = tarfile.TarInfo("big.bin")
        info.size, info.mtime = len(data), 0
        tf.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(raw.getvalue())]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer), "size": len(layer)}],
    }).encode()
    image = Image(manifest, OCI_MANIFEST, {sha256(config): config, sha256(layer): layer})
    write_oci_layout(tmp_path / "src", image, "big")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", f"oci:{tmp_path / 'src'}:big",
           docker_ref(reg, "skopeo/big", "big"), timeout=300)
    head = reg.client.request("HEAD", f"/v2/skopeo/big/blobs/{sha256(layer)}")
    assert head.status == 200 and head.header("Content-Length") == str(len(layer)), head
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", docker_ref(reg, "skopeo/big", "big"),
           f"oci:{tmp_path / 'back'}:big", timeout=300)
    digest, back_manifest, blobs = read_oci_layout(tmp_path / "back", "big")
    assert digest == image.digest and back_manifest == manifest
    assert sha256(blobs[sha256(layer)]) == sha256(layer)


def test_registry_to_registry_copy_within_ours(reg, skopeo_env, tmp_path):
    """docker:// to docker:// inside one registry: skopeo offers cross-repository mounts; all bytes survive."""
    index = make_index("oci", label="skopeo-r2r")
    write_oci_layout(tmp_path / "src", index, "x")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", f"oci:{tmp_path / 'src'}:x",
           docker_ref(reg, "skopeo/r2r-src", "x"))
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", docker_ref(reg, "skopeo/r2r-src", "x"),
           docker_ref(reg, "skopeo/r2r-dst", "y"))
    assert_pulls(reg.client, "skopeo/r2r-dst", index, ref="y")


@pytest.mark.parametrize("direction", ["reference-to-ours", "ours-to-reference"])
def test_copy_between_reference_and_ours(reg, reference_registry, skopeo_env, tmp_path, direction):
    """skopeo copies a multi-arch Docker manifest list from one registry to the other, digests preserved."""
    index = make_index("docker", label=f"skopeo-{direction}")
    write_dir_layout(tmp_path / "src", index)
    src, dst = (reference_registry, reg) if direction == "reference-to-ours" else (reg, reference_registry)
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests", f"dir:{tmp_path / 'src'}",
           docker_ref(src, f"skopeo/xreg-src-{direction}", "v1"))
    skopeo(skopeo_env, "copy", *TLS_OFF, "--all", "--preserve-digests",
           docker_ref(src, f"skopeo/xreg-src-{direction}", "v1"), docker_ref(dst, f"skopeo/xreg-dst-{direction}", "v1"))
    assert_pulls(dst.client, f"skopeo/xreg-dst-{direction}", index, ref="v1")
    assert_pulls(src.client, f"skopeo/xreg-dst-{direction}", index, ref="v1")  # same storage root


def test_zstd_recompressed_push(reg, skopeo_env, tmp_path):
    """skopeo recompresses the layers as zstd on the way in (``+zstd`` media type): stored and served as sent."""
    image = make_image("oci", label="skopeo-zstd")
    write_oci_layout(tmp_path / "src", image, "v1")
    skopeo(skopeo_env, "copy", *TLS_OFF, "--dest-compress", "--dest-compress-format", "zstd",
           f"oci:{tmp_path / 'src'}:v1", docker_ref(reg, "skopeo/zstd", "v1"))
    served = reg.client.get_manifest("skopeo/zstd", "v1")
    assert served.status == 200, served
    body = json.loads(served.body)
    assert all(layer["mediaType"].endswith("+zstd") for layer in body["layers"]), body["layers"]
    skopeo(skopeo_env, "copy", *TLS_OFF, "--preserve-digests", docker_ref(reg, "skopeo/zstd", "v1"),
           f"oci:{tmp_path / 'back'}:v1")
    digest, manifest, blobs = read_oci_layout(tmp_path / "back", "v1")
    assert manifest == served.body and digest == sha256(served.body)
    for layer in body["layers"]:
        assert blobs[layer["digest"]][:4] == b"\x28\xb5\x2f\xfd", "not a zstd frame"
