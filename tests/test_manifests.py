"""registry.manifests: every manifest kind parses, every defect is a clear MANIFEST_INVALID, schema 1
signatures are really verified (keys generated here, and a signature made by the reference registry's
own libtrust), stored bytes are detected and digested the way the reference and Docker do."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from helpers import free_port, require_tool, wait_http
from registry import mediatypes as mt
from registry.errors import ErrorCode, RegistryError
from registry.manifests import (
    Descriptor,
    acceptable,
    detect_media_type,
    libtrust_key_id,
    manifest_digest,
    parse_manifest,
    parse_stored,
)

REFERENCE_BINARY = "/usr/bin/docker-registry"


# ------------------------------------------------------------------------------------------------
# building blocks


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def desc(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(content), "size": len(content), **extra}


CONFIG_BYTES = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER1, LAYER2 = b"layer one", b"layer two"
CONFIG = desc(mt.OCI_CONFIG, CONFIG_BYTES)
LAYERS = [desc(mt.OCI_LAYER_GZIP, LAYER1), desc(mt.OCI_LAYER_GZIP, LAYER2)]
EMPTY = {"mediaType": mt.OCI_EMPTY, "digest": mt.OCI_EMPTY_DIGEST, "size": 2}
SUBJECT = desc(mt.OCI_MANIFEST, b"some manifest that is not pushed yet")


def oci_manifest(**fields: Any) -> dict[str, Any]:
    out = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CONFIG, "layers": LAYERS}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def oci_index(**fields: Any) -> dict[str, Any]:
    child = desc(mt.OCI_MANIFEST, b"child", platform={"architecture": "amd64", "os": "linux"})
    out = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [child]}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def docker_manifest(**fields: Any) -> dict[str, Any]:
    out = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": desc(mt.DOCKER_CONFIG, CONFIG_BYTES),
        "layers": [desc(mt.DOCKER_LAYER, LAYER1)],
    }
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def docker_list(**fields: Any) -> dict[str, Any]:
    children = [
        desc(mt.DOCKER_MANIFEST, b"amd64", platform={"architecture": "amd64", "os": "linux"}),
        desc(mt.DOCKER_MANIFEST, b"arm64", platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    out = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": children}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()


def invalid(body: bytes, content_type: str | None, **kwargs: Any) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_manifest(body, content_type, **kwargs)
    return info.value


# ------------------------------------------------------------------------------------------------
# valid manifests of every kind

VALID = [
    # id, body, Content-Type, media type, required blob digests, child digests
    ("oci-manifest", oci_manifest(), mt.OCI_MANIFEST, mt.OCI_MANIFEST,
     [CONFIG["digest"], LAYERS[0]["digest"], LAYERS[1]["digest"]], []),
    ("oci-manifest-no-layers-field", oci_manifest(layers=None), mt.OCI_MANIFEST, mt.OCI_MANIFEST,
     [CONFIG["digest"]], []),
    ("oci-manifest-without-mediaType", oci_manifest(mediaType=None), mt.OCI_MANIFEST, mt.OCI_MANIFEST,
     [CONFIG["digest"], LAYERS[0]["digest"], LAYERS[1]["digest"]], []),
    ("oci-manifest-content-type-params", oci_manifest(), mt.OCI_MANIFEST + "; charset=utf-8",
     mt.OCI_MANIFEST, [CONFIG["digest"], LAYERS[0]["digest"], LAYERS[1]["digest"]], []),
    ("oci-manifest-no-content-type", oci_manifest(), None, mt.OCI_MANIFEST,
     [CONFIG["digest"], LAYERS[0]["digest"], LAYERS[1]["digest"]], []),
    ("oci-manifest-generic-content-type-no-mediaType", oci_manifest(mediaType=None), "application/json",
     mt.OCI_MANIFEST, [CONFIG["digest"], LAYERS[0]["digest"], LAYERS[1]["digest"]], []),
    ("oci-manifest-duplicate-layers", oci_manifest(layers=[LAYERS[0], LAYERS[0]]), mt.OCI_MANIFEST,
     mt.OCI_MANIFEST, [CONFIG["digest"], LAYERS[0]["digest"]], []),
    ("oci-manifest-sha512-layer",
     oci_manifest(layers=[{"mediaType": mt.OCI_LAYER, "digest": sha512(LAYER1), "size": len(LAYER1)}]),
     mt.OCI_MANIFEST, mt.OCI_MANIFEST, [CONFIG["digest"], sha512(LAYER1)], []),
    ("oci-manifest-nondistributable-with-urls",
     oci_manifest(layers=[LAYERS[0], desc(mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP, b"win",
                                          urls=["https://example.com/layer.tar.gz"])]),
     mt.OCI_MANIFEST, mt.OCI_MANIFEST, [CONFIG["digest"], LAYERS[0]["digest"]], []),
    ("oci-manifest-nondistributable-without-urls",
     oci_manifest(layers=[desc(mt.OCI_LAYER_NONDISTRIBUTABLE, b"win")]),
     mt.OCI_MANIFEST, mt.OCI_MANIFEST, [CONFIG["digest"], sha256(b"win")], []),
    ("oci-index", oci_index(), mt.OCI_INDEX, mt.OCI_INDEX, [], [sha256(b"child")]),
    ("oci-index-without-mediaType-by-shape", oci_index(mediaType=None), None, mt.OCI_INDEX,
     [], [sha256(b"child")]),
    ("oci-index-empty", oci_index(manifests=[]), mt.OCI_INDEX, mt.OCI_INDEX, [], []),
    ("docker-manifest", docker_manifest(), mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST,
     [sha256(CONFIG_BYTES), sha256(LAYER1)], []),
    ("docker-manifest-foreign-layer",
     docker_manifest(layers=[desc(mt.DOCKER_FOREIGN_LAYER, b"nano", urls=["https://mcr.microsoft.com/x"]),
                             desc(mt.DOCKER_LAYER, LAYER1)]),
     mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST, [sha256(CONFIG_BYTES), sha256(LAYER1)], []),
    ("docker-list", docker_list(), mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST_LIST, [],
     [sha256(b"amd64"), sha256(b"arm64")]),
    ("docker-list-generic-content-type", docker_list(), "application/octet-stream", mt.DOCKER_MANIFEST_LIST,
     [], [sha256(b"amd64"), sha256(b"arm64")]),
    ("artifact-with-artifactType",
     oci_manifest(artifactType="application/vnd.example.sbom+json", config=desc("application/vnd.example.config", b"c"),
                  layers=[desc("application/spdx+json", b"sbom", annotations={"org.opencontainers.image.title": "sbom.json"})]),
     mt.OCI_MANIFEST, mt.OCI_MANIFEST, [sha256(b"c"), sha256(b"sbom")], []),
    ("artifact-empty-config", oci_manifest(artifactType="application/vnd.example.sig", config=EMPTY, layers=[EMPTY]),
     mt.OCI_MANIFEST, mt.OCI_MANIFEST, [mt.OCI_EMPTY_DIGEST], []),
    ("artifact-empty-config-with-data",
     oci_manifest(artifactType="application/vnd.example.sig", config={**EMPTY, "data": "e30="}, layers=[]),
     mt.OCI_MANIFEST, mt.OCI_MANIFEST, [mt.OCI_EMPTY_DIGEST], []),
    ("manifest-with-subject", oci_manifest(subject=SUBJECT), mt.OCI_MANIFEST, mt.OCI_MANIFEST,
     [CONFIG["digest"], LAYERS[0]["digest"], LAYERS[1]["digest"]], []),
    ("index-with-subject-and-artifactType",
     oci_index(subject=SUBJECT, artifactType="application/vnd.example.bundle"), mt.OCI_INDEX, mt.OCI_INDEX,
     [], [sha256(b"child")]),
    ("unknown-fields-ignored", oci_manifest(**{"x-extension": {"a": [1, 2]}}), mt.OCI_MANIFEST, mt.OCI_MANIFEST,
     [CONFIG["digest"], LAYERS[0]["digest"], LAYERS[1]["digest"]], []),
]


@pytest.mark.parametrize("name,obj,content_type,media_type,blobs,children", VALID, ids=[v[0] for v in VALID])
def test_valid_manifests_parse(name, obj, content_type, media_type, blobs, children) -> None:
    body = dumps(obj)
    manifest = parse_manifest(body, content_type)
    assert manifest.media_type == media_type
    assert manifest.body == body  # bytes kept as pushed
    assert manifest.digest == sha256(body)
    assert manifest.size == len(body)
    assert [d.digest for d in manifest.required_blobs()] == blobs
    assert [d.digest for d in manifest.required_manifests()] == children
    assert manifest.schema_version == 2
    # what the GET path detects from the stored bytes is what the PUT path decided
    assert detect_media_type(body) == media_type
    assert manifest_digest(body) == manifest.digest
    stored = parse_stored(body)
    assert (stored.media_type, stored.digest) == (media_type, manifest.digest)
    assert [d.digest for d in stored.required_blobs()] == blobs


def test_parsed_fields() -> None:
    obj = oci_manifest(subject=SUBJECT, artifactType="application/vnd.example.sig",
                       annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    m = parse_manifest(dumps(obj), mt.OCI_MANIFEST)
    assert m.subject == Descriptor(SUBJECT["mediaType"], SUBJECT["digest"], SUBJECT["size"])
    assert m.artifact_type == "application/vnd.example.sig"
    assert m.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert m.config is not None and m.config.to_dict() == CONFIG
    assert [layer.to_dict() for layer in m.layers] == LAYERS
    index = parse_manifest(dumps(docker_list()), mt.DOCKER_MANIFEST_LIST)
    assert index.is_index and index.children[1].platform == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert index.children[1].to_dict() == docker_list()["manifests"][1]


# ------------------------------------------------------------------------------------------------
# invalid manifests: each one MANIFEST_INVALID with a message that names the problem

BAD_DIGESTS = {
    "md5": "md5:" + "0" * 32,
    "upper-hex": "sha256:" + "A" * 64,
    "short": "sha256:" + "a" * 63,
    "no-algorithm": "a" * 64,
    "sha512-length-of-sha256": "sha512:" + "a" * 64,
}

INVALID: list[tuple[str, bytes, str | None, str]] = [
    ("not-json", b"{", mt.OCI_MANIFEST, "not valid JSON"),
    ("empty-body", b"", mt.OCI_MANIFEST, "not valid JSON"),
    ("json-array", b"[]", mt.OCI_MANIFEST, "must be a JSON object"),
    ("json-string", b'"manifest"', mt.OCI_MANIFEST, "must be a JSON object"),
    ("json-nan", b'{"schemaVersion": NaN}', mt.OCI_MANIFEST, "not valid JSON"),
    ("utf8-bom", b"\xef\xbb\xbf" + dumps(oci_manifest()), mt.OCI_MANIFEST, "not valid JSON"),
    ("not-utf8", b'{"schemaVersion": 2, "x": "\xff"}', mt.OCI_MANIFEST, "not valid JSON"),
    ("nested-too-deep", b"[" * 100_000 + b"]" * 100_000, mt.OCI_MANIFEST, "not valid JSON"),
    ("trailing-garbage", dumps(oci_manifest()) + b"}", mt.OCI_MANIFEST, "not valid JSON"),
    ("no-schemaVersion", dumps(oci_manifest(schemaVersion=None)), mt.OCI_MANIFEST, "no schemaVersion"),
    ("schemaVersion-3", dumps(oci_manifest(schemaVersion=3)), mt.OCI_MANIFEST, "schemaVersion"),
    ("schemaVersion-string", dumps(oci_manifest(schemaVersion="2")), mt.OCI_MANIFEST, "schemaVersion"),
    ("schemaVersion-float", dumps(oci_manifest(schemaVersion=2.0)), mt.OCI_MANIFEST, "schemaVersion"),
    ("schemaVersion-bool", dumps(oci_manifest(schemaVersion=True)), mt.OCI_MANIFEST, "schemaVersion"),
    ("schemaVersion-1-for-oci", dumps(oci_manifest(schemaVersion=1)), mt.OCI_MANIFEST, "schemaVersion 1"),
    ("mediaType-not-string", dumps(oci_manifest(mediaType=7)), mt.OCI_MANIFEST, "mediaType must be"),
    ("content-type-vs-body-index", dumps(oci_index()), mt.OCI_MANIFEST, "does not match the manifest's mediaType"),
    ("content-type-docker-vs-body-oci", dumps(oci_manifest()), mt.DOCKER_MANIFEST,
     "does not match the manifest's mediaType"),
    ("unknown-content-type", dumps(oci_manifest(mediaType=None)), "application/vnd.example+json",
     "unsupported manifest Content-Type"),
    ("layer-type-as-content-type", dumps(oci_manifest(mediaType=None)), mt.OCI_LAYER_GZIP,
     "unsupported manifest Content-Type"),
    ("unknown-body-mediaType", dumps(oci_manifest(mediaType="application/vnd.oci.artifact.manifest.v1+json")),
     None, "unsupported manifest mediaType"),
    ("docker-without-mediaType", dumps(docker_manifest(mediaType=None)), mt.DOCKER_MANIFEST, "must carry mediaType"),
    ("docker-list-without-mediaType", dumps(docker_list(mediaType=None)), mt.DOCKER_MANIFEST_LIST,
     "must carry mediaType"),
    ("no-config", dumps(oci_manifest(config=None)), mt.OCI_MANIFEST, "no config"),
    ("config-not-object", dumps(oci_manifest(config="sha256:abc")), mt.OCI_MANIFEST, "config must be a descriptor"),
    ("config-no-mediaType", dumps(oci_manifest(config={"digest": CONFIG["digest"], "size": 1})), mt.OCI_MANIFEST,
     "config.mediaType"),
    ("config-empty-mediaType", dumps(oci_manifest(config={**CONFIG, "mediaType": ""})), mt.OCI_MANIFEST,
     "config.mediaType"),
    ("config-no-digest", dumps(oci_manifest(config={"mediaType": mt.OCI_CONFIG, "size": 1})), mt.OCI_MANIFEST,
     "config.digest"),
    *[
        (f"config-digest-{k}", dumps(oci_manifest(config={**CONFIG, "digest": v})), mt.OCI_MANIFEST, "config.digest")
        for k, v in BAD_DIGESTS.items()
    ],
    ("config-no-size", dumps(oci_manifest(config={"mediaType": mt.OCI_CONFIG, "digest": CONFIG["digest"]})),
     mt.OCI_MANIFEST, "config.size"),
    ("size-negative", dumps(oci_manifest(config={**CONFIG, "size": -1})), mt.OCI_MANIFEST, "config.size"),
    ("size-string", dumps(oci_manifest(config={**CONFIG, "size": "10"})), mt.OCI_MANIFEST, "config.size"),
    ("size-float", dumps(oci_manifest(config={**CONFIG, "size": 1.5})), mt.OCI_MANIFEST, "config.size"),
    ("size-bool", dumps(oci_manifest(config={**CONFIG, "size": True})), mt.OCI_MANIFEST, "config.size"),
    ("size-over-int64", dumps(oci_manifest(config={**CONFIG, "size": 2**63})), mt.OCI_MANIFEST, "config.size"),
    ("layers-not-array", dumps(oci_manifest(layers={"0": LAYERS[0]})), mt.OCI_MANIFEST, "layers must be an array"),
    ("layer-not-object", dumps(oci_manifest(layers=[LAYERS[0], 42])), mt.OCI_MANIFEST, "layers[1]"),
    ("layer-bad-digest", dumps(oci_manifest(layers=[{**LAYERS[0], "digest": "sha256:xyz"}])), mt.OCI_MANIFEST,
     "layers[0].digest"),
    ("layer-annotation-not-string", dumps(oci_manifest(layers=[{**LAYERS[0], "annotations": {"a": 1}}])),
     mt.OCI_MANIFEST, "layers[0].annotations"),
    ("annotations-not-object", dumps(oci_manifest(annotations=["a"])), mt.OCI_MANIFEST, "annotations must be"),
    ("manifest-with-manifests-field", dumps(oci_manifest(manifests=[])), mt.OCI_MANIFEST,
     "must not have a manifests field"),
    ("index-with-layers-field", dumps(oci_index(layers=[])), mt.OCI_INDEX, "must not have a layers field"),
    ("index-with-config-field", dumps(oci_index(config=CONFIG)), mt.OCI_INDEX, "must not have a config field"),
    ("index-without-manifests", dumps(oci_index(manifests=None)), mt.OCI_INDEX, "no manifests"),
    ("index-child-bad-digest", dumps(oci_index(manifests=[{**SUBJECT, "digest": "sha256:"}])), mt.OCI_INDEX,
     "manifests[0].digest"),
    ("index-child-platform-not-object", dumps(oci_index(manifests=[{**SUBJECT, "platform": "linux/amd64"}])),
     mt.OCI_INDEX, "manifests[0].platform"),
    ("index-child-platform-os-not-string",
     dumps(oci_index(manifests=[{**SUBJECT, "platform": {"os": 1, "architecture": "amd64"}}])),
     mt.OCI_INDEX, "manifests[0].platform.os"),
    ("subject-not-object", dumps(oci_manifest(subject=SUBJECT["digest"])), mt.OCI_MANIFEST, "subject must be"),
    ("subject-bad-digest", dumps(oci_manifest(subject={**SUBJECT, "digest": "sha256:1"})), mt.OCI_MANIFEST,
     "subject.digest"),
    ("artifactType-not-string", dumps(oci_manifest(artifactType=["a/b"])), mt.OCI_MANIFEST, "artifactType"),
    ("urls-not-array", dumps(oci_manifest(layers=[{**LAYERS[0], "urls": "https://x"}])), mt.OCI_MANIFEST,
     "layers[0].urls"),
    ("urls-ftp", dumps(oci_manifest(layers=[{**LAYERS[0], "urls": ["ftp://example.com/l"]}])), mt.OCI_MANIFEST,
     "layers[0].urls[0]"),
    ("urls-fragment", dumps(oci_manifest(layers=[{**LAYERS[0], "urls": ["https://example.com/l#x"]}])),
     mt.OCI_MANIFEST, "layers[0].urls[0]"),
    ("foreign-layer-without-urls", dumps(docker_manifest(layers=[desc(mt.DOCKER_FOREIGN_LAYER, b"f")])),
     mt.DOCKER_MANIFEST, "foreign layer without urls"),
    ("data-does-not-match", dumps(oci_manifest(config={**EMPTY, "data": base64.b64encode(b"[]").decode()})),
     mt.OCI_MANIFEST, "config.data does not match"),
    ("data-not-base64", dumps(oci_manifest(config={**EMPTY, "data": "!!"})), mt.OCI_MANIFEST,
     "config.data is not valid base64"),
    ("schema1-refused-by-default", b'{"schemaVersion": 1, "name": "a", "fsLayers": [], "history": []}',
     mt.DOCKER_SCHEMA1, "compatibility.schema1.enabled"),
    ("schema1-signed-refused-by-default", b'{"schemaVersion": 1, "name": "a", "signatures": []}',
     mt.DOCKER_SCHEMA1_SIGNED, "compatibility.schema1.enabled"),
    ("schema1-by-shape-refused", b'{"schemaVersion": 1, "name": "a"}', None, "compatibility.schema1.enabled"),
    ("schema1-as-oci-content-type", b'{"schemaVersion": 1, "name": "a"}', mt.OCI_MANIFEST, "schemaVersion 1"),
    ("schema2-as-schema1-content-type", dumps(oci_manifest(mediaType=None)), mt.DOCKER_SCHEMA1,
     "schemaVersion 2"),
]


@pytest.mark.parametrize("name,body,content_type,message", INVALID, ids=[v[0] for v in INVALID])
def test_invalid_manifests_are_refused(name, body, content_type, message) -> None:
    err = invalid(body, content_type)
    assert err.code is ErrorCode.MANIFEST_INVALID
    assert err.status == 400
    assert message in err.message, err.message
    assert err.body()["errors"][0]["code"] == "MANIFEST_INVALID"
    # the GET-side helpers never raise, whatever the bytes
    detect_media_type(body)
    manifest_digest(body)
    parse_stored(body)


def test_invalid_table_is_large() -> None:
    assert len(INVALID) >= 30


def test_put_by_digest_must_match_the_body() -> None:
    body = dumps(oci_manifest())
    assert parse_manifest(body, mt.OCI_MANIFEST, expected_digest=sha256(body)).digest == sha256(body)
    m = parse_manifest(body, mt.OCI_MANIFEST, expected_digest=sha512(body))
    assert m.digest == sha512(body)  # identified by the algorithm the client chose
    err = invalid(body, mt.OCI_MANIFEST, expected_digest=sha256(body + b" "))
    assert err.code is ErrorCode.DIGEST_INVALID
    assert err.detail == {"expected": sha256(body + b" "), "computed": sha256(body)}
    assert invalid(body, mt.OCI_MANIFEST, expected_digest="sha256:nope").code is ErrorCode.DIGEST_INVALID


# ------------------------------------------------------------------------------------------------
# referrers


def test_referrer_descriptor_uses_artifact_type_and_annotations() -> None:
    annotations = {"org.opencontainers.image.created": "2024-05-01T00:00:00Z", "com.example.key": "v"}
    body = dumps(oci_manifest(artifactType="application/vnd.example.sbom", config=EMPTY, layers=[EMPTY],
                              subject=SUBJECT, annotations=annotations))
    m = parse_manifest(body, mt.OCI_MANIFEST)
    assert m.referrer_descriptor().to_dict() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": sha256(body),
        "size": len(body),
        "artifactType": "application/vnd.example.sbom",
        "annotations": annotations,
    }


def test_referrer_descriptor_falls_back_to_config_media_type() -> None:
    body = dumps(oci_manifest(config=desc("application/vnd.example.signature.config+json", b"{}"),
                              subject=SUBJECT))
    ref = parse_manifest(body, None).referrer_descriptor()
    assert ref.artifact_type == "application/vnd.example.signature.config+json"
    assert "annotations" not in ref.to_dict()


def test_referrer_descriptor_of_an_index_without_artifact_type() -> None:
    body = dumps(oci_index(subject=SUBJECT))
    assert parse_manifest(body, mt.OCI_INDEX).referrer_descriptor().to_dict() == {
        "mediaType": mt.OCI_INDEX, "digest": sha256(body), "size": len(body)}


def test_parse_stored_is_lenient_and_keeps_what_validates() -> None:
    obj = oci_manifest(subject=SUBJECT, artifactType="application/x.y",
                       layers=[LAYERS[0], {"mediaType": "x/y", "digest": "bogus", "size": 1}])
    body = dumps(obj)
    stored = parse_stored(body)
    assert stored.subject is not None and stored.subject.digest == SUBJECT["digest"]
    assert [d.digest for d in stored.layers] == [LAYERS[0]["digest"]]
    assert stored.referrer_descriptor().artifact_type == "application/x.y"
    assert parse_stored(body, digest="sha256:" + "1" * 64).digest == "sha256:" + "1" * 64
    for junk in (b"", b"\x00\x01", b"[1]", b'{"schemaVersion": "x", "subject": 5, "layers": 3}'):
        assert parse_stored(junk).subject is None


# ------------------------------------------------------------------------------------------------
# GET side: media type detection and negotiation

DETECT = [
    ("body-mediaType-wins", dumps(docker_manifest()), mt.DOCKER_MANIFEST),
    ("docker-list", dumps(docker_list()), mt.DOCKER_MANIFEST_LIST),
    ("oci-index-with-mediaType", dumps(oci_index()), mt.OCI_INDEX),
    ("oci-index-by-shape", dumps(oci_index(mediaType=None)), mt.OCI_INDEX),
    ("oci-manifest-by-shape", dumps(oci_manifest(mediaType=None)), mt.OCI_MANIFEST),
    ("schema1-signed", b'{"schemaVersion": 1, "name": "a", "signatures": []}', mt.DOCKER_SCHEMA1_SIGNED),
    ("schema1-unsigned", b'{"schemaVersion": 1, "name": "a", "fsLayers": []}', mt.DOCKER_SCHEMA1),
    ("unknown-mediaType-kept", b'{"schemaVersion": 2, "mediaType": "application/vnd.x+json"}',
     "application/vnd.x+json"),
    ("empty-object", b"{}", mt.OCI_MANIFEST),
    ("not-json", b"\x89PNG", "application/octet-stream"),
    ("json-array", b"[]", "application/octet-stream"),
]


@pytest.mark.parametrize("name,body,expected", DETECT, ids=[d[0] for d in DETECT])
def test_detect_media_type(name, body, expected) -> None:
    assert detect_media_type(body) == expected


ACCEPT = [
    # media type, Accept header values, acceptable
    (mt.OCI_MANIFEST, [], True),
    (mt.OCI_MANIFEST, ["*/*"], True),
    (mt.OCI_MANIFEST, ["application/*"], True),
    (mt.OCI_MANIFEST, [mt.OCI_MANIFEST], True),
    (mt.OCI_MANIFEST, [f"{mt.DOCKER_MANIFEST}, {mt.OCI_MANIFEST};q=0.5"], True),
    (mt.OCI_MANIFEST, [mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST], False),
    (mt.OCI_MANIFEST, [f"{mt.OCI_MANIFEST};q=0", mt.DOCKER_MANIFEST], False),
    (mt.OCI_INDEX, [mt.OCI_MANIFEST], False),
    (mt.OCI_INDEX, [mt.OCI_MANIFEST, mt.OCI_INDEX.upper()], True),
    (mt.DOCKER_MANIFEST, [mt.OCI_MANIFEST], True),  # never rewritten, always served
    (mt.DOCKER_MANIFEST_LIST, [mt.DOCKER_MANIFEST], True),
    (mt.DOCKER_SCHEMA1, [mt.DOCKER_SCHEMA1_SIGNED], True),
    # skopeo's six separate Accept lines
    (mt.OCI_INDEX, [mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST,
                    mt.DOCKER_SCHEMA1_SIGNED, mt.DOCKER_SCHEMA1], True),
]


@pytest.mark.parametrize("media_type,accept,expected", ACCEPT)
def test_acceptable(media_type, accept, expected) -> None:
    assert acceptable(media_type, accept) is expected


def test_media_type_helpers() -> None:
    assert mt.is_manifest_media_type(mt.OCI_MANIFEST + "; charset=utf-8")
    assert mt.is_manifest_media_type(mt.DOCKER_SCHEMA1_SIGNED)
    assert not mt.is_manifest_media_type(mt.OCI_LAYER_GZIP)
    assert not mt.is_manifest_media_type(None)
    assert sha256(mt.OCI_EMPTY_DATA) == mt.OCI_EMPTY_DIGEST and len(mt.OCI_EMPTY_DATA) == mt.OCI_EMPTY_SIZE


# ------------------------------------------------------------------------------------------------
# Docker schema 1: libtrust JWS, written here independently of the module under test


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_of(key: Any) -> dict[str, str]:
    """The public JWK as libtrust writes it (kid = SHA-256 of the DER public key, base32 groups)."""
    pub = key.public_key()
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    kid = ":".join(b32[i:i + 4] for i in range(0, 48, 4))
    if isinstance(pub, ec.EllipticCurvePublicKey):
        n = (pub.curve.key_size + 7) // 8
        nums = pub.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
        return {"crv": crv, "kid": kid, "kty": "EC", "x": b64url(nums.x.to_bytes(n, "big")),
                "y": b64url(nums.y.to_bytes(n, "big"))}
    nums = pub.public_numbers()
    return {"e": b64url(nums.e.to_bytes(3, "big")), "kid": kid, "kty": "RSA",
            "n": b64url(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big"))}


def jws_sign(key: Any, signing_input: bytes) -> tuple[str, bytes]:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256", key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    size = (key.curve.key_size + 7) // 8
    alg, hash_alg = {256: ("ES256", hashes.SHA256()), 384: ("ES384", hashes.SHA384()),
                     521: ("ES512", hashes.SHA512())}[key.curve.key_size]
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hash_alg)))
    return alg, r.to_bytes(size, "big") + s.to_bytes(size, "big")


def schema1_payload(tag: str = "v1") -> bytes:
    layers = [sha256(LAYER1), sha256(LAYER2), sha256(LAYER1)]
    obj = {
        "schemaVersion": 1,
        "name": "library/app",
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": d} for d in layers],
        "history": [{"v1Compatibility": json.dumps({"id": str(i) * 64})} for i in range(3)],
    }
    return json.dumps(obj, indent=3).encode()


def pretty_sign(payload: bytes, keys: list[Any], *, chain: list[x509.Certificate] | None = None) -> bytes:
    """libtrust's PrettySignature: the payload without its closing brace, then the signatures."""
    length = len(payload) - 2  # cut "\n}"
    protected = b64url(json.dumps({"formatLength": length, "formatTail": b64url(payload[length:]),
                                   "time": "2024-01-01T00:00:00Z"}, separators=(",", ":")).encode())
    signatures = []
    for key in keys:
        alg, sig = jws_sign(key, f"{protected}.{b64url(payload)}".encode())
        header: dict[str, Any] = {"alg": alg}
        if chain:
            header["x5c"] = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
        else:
            header["jwk"] = jwk_of(key)
        signatures.append({"header": header, "signature": b64url(sig), "protected": protected})
    block = json.dumps(signatures, indent=3).replace("\n", "\n   ")
    return payload[:length] + b',\n   "signatures": ' + block.encode() + b"\n}"


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def parse_s1(body: bytes, content_type: str | None = mt.DOCKER_SCHEMA1_SIGNED, **kw: Any):
    return parse_manifest(body, content_type, schema1_enabled=True, **kw)


