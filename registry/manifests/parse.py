"""PUT: strict parsing of OCI and Docker schema 2 manifests and indexes (schema 1 in :mod:`.schema1`)."""

from __future__ import annotations

from typing import Any

from .. import mediatypes as mt
from ..errors import ErrorCode, RegistryError
from ..reference import Digest, try_digest
from .fields import (
    annotations_field,
    descriptor,
    digest_of,
    invalid,
    is_int,
    list_field,
    load_object,
    optional_descriptor,
    optional_str,
    shape_media_type,
)
from .model import Manifest
from .schema1 import parse_schema1

#: default limit of a manifest body; the spec asks registries to take at least 4 MiB
MAX_MANIFEST_SIZE = 4 * 1024 * 1024




def check_manifest_size(length: int, max_size: int = MAX_MANIFEST_SIZE) -> None:
    """Refuse a body over the limit: 413 (spec: SHOULD answer 413 Payload Too Large).

    Handlers call this with Content-Length before reading, and read at most ``max_size + 1`` bytes.
    """
    if length > max_size:
        raise RegistryError(
            ErrorCode.MANIFEST_TOO_LARGE,
            f"manifest is larger than the limit of {max_size} bytes",
            detail={"size": length, "limit": max_size},
        )


def parse_manifest(
    body: bytes,
    content_type: str | None,
    *,
    schema1_enabled: bool = False,
    max_size: int = MAX_MANIFEST_SIZE,
    expected_digest: str | Digest | None = None,
) -> Manifest:
    """Validate a pushed manifest; raise MANIFEST_INVALID with a clear message on any defect.

    ``content_type`` is the request's Content-Type. When it is missing or generic
    (``application/json``, ``application/octet-stream``) the body's ``mediaType`` decides, else the
    body's shape (as :func:`detect_media_type`). A manifest Content-Type must agree with the body's
    ``mediaType`` when the body has one (schema 1 signed/unsigned are one family: the presence of
    ``signatures`` decides). Docker schema 2 bodies must carry ``mediaType``.

    ``expected_digest`` is the digest of a PUT by digest: it must match the body (DIGEST_INVALID),
    and its algorithm (sha256 or sha512) is the one the manifest is identified by.
    Blob/child existence is the store's business: see :meth:`Manifest.required_blobs`.
    """
    check_manifest_size(len(body), max_size)
    obj = load_object(body)
    schema_version = _schema_version(obj)
    media_type = _resolve_media_type(obj, schema_version, mt.base_type(content_type))
    algorithm = _digest_algorithm(expected_digest)

    if media_type in mt.SCHEMA1_MEDIA_TYPES:
        if not schema1_enabled:
            raise invalid(
                "Docker schema 1 manifests are deprecated and refused by this registry "
                "(set compatibility.schema1.enabled: true to accept them)"
            )
        manifest = parse_schema1(body, obj, media_type, algorithm)
    elif media_type in mt.INDEX_MEDIA_TYPES:
        manifest = _parse_index(body, obj, media_type, algorithm)
    else:
        manifest = _parse_image(body, obj, media_type, algorithm)

    if expected_digest is not None and str(expected_digest) != manifest.digest:
        raise RegistryError(
            ErrorCode.DIGEST_INVALID,
            "manifest digest does not match the digest in the request",
            detail={"expected": str(expected_digest), "computed": manifest.digest},
        )
    return manifest


def _schema_version(obj: dict[str, Any]) -> int:
    if "schemaVersion" not in obj:
        raise invalid("manifest has no schemaVersion")
    version = obj["schemaVersion"]
    if not is_int(version) or version not in (1, 2):
        raise invalid(f"unsupported schemaVersion {version!r}: expected 2 (or 1 for Docker schema 1)")
    return version


def _resolve_media_type(obj: dict[str, Any], schema_version: int, declared: str) -> str:
    body_type = obj.get("mediaType")
    if "mediaType" in obj and not (isinstance(body_type, str) and body_type):
        raise invalid("mediaType must be a non-empty string")
    if declared in mt.GENERIC_CONTENT_TYPES:
        media_type = body_type or shape_media_type(obj)
        if media_type not in mt.MANIFEST_MEDIA_TYPES:
            raise invalid(f"unsupported manifest mediaType {media_type!r}")
    else:
        if declared not in mt.MANIFEST_MEDIA_TYPES:
            raise invalid(
                f"unsupported manifest Content-Type {declared!r}",
                detail={"supported": sorted(mt.MANIFEST_MEDIA_TYPES)},
            )
        both_schema1 = body_type in mt.SCHEMA1_MEDIA_TYPES and declared in mt.SCHEMA1_MEDIA_TYPES
        if body_type and body_type != declared and not both_schema1:
            raise invalid(
                f"Content-Type {declared!r} does not match the manifest's mediaType {body_type!r}"
            )
        media_type = declared
    if media_type in mt.SCHEMA1_MEDIA_TYPES:
        # one family: the body decides whether it is signed
        media_type = mt.DOCKER_SCHEMA1_SIGNED if "signatures" in obj else mt.DOCKER_SCHEMA1
    expected_version = 1 if media_type in mt.SCHEMA1_MEDIA_TYPES else 2
    if schema_version != expected_version:
        raise invalid(f"schemaVersion {schema_version} does not match media type {media_type!r}")
    if media_type in (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST) and body_type is None:
        raise invalid(f"a Docker schema 2 manifest must carry mediaType {media_type!r}")
    return media_type


def _digest_algorithm(expected: str | Digest | None) -> str:
    if expected is None:
        return "sha256"
    if isinstance(expected, Digest):
        return expected.algorithm
    parsed = try_digest(expected)
    if parsed is None:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid or unsupported digest", detail={"digest": expected})
    return parsed.algorithm


def _parse_image(body: bytes, obj: dict[str, Any], media_type: str, algorithm: str) -> Manifest:
    if "manifests" in obj:
        raise invalid("an image manifest must not have a manifests field")
    if "config" not in obj:
        raise invalid("manifest has no config descriptor")
    config = descriptor(obj["config"], "config")
    layers = [descriptor(d, f"layers[{i}]") for i, d in enumerate(list_field(obj, "layers"))]
    for i, layer in enumerate(layers):
        if layer.media_type == mt.DOCKER_FOREIGN_LAYER and not layer.urls:
            raise invalid(f"layers[{i}] is a foreign layer without urls")
    return Manifest(
        media_type=media_type,
        schema_version=2,
        body=body,
        digest=digest_of(body, algorithm),
        config=config,
        layers=layers,
        subject=optional_descriptor(obj, "subject"),
        artifact_type=optional_str(obj, "artifactType"),
        annotations=annotations_field(obj.get("annotations"), "annotations"),
        json=obj,
    )


def _parse_index(body: bytes, obj: dict[str, Any], media_type: str, algorithm: str) -> Manifest:
    for key in ("config", "layers"):
        if key in obj:
            raise invalid(f"an index must not have a {key} field")
    if "manifests" not in obj:
        raise invalid("index has no manifests list")
    children = [descriptor(d, f"manifests[{i}]") for i, d in enumerate(list_field(obj, "manifests"))]
    return Manifest(
        media_type=media_type,
        schema_version=2,
        body=body,
        digest=digest_of(body, algorithm),
        children=children,
        subject=optional_descriptor(obj, "subject"),
        artifact_type=optional_str(obj, "artifactType"),
        annotations=annotations_field(obj.get("annotations"), "annotations"),
        json=obj,
    )
