"""The manifest data model: descriptors and parsed manifests (no parsing, no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import mediatypes as mt



@dataclass
class Descriptor:
    """An OCI content descriptor. ``size`` is 0 for schema 1 layers, whose size is unknown."""

    media_type: str
    digest: str
    size: int
    urls: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    platform: dict[str, Any] | None = None
    data: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form; optional fields only when set (key order as in the spec examples)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass
class Manifest:
    """A parsed manifest. ``body`` is the exact bytes pushed or stored, served unchanged.

    ``digest`` identifies it (sha256 of ``body`` unless the PUT reference asked for sha512; the
    canonical-payload digest for signed schema 1). ``children`` are the entries of an index or
    manifest list; ``layers`` of schema 1 are its ``fsLayers`` (deduplicated). ``json`` is the
    parsed body (for signed schema 1: the signed payload).
    """

    media_type: str
    schema_version: int
    body: bytes
    digest: str
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    children: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict, repr=False)
    #: signed schema 1 only: the signed payload (body without signatures), digest == ``digest``
    canonical: bytes | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEX_MEDIA_TYPES

    @property
    def is_schema1(self) -> bool:
        return self.media_type in mt.SCHEMA1_MEDIA_TYPES

    def required_blobs(self) -> list[Descriptor]:
        """Config and layers that must exist in the repository (else MANIFEST_BLOB_UNKNOWN).

        Like the reference, a descriptor carrying ``urls`` is exempt: clients fetch non-distributable
        and foreign layers from those URLs. Deduplicated by digest, in manifest order.
        """
        wanted = ([self.config] if self.config else []) + self.layers
        seen: set[str] = set()
        out: list[Descriptor] = []
        for d in wanted:
            if d.urls or d.digest in seen:
                continue
            seen.add(d.digest)
            out.append(d)
        return out

    def required_manifests(self) -> list[Descriptor]:
        """Index / manifest-list children: each must be a manifest in this repository."""
        seen: set[str] = set()
        out: list[Descriptor] = []
        for d in self.children:
            if d.digest not in seen:
                seen.add(d.digest)
                out.append(d)
        return out

    def referrer_descriptor(self) -> Descriptor:
        """The entry listed under the subject's referrers (OCI distribution spec 1.1).

        artifactType is the manifest's ``artifactType``, else its ``config.mediaType``; the
        manifest's annotations are copied.
        """
        artifact_type = self.artifact_type or (self.config.media_type if self.config else None)
        return Descriptor(
            media_type=self.media_type,
            digest=self.digest,
            size=self.size,
            artifact_type=artifact_type,
            annotations=dict(self.annotations),
        )