def test_schema1_signed_manifest_verifies(ec_key) -> None:
    payload = schema1_payload()
    body = pretty_sign(payload, [ec_key])
    m = parse_s1(body)
    assert m.media_type == mt.DOCKER_SCHEMA1_SIGNED and m.schema_version == 1
    assert m.body == body and m.canonical == payload
    assert m.digest == sha256(payload) != sha256(body)  # Docker's digest: the canonical payload
    assert manifest_digest(body) == m.digest == manifest_digest(body, mt.DOCKER_SCHEMA1_SIGNED)
    assert detect_media_type(body) == mt.DOCKER_SCHEMA1_SIGNED
    assert parse_stored(body).digest == m.digest
    assert [d.digest for d in m.required_blobs()] == [sha256(LAYER1), sha256(LAYER2)]
    assert m.required_manifests() == [] and m.subject is None
    # the same body with a generic or the unsigned Content-Type: the body decides
    assert parse_s1(body, None).media_type == mt.DOCKER_SCHEMA1_SIGNED
    assert parse_s1(body, mt.DOCKER_SCHEMA1).media_type == mt.DOCKER_SCHEMA1_SIGNED
    assert parse_s1(body, expected_digest=sha256(payload)).digest == sha256(payload)
    assert invalid(body, mt.DOCKER_SCHEMA1_SIGNED, schema1_enabled=True,
                   expected_digest=sha256(body)).code is ErrorCode.DIGEST_INVALID


