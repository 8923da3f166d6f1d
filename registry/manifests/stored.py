"""GET and rebuilds: lenient handling of stored manifest bytes (detect the kind, the digest)."""

from __future__ import annotations

from typing import Any

from .. import mediatypes as mt
from ..errors import RegistryError
from ..reference import try_digest
from .fields import descriptor, digest_of, is_int, load_json, shape_media_type
from .model import Descriptor, Manifest
from .schema1 import canonical_payload




def _load_lenient(body: bytes) -> dict[str, Any] | None:
    try:
        obj = load_json(body)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def detect_media_type(body: bytes) -> str:
    """The media type of stored manifest bytes (storage keeps none, like the reference).

    The body's ``mediaType`` if it is a string; else schemaVersion 1 is signed schema 1 when it
    has ``signatures`` and unsigned ``v1+json`` otherwise (the reference stores schema 1 payloads
    without signatures); else a body with ``manifests`` is an OCI index; else an OCI image
    manifest. Bytes that are no JSON object give ``application/octet-stream``.
    """
    obj = _load_lenient(body)
    if obj is None:
        return "application/octet-stream"
    media_type = obj.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    return shape_media_type(obj)


def manifest_digest(body: bytes, media_type: str | None = None, algorithm: str = "sha256") -> str:
    """The Docker-Content-Digest of stored bytes.

    The digest of the bytes, except for signed schema 1, where Docker computes it over the
    canonical payload (the body cut at ``formatLength`` plus ``formatTail``, i.e. without the
    signatures). Never raises: malformed signatures fall back to the digest of the bytes.
    """
    if media_type is None:
        media_type = detect_media_type(body)
    if media_type == mt.DOCKER_SCHEMA1_SIGNED:
        obj = _load_lenient(body)
        signatures = obj.get("signatures") if obj else None
        if isinstance(signatures, list) and signatures:
            try:
                return digest_of(canonical_payload(body, signatures), algorithm)
            except RegistryError:
                pass
    return digest_of(body, algorithm)


def _lenient_descriptor(value: Any) -> Descriptor | None:
    try:
        return descriptor(value, "descriptor")
    except RegistryError:
        return None


def _lenient_list(obj: dict[str, Any], key: str) -> list[Descriptor]:
    items = obj.get(key)
    if not isinstance(items, list):
        return []
    return [d for d in map(_lenient_descriptor, items) if d is not None]


def parse_stored(body: bytes, digest: str | None = None) -> Manifest:
    """A best-effort :class:`Manifest` of stored bytes, for referrers and index rebuilds.

    Never raises: fields that do not validate are dropped. ``digest`` (the path it is stored
    under) is used when given, else :func:`manifest_digest`.
    """
    media_type = detect_media_type(body)
    obj = _load_lenient(body) or {}
    version = obj.get("schemaVersion")
    config = _lenient_descriptor(obj.get("config")) if "config" in obj else None
    layers = _lenient_list(obj, "layers")
    if media_type in mt.SCHEMA1_MEDIA_TYPES:
        fs_layers = obj.get("fsLayers")
        layers = [
            Descriptor(mt.DOCKER_SCHEMA1_LAYER, entry["blobSum"], 0)
            for entry in (fs_layers if isinstance(fs_layers, list) else [])
            if isinstance(entry, dict) and try_digest(entry.get("blobSum")) is not None
        ]
    artifact_type = obj.get("artifactType")
    annotations = obj.get("annotations")
    if not (isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())):
        annotations = {}
    return Manifest(
        media_type=media_type,
        schema_version=version if is_int(version) else 0,
        body=body,
        digest=digest or manifest_digest(body, media_type),
        config=config,
        layers=layers,
        children=_lenient_list(obj, "manifests"),
        subject=_lenient_descriptor(obj.get("subject")) if "subject" in obj else None,
        artifact_type=artifact_type if isinstance(artifact_type, str) and artifact_type else None,
        annotations=dict(annotations),
        json=obj,
    )


def stored_references(body: bytes) -> tuple[list[str], list[str], str | None]:
    """What stored manifest bytes name, fast and lenient (the garbage collector reads every
    manifest): ``(blob digests, child manifest digests, subject digest)`` as written -- config and
    layers (schema 1: ``fsLayers[].blobSum``), index entries, ``subject``. Unparseable bytes name
    nothing; the caller validates the digests."""
    obj = _load_lenient(body)
    if obj is None:
        return [], [], None

    def digests(items: Any, field: str = "digest") -> list[str]:
        if not isinstance(items, list):
            return []
        return [d for d in (i.get(field) for i in items if isinstance(i, dict)) if isinstance(d, str)]

    blobs = digests(obj.get("layers"))
    config = obj.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        blobs.append(config["digest"])
    if obj.get("schemaVersion") == 1:
        blobs += digests(obj.get("fsLayers"), "blobSum")
    subject = obj.get("subject")
    subject_digest = subject.get("digest") if isinstance(subject, dict) else None
    return blobs, digests(obj.get("manifests")), subject_digest if isinstance(subject_digest, str) else None
