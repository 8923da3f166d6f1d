"""Manifests: parse and validate every kind on PUT, detect the kind of stored bytes on GET.

A pure module (no storage, no HTTP). Kinds: OCI image manifest and index, Docker schema 2 manifest
and manifest list, artifacts (any ``artifactType``, empty config), and Docker schema 1 (signed
``v1+prettyjws`` and unsigned ``v1+json``; pushes only when enabled, with JWS signatures verified).

Storage keeps no media type (the reference registry keeps none either, and we share its layout),
so :func:`detect_media_type` recovers it from the body, the same way for bytes we wrote and bytes
the reference wrote. Stored bytes are served unchanged; :func:`manifest_digest` gives the digest to
announce (the canonical-payload digest for signed schema 1, which is what Docker computes).

Signed schema 1 and the shared storage: the reference (2.8.2) stores only the canonical payload
(no signatures) at ``blobs/sha256/<canonical digest>/data`` and signs it with its own key on every
GET. Writing the original signed bytes there instead makes the reference serve a body with two
``signatures`` keys whose canonical digest no longer matches the path (checked against 2.8.2).
So :attr:`Manifest.canonical` is what goes at the digest path; keep the original bytes elsewhere
if they must be served byte for byte. Stored payloads without signatures detect as unsigned
``v1+json``, whose digest (sha256 of the bytes) is the same canonical digest.

Modules: :mod:`.model` (descriptors, manifests), :mod:`.fields` (strict field rules), :mod:`.parse`
(PUT of OCI and Docker schema 2 kinds), :mod:`.schema1` (schema 1 and its JWS signatures),
:mod:`.stored` (lenient reading of stored bytes), :mod:`.negotiation` (``Accept``).

Interface used by the store and the handlers (imported from this package):

- :class:`Descriptor`, :class:`Manifest` (``required_blobs()``, ``required_manifests()``,
  ``referrer_descriptor()``)
- :func:`check_manifest_size`, :func:`parse_manifest` (PUT), :func:`parse_stored` (lenient),
  :func:`detect_media_type`, :func:`manifest_digest`, :func:`acceptable`
"""

from .model import Descriptor, Manifest
from .negotiation import NEGOTIATED_MEDIA_TYPES, acceptable, accepted_types
from .parse import MAX_MANIFEST_SIZE, check_manifest_size, parse_manifest
from .schema1 import libtrust_key_id
from .stored import detect_media_type, manifest_digest, parse_stored, stored_references

__all__ = [
    "MAX_MANIFEST_SIZE",
    "NEGOTIATED_MEDIA_TYPES",
    "Descriptor",
    "Manifest",
    "acceptable",
    "accepted_types",
    "check_manifest_size",
    "detect_media_type",
    "libtrust_key_id",
    "manifest_digest",
    "parse_manifest",
    "parse_stored",
    "stored_references",
]