@pytest.mark.parametrize("make_key", [
    lambda: ec.generate_private_key(ec.SECP384R1()),
    lambda: ec.generate_private_key(ec.SECP521R1()),
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
], ids=["P-384", "P-521", "RSA-2048"])
def test_schema1_other_key_types(make_key, ec_key) -> None:
    payload = schema1_payload()
    body = pretty_sign(payload, [make_key(), ec_key])  # two signatures, both checked
    assert parse_s1(body).digest == sha256(payload)


def test_schema1_x5c_certificate_signature(ec_key) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ec_key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(ec_key, hashes.SHA256()))
    body = pretty_sign(schema1_payload(), [ec_key], chain=[cert])
    assert parse_s1(body).media_type == mt.DOCKER_SCHEMA1_SIGNED
    other = ec.generate_private_key(ec.SECP256R1())
    forged = pretty_sign(schema1_payload(), [other], chain=[cert])  # signed by a key not in the cert
    assert "does not verify" in invalid(forged, mt.DOCKER_SCHEMA1_SIGNED, schema1_enabled=True).message


def _tamper(body: bytes, fn) -> bytes:
    obj = json.loads(body)
    fn(obj)
    return json.dumps(obj, indent=3).encode()


def test_schema1_tampering_is_refused(ec_key) -> None:
    payload = schema1_payload()
    body = pretty_sign(payload, [ec_key])
    sigs = json.loads(body)["signatures"]
    other_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def flip_signature(obj):
        raw = bytearray(base64.urlsafe_b64decode(obj["signatures"][0]["signature"] + "=="))
        raw[5] ^= 1
        obj["signatures"][0]["signature"] = b64url(bytes(raw))

    cases = {
        # the payload changed after signing (tag v1 -> v2, same length)
        "payload-edited": (body.replace(b'"tag": "v1"', b'"tag": "v2"'), "does not verify"),
        "signature-bit-flipped": (_tamper(body, flip_signature), "does not verify"),
        "other-key-in-header": (
            _tamper(body, lambda o: o["signatures"][0]["header"].update(jwk=jwk_of(other_key))), "does not verify"),
        "kid-mismatch": (
            _tamper(body, lambda o: o["signatures"][0]["header"]["jwk"].update(kid=jwk_of(other_key)["kid"])),
            "kid does not match"),
        "alg-not-for-curve": (
            _tamper(body, lambda o: o["signatures"][0]["header"].update(alg="ES384")), "needs alg ES256"),
        "rsa-key-with-es256": (
            _tamper(body, lambda o: o["signatures"][0]["header"].update(jwk=jwk_of(rsa_key))), "cannot verify alg"),
        "no-signatures": (_tamper(body, lambda o: o.update(signatures=[])), "no signatures"),
        "too-many-signatures": (_tamper(body, lambda o: o.update(signatures=sigs * 17)), "more than 16"),
        "no-public-key": (_tamper(body, lambda o: o["signatures"][0]["header"].pop("jwk")), "neither jwk nor x5c"),
        "protected-not-base64": (
            _tamper(body, lambda o: o["signatures"][0].update(protected="***")), "not valid base64url"),
        "protected-no-formatLength": (
            _tamper(body, lambda o: o["signatures"][0].update(protected=b64url(b'{"formatTail":"Cn0"}'))),
            "formatLength"),
        "conflicting-formats": (
            _tamper(body, lambda o: o["signatures"].append(
                {**sigs[0], "protected": b64url(b'{"formatLength":10,"formatTail":"Cn0"}')})),
            "conflicting formatLength"),
        "formatLength-too-long": (
            _tamper(body, lambda o: o["signatures"][0].update(
                protected=b64url(b'{"formatLength":999999,"formatTail":"Cn0"}'))), "exceeds"),
        "signature-not-string": (
            _tamper(body, lambda o: o["signatures"][0].update(signature=12)), "signature must be"),
        "signature-wrong-length": (
            _tamper(body, lambda o: o["signatures"][0].update(signature=b64url(b"\x01" * 10))), "octets"),
        "jwk-bad-curve": (
            _tamper(body, lambda o: o["signatures"][0]["header"]["jwk"].update(crv="P-192")), "crv"),
        "jwk-point-off-curve": (
            _tamper(body, lambda o: o["signatures"][0]["header"]["jwk"].update(x=b64url(b"\x01" * 32))),
            "not a valid public key"),
    }
    for case, (bad, message) in cases.items():
        err = invalid(bad, mt.DOCKER_SCHEMA1_SIGNED, schema1_enabled=True)
        assert err.code is ErrorCode.MANIFEST_INVALID, case
        assert message in err.message, (case, err.message)


def test_schema1_body_must_match_signed_payload(ec_key) -> None:
    payload = schema1_payload()
    body = pretty_sign(payload, [ec_key])
    # an extra field after the signatures is outside the signed payload
    smuggled = body[:-2] + b',\n   "tag": "evil"\n}'
    assert "does not match" in invalid(smuggled, mt.DOCKER_SCHEMA1_SIGNED, schema1_enabled=True).message


def test_schema1_unsigned_and_structure() -> None:
    payload = schema1_payload()
    m = parse_s1(payload, mt.DOCKER_SCHEMA1)
    assert m.media_type == mt.DOCKER_SCHEMA1 and m.digest == sha256(payload) and m.canonical is None
    assert parse_s1(payload, "application/json").media_type == mt.DOCKER_SCHEMA1
    assert [d.digest for d in m.required_blobs()] == [sha256(LAYER1), sha256(LAYER2)]
    assert detect_media_type(payload) == mt.DOCKER_SCHEMA1 and manifest_digest(payload) == m.digest
    base = json.loads(payload)
    bad = {
        "no-name": ({"name": None}, "needs a name"),
        "no-fsLayers": ({"fsLayers": [], "history": []}, "no fsLayers"),
        "cardinality": ({"history": base["history"][:1]}, "cardinality"),
        "bad-blobSum": ({"fsLayers": [{"blobSum": "sha256:x"}] * 3}, "fsLayers[0].blobSum"),
        "history-not-string": ({"history": [{"v1Compatibility": {}}] * 3}, "history[0].v1Compatibility"),
        "tag-not-string": ({"tag": 5}, "tag must be a string"),
    }
    for case, (change, message) in bad.items():
        obj = copy.deepcopy(base)
        obj.update(change)
        obj = {k: v for k, v in obj.items() if v is not None}
        err = invalid(json.dumps(obj).encode(), mt.DOCKER_SCHEMA1, schema1_enabled=True)
        assert message in err.message, (case, err.message)


def test_libtrust_key_id_format(ec_key) -> None:
    kid = libtrust_key_id(ec_key.public_key())
    assert kid == jwk_of(ec_key)["kid"]
    assert len(kid.split(":")) == 12 and all(len(g) == 4 for g in kid.split(":"))


# ------------------------------------------------------------------------------------------------
# interop with the reference registry (distribution 2.8.2): it stores the schema 1 canonical payload
# and signs it with its own libtrust key on every GET


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / "docker/registry/v2" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def reference_schema1(tmp_path_factory) -> dict[str, Any]:
    """GET a schema 1 manifest, stored as the reference stores it, from a real distribution 2.8.2."""
    require_tool(REFERENCE_BINARY, hint="`make apt-deps` installs docker-registry")
    import urllib.request

    work = tmp_path_factory.mktemp("ref-schema1")
    root = work / "root"
    payload = schema1_payload()
    hex_ = hashlib.sha256(payload).hexdigest()
    _write(root, f"blobs/sha256/{hex_[:2]}/{hex_}/data", payload)
    _write(root, f"repositories/library/app/_manifests/revisions/sha256/{hex_}/link", f"sha256:{hex_}".encode())
    _write(root, "repositories/library/app/_manifests/tags/v1/current/link", f"sha256:{hex_}".encode())
    port = free_port()
    config = work / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                      f"  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(work / "log", "wb") as log:
        proc = subprocess.Popen([REFERENCE_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/library/app/manifests/v1",
                                     headers={"Accept": mt.DOCKER_SCHEMA1_SIGNED})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return {"payload": payload, "body": resp.read(), "content_type": resp.headers["Content-Type"],
                    "digest": resp.headers["Docker-Content-Digest"]}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_reference_signed_schema1_verifies(reference_schema1) -> None:
    body, payload = reference_schema1["body"], reference_schema1["payload"]
    assert reference_schema1["content_type"] == mt.DOCKER_SCHEMA1_SIGNED
    assert detect_media_type(body) == mt.DOCKER_SCHEMA1_SIGNED
    m = parse_s1(body, reference_schema1["content_type"])  # Go libtrust's signature and kid verify here
    assert m.digest == reference_schema1["digest"] == sha256(payload)
    assert m.canonical == payload
    assert manifest_digest(body) == reference_schema1["digest"]
    # what the reference stores (the payload) detects as unsigned schema 1 with the same digest
    assert detect_media_type(payload) == mt.DOCKER_SCHEMA1
    assert manifest_digest(payload) == reference_schema1["digest"]
    edited = body.replace(b'"tag": "v1"', b'"tag": "v9"')
    assert "does not verify" in invalid(edited, mt.DOCKER_SCHEMA1_SIGNED, schema1_enabled=True).message
