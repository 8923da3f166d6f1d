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

Interface used by the store and the handlers:

- :class:`Descriptor`, :class:`Manifest` (``required_blobs()``, ``required_manifests()``,
  ``referrer_descriptor()``, ``descriptor()``)
- :func:`check_manifest_size`, :func:`parse_manifest` (PUT), :func:`parse_stored` (lenient),
  :func:`detect_media_type`, :func:`manifest_digest`, :func:`acceptable`
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import mediatypes as mt
from .errors import ErrorCode, RegistryError
from .reference import Digest, try_digest

#: default limit of a manifest body; the spec asks registries to take at least 4 MiB
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_MAX_INT64 = 2**63 - 1
#: each signature costs a public-key verification; real manifests carry one
MAX_SCHEMA1_SIGNATURES = 16


# ------------------------------------------------------------------------------------------------
# data model


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

    def descriptor(self) -> Descriptor:
        """This manifest as a plain descriptor (mediaType, digest, size)."""
        return Descriptor(self.media_type, self.digest, self.size)

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


# ------------------------------------------------------------------------------------------------
# PUT: strict parsing


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
    obj = _load_object(body)
    schema_version = _schema_version(obj)
    media_type = _resolve_media_type(obj, schema_version, mt.base_type(content_type))
    algorithm = _digest_algorithm(expected_digest)

    if media_type in mt.SCHEMA1_MEDIA_TYPES:
        if not schema1_enabled:
            raise _invalid(
                "Docker schema 1 manifests are deprecated and refused by this registry "
                "(set compatibility.schema1.enabled: true to accept them)"
            )
        manifest = _parse_schema1(body, obj, media_type, algorithm)
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


def _invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message, detail=detail)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(body: bytes) -> Any:
    """JSON as Go reads it: UTF-8 only, no BOM, no NaN/Infinity; raises ValueError."""
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        obj = _load_json(body)
    except ValueError as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _invalid("manifest must be a JSON object")
    return obj


def _schema_version(obj: dict[str, Any]) -> int:
    if "schemaVersion" not in obj:
        raise _invalid("manifest has no schemaVersion")
    version = obj["schemaVersion"]
    if not _is_int(version) or version not in (1, 2):
        raise _invalid(f"unsupported schemaVersion {version!r}: expected 2 (or 1 for Docker schema 1)")
    return version


def _shape_media_type(obj: dict[str, Any]) -> str:
    """The kind a body without ``mediaType`` has, judged from its fields."""
    if obj.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED if "signatures" in obj else mt.DOCKER_SCHEMA1
    if "manifests" in obj:
        return mt.OCI_INDEX
    return mt.OCI_MANIFEST


def _resolve_media_type(obj: dict[str, Any], schema_version: int, declared: str) -> str:
    body_type = obj.get("mediaType")
    if "mediaType" in obj and not (isinstance(body_type, str) and body_type):
        raise _invalid("mediaType must be a non-empty string")
    if declared in mt.GENERIC_CONTENT_TYPES:
        media_type = body_type or _shape_media_type(obj)
        if media_type not in mt.MANIFEST_MEDIA_TYPES:
            raise _invalid(f"unsupported manifest mediaType {media_type!r}")
    else:
        if declared not in mt.MANIFEST_MEDIA_TYPES:
            raise _invalid(
                f"unsupported manifest Content-Type {declared!r}",
                detail={"supported": sorted(mt.MANIFEST_MEDIA_TYPES)},
            )
        both_schema1 = body_type in mt.SCHEMA1_MEDIA_TYPES and declared in mt.SCHEMA1_MEDIA_TYPES
        if body_type and body_type != declared and not both_schema1:
            raise _invalid(
                f"Content-Type {declared!r} does not match the manifest's mediaType {body_type!r}"
            )
        media_type = declared
    if media_type in mt.SCHEMA1_MEDIA_TYPES:
        # one family: the body decides whether it is signed
        media_type = mt.DOCKER_SCHEMA1_SIGNED if "signatures" in obj else mt.DOCKER_SCHEMA1
    expected_version = 1 if media_type in mt.SCHEMA1_MEDIA_TYPES else 2
    if schema_version != expected_version:
        raise _invalid(f"schemaVersion {schema_version} does not match media type {media_type!r}")
    if media_type in (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST) and body_type is None:
        raise _invalid(f"a Docker schema 2 manifest must carry mediaType {media_type!r}")
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


def _digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_image(body: bytes, obj: dict[str, Any], media_type: str, algorithm: str) -> Manifest:
    if "manifests" in obj:
        raise _invalid("an image manifest must not have a manifests field")
    if "config" not in obj:
        raise _invalid("manifest has no config descriptor")
    config = _descriptor(obj["config"], "config")
    layers = [_descriptor(d, f"layers[{i}]") for i, d in enumerate(_list(obj, "layers"))]
    for i, layer in enumerate(layers):
        if layer.media_type == mt.DOCKER_FOREIGN_LAYER and not layer.urls:
            raise _invalid(f"layers[{i}] is a foreign layer without urls")
    return Manifest(
        media_type=media_type,
        schema_version=2,
        body=body,
        digest=_digest_of(body, algorithm),
        config=config,
        layers=layers,
        subject=_optional_descriptor(obj, "subject"),
        artifact_type=_optional_str(obj, "artifactType"),
        annotations=_annotations(obj.get("annotations"), "annotations"),
        json=obj,
    )


def _parse_index(body: bytes, obj: dict[str, Any], media_type: str, algorithm: str) -> Manifest:
    for key in ("config", "layers"):
        if key in obj:
            raise _invalid(f"an index must not have a {key} field")
    if "manifests" not in obj:
        raise _invalid("index has no manifests list")
    children = [_descriptor(d, f"manifests[{i}]") for i, d in enumerate(_list(obj, "manifests"))]
    return Manifest(
        media_type=media_type,
        schema_version=2,
        body=body,
        digest=_digest_of(body, algorithm),
        children=children,
        subject=_optional_descriptor(obj, "subject"),
        artifact_type=_optional_str(obj, "artifactType"),
        annotations=_annotations(obj.get("annotations"), "annotations"),
        json=obj,
    )


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(f"{key} must be an array")
    return value


def _optional_str(obj: dict[str, Any], key: str, where: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{where or key} must be a string")
    return value or None


def _optional_descriptor(obj: dict[str, Any], key: str) -> Descriptor | None:
    value = obj.get(key)
    return None if value is None else _descriptor(value, key)


def _annotations(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid(f"{where} must be an object of string values")
    return dict(value)


def _check_url(url: Any, where: str) -> str:
    if not isinstance(url, str):
        raise _invalid(f"{where} must be a string")
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.fragment:
        raise _invalid(f"{where} {url[:200]!r} is not an http(s) URL without fragment")
    return url


def _descriptor(value: Any, where: str) -> Descriptor:
    """A strictly validated descriptor; ``where`` names it in error messages (``layers[2]``)."""
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or "/" not in media_type:
        raise _invalid(f"{where}.mediaType must be a media type string such as 'type/subtype'")
    digest = value.get("digest")
    if try_digest(digest) is None:
        shown = digest[:200] if isinstance(digest, str) else digest
        raise _invalid(f"{where}.digest {shown!r} is not a valid sha256 or sha512 digest")
    size = value.get("size")
    if not _is_int(size) or not 0 <= size <= _MAX_INT64:
        raise _invalid(f"{where}.size must be a non-negative integer")
    urls_value = value.get("urls")
    if urls_value is not None and not isinstance(urls_value, list):
        raise _invalid(f"{where}.urls must be an array of URLs")
    urls = [_check_url(u, f"{where}.urls[{i}]") for i, u in enumerate(urls_value)] if urls_value else []
    platform = value.get("platform")
    if platform is not None:
        _check_platform(platform, f"{where}.platform")
    data = value.get("data")
    if data is not None:
        _check_data(data, digest, size, f"{where}.data")
    annotations = value.get("annotations")
    artifact_type = value.get("artifactType")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=urls,
        # error labels are built only when needed: a 4 MiB manifest holds ~25k descriptors
        annotations={} if annotations is None else _annotations(annotations, f"{where}.annotations"),
        artifact_type=None if artifact_type is None else _optional_str(value, "artifactType", f"{where}.artifactType"),
        platform=platform,
        data=data,
    )


def _check_platform(platform: Any, where: str) -> None:
    if not isinstance(platform, dict):
        raise _invalid(f"{where} must be an object")
    for key in ("architecture", "os", "os.version", "variant"):
        if key in platform and not isinstance(platform[key], str):
            raise _invalid(f"{where}.{key} must be a string")
    for key in ("os.features", "features"):
        items = platform.get(key)
        if items is not None and not (isinstance(items, list) and all(isinstance(x, str) for x in items)):
            raise _invalid(f"{where}.{key} must be an array of strings")


def _check_data(data: Any, digest: str, size: int, where: str) -> None:
    """Embedded content (image spec 1.1): base64 that must match the descriptor."""
    if not isinstance(data, str):
        raise _invalid(f"{where} must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{where} is not valid base64") from None
    parsed = try_digest(digest)
    assert parsed is not None
    if len(raw) != size or _digest_of(raw, parsed.algorithm) != digest:
        raise _invalid(f"{where} does not match the descriptor's digest and size")


# ------------------------------------------------------------------------------------------------
# Docker schema 1


def _parse_schema1(body: bytes, obj: dict[str, Any], media_type: str, algorithm: str) -> Manifest:
    if media_type == mt.DOCKER_SCHEMA1_SIGNED:
        payload = _verify_jws(body, obj)
        content = _load_object(payload)
        rest = {k: v for k, v in obj.items() if k != "signatures"}
        if content != rest:
            raise _invalid("schema 1 signed payload does not match the manifest body")
    else:
        payload, content = body, obj
    name = content.get("name")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise _invalid("schema 1 manifest needs a name (a repository name)")
    for key in ("tag", "architecture"):
        _optional_str(content, key)
    fs_layers = _list(content, "fsLayers")
    history = _list(content, "history")
    if not fs_layers:
        raise _invalid("schema 1 manifest has no fsLayers")
    if len(history) != len(fs_layers):
        raise _invalid(f"mismatched history and fsLayers cardinality {len(history)} != {len(fs_layers)}")
    layers: list[Descriptor] = []
    for i, layer in enumerate(fs_layers):
        blob_sum = layer.get("blobSum") if isinstance(layer, dict) else None
        if try_digest(blob_sum) is None:
            raise _invalid(f"fsLayers[{i}].blobSum is not a valid sha256 or sha512 digest")
        layers.append(Descriptor(mt.DOCKER_SCHEMA1_LAYER, blob_sum, 0))
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or not isinstance(entry.get("v1Compatibility"), str):
            raise _invalid(f"history[{i}].v1Compatibility must be a string")
    return Manifest(
        media_type=media_type,
        schema_version=1,
        body=body,
        digest=_digest_of(payload, algorithm),
        layers=layers,
        json=content,
        canonical=payload if media_type == mt.DOCKER_SCHEMA1_SIGNED else None,
    )


def _b64url_decode(value: Any, what: str) -> bytes:
    """libtrust's joseBase64UrlDecode: unpadded (or padded) URL-safe base64, strictly."""
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a base64url string")
    value = value.replace(" ", "")
    if len(value) % 4 == 1:
        raise _invalid(f"{what} is not valid base64url")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{what} is not valid base64url") from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _format_of(signature: Any, i: int) -> tuple[int, bytes]:
    """formatLength and formatTail from a signature's protected header (libtrust pretty JWS)."""
    if not isinstance(signature, dict):
        raise _invalid(f"signatures[{i}] must be an object")
    protected_raw = _b64url_decode(signature.get("protected"), f"signatures[{i}].protected")
    try:
        protected = _load_json(protected_raw)
    except ValueError:
        protected = None
    if not isinstance(protected, dict):
        raise _invalid(f"signatures[{i}].protected is not a JSON object")
    length = protected.get("formatLength")
    if not _is_int(length) or length < 0:
        raise _invalid(f"signatures[{i}].protected has no valid formatLength")
    tail = _b64url_decode(protected.get("formatTail"), f"signatures[{i}].protected formatTail")
    return length, tail


def _canonical_payload(body: bytes, signatures: list[Any]) -> bytes:
    """The signed payload: the body cut at formatLength plus formatTail (all signatures agree)."""
    formats = {_format_of(s, i) for i, s in enumerate(signatures)}
    if len(formats) != 1:
        raise _invalid("schema 1 signatures have conflicting formatLength or formatTail")
    ((length, tail),) = formats
    if length > len(body):
        raise _invalid("schema 1 signature formatLength exceeds the manifest length")
    return body[:length] + tail


def _verify_jws(body: bytes, obj: dict[str, Any]) -> bytes:
    """Verify every libtrust JWS signature of a signed schema 1 manifest; return the payload."""
    signatures = obj.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise _invalid("signed schema 1 manifest has no signatures")
    if len(signatures) > MAX_SCHEMA1_SIGNATURES:
        raise _invalid(f"schema 1 manifest has more than {MAX_SCHEMA1_SIGNATURES} signatures")
    payload = _canonical_payload(body, signatures)
    encoded_payload = _b64url_encode(payload)
    for i, signature in enumerate(signatures):
        header = signature.get("header")
        if not isinstance(header, dict):
            raise _invalid(f"signatures[{i}].header must be an object")
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise _invalid(f"signatures[{i}].header.alg must be a string")
        key = _signature_key(header, f"signatures[{i}].header")
        sig = _b64url_decode(signature.get("signature"), f"signatures[{i}].signature")
        signing_input = f"{signature['protected']}.{encoded_payload}".encode("ascii")
        problem = _verify_signature(key, alg, sig, signing_input)
        if problem:
            raise _invalid(f"schema 1 signature {i} does not verify: {problem}")
    return payload


def _signature_key(header: dict[str, Any], where: str) -> Any:
    """The public key: the first x5c certificate's (chain not checked, as libtrust), else jwk."""
    chain = header.get("x5c")
    if chain:
        if not isinstance(chain, list) or not isinstance(chain[0], str):
            raise _invalid(f"{where}.x5c must be an array of base64 certificates")
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
            return cert.public_key()
        except (binascii.Error, ValueError):
            raise _invalid(f"{where}.x5c[0] is not a DER certificate") from None
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise _invalid(f"{where} has neither jwk nor x5c")
    return _jwk_public_key(jwk, f"{where}.jwk")


_CURVES: dict[str, tuple[ec.EllipticCurve, str, hashes.HashAlgorithm]] = {
    "P-256": (ec.SECP256R1(), "ES256", hashes.SHA256()),
    "P-384": (ec.SECP384R1(), "ES384", hashes.SHA384()),
    "P-521": (ec.SECP521R1(), "ES512", hashes.SHA512()),
}
_RSA_HASHES: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(),
    "RS384": hashes.SHA384(),
    "RS512": hashes.SHA512(),
}


def _jwk_public_key(jwk: dict[str, Any], where: str) -> Any:
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            curve_name = jwk.get("crv")
            if curve_name not in _CURVES:
                raise _invalid(f"{where}.crv {curve_name!r} is not P-256, P-384 or P-521")
            curve = _CURVES[curve_name][0]
            octets = (curve.key_size + 7) // 8
            x = _b64url_decode(jwk.get("x"), f"{where}.x")
            y = _b64url_decode(jwk.get("y"), f"{where}.y")
            if len(x) != octets or len(y) != octets:
                raise _invalid(f"{where} coordinates must be {octets} octets")
            key: Any = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        elif kty == "RSA":
            n = int.from_bytes(_b64url_decode(jwk.get("n"), f"{where}.n"), "big")
            e = int.from_bytes(_b64url_decode(jwk.get("e"), f"{where}.e"), "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
        else:
            raise _invalid(f"{where}.kty {kty!r} is not EC or RSA")
    except ValueError as exc:
        raise _invalid(f"{where} is not a valid public key: {exc}") from None
    kid = jwk.get("kid")
    if kid is not None and kid != libtrust_key_id(key):
        raise _invalid(f"{where}.kid does not match the key")
    return key


def libtrust_key_id(key: Any) -> str:
    """libtrust's key ID (``kid``): SHA-256 of the DER SubjectPublicKeyInfo, truncated to 240 bits,
    base32 in twelve ``:``-separated groups of four (checked against keys the reference signs with)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _verify_signature(key: Any, alg: str, sig: bytes, signing_input: bytes) -> str | None:
    """None when valid, else the reason (libtrust's rules: the EC alg is fixed by the curve)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            curve_name = {v[0].name: k for k, v in _CURVES.items()}.get(key.curve.name)
            if curve_name is None:
                return "unsupported elliptic curve"
            _, want_alg, hash_alg = _CURVES[curve_name]
            if alg != want_alg:
                return f"curve {curve_name} needs alg {want_alg}, not {alg!r}"
            octets = (key.curve.key_size + 7) // 8
            if len(sig) != 2 * octets:
                return f"signature is {len(sig)} octets, should be {2 * octets}"
            r = int.from_bytes(sig[:octets], "big")
            s = int.from_bytes(sig[octets:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hash_alg))
        elif isinstance(key, rsa.RSAPublicKey):
            if alg not in _RSA_HASHES:
                return f"RSA key cannot verify alg {alg!r}"
            key.verify(sig, signing_input, padding.PKCS1v15(), _RSA_HASHES[alg])
        else:
            return "unsupported key type"
    except InvalidSignature:
        return "invalid signature"
    return None


# ------------------------------------------------------------------------------------------------
# GET and rebuilds: lenient handling of stored bytes


def _load_lenient(body: bytes) -> dict[str, Any] | None:
    try:
        obj = _load_json(body)
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
    return _shape_media_type(obj)


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
                return _digest_of(_canonical_payload(body, signatures), algorithm)
            except RegistryError:
                pass
    return _digest_of(body, algorithm)


def _lenient_descriptor(value: Any) -> Descriptor | None:
    try:
        return _descriptor(value, "descriptor")
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
        schema_version=version if _is_int(version) else 0,
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


# ------------------------------------------------------------------------------------------------
# content negotiation

#: kinds served only to clients that accept them (as the reference does for OCI types)
NEGOTIATED_MEDIA_TYPES = frozenset({mt.OCI_MANIFEST, mt.OCI_INDEX})


def accepted_types(accept_values: list[str]) -> set[str]:
    """Media types named in Accept headers (repeated headers and comma lists merged; ``q=0`` out)."""
    out: set[str] = set()
    for header in accept_values:
        for entry in header.split(","):
            base, _, params = entry.partition(";")
            base = base.strip().lower()
            if not base:
                continue
            q = 1.0
            for param in params.split(";"):
                key, _, value = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(value.strip())
                    except ValueError:
                        q = 1.0
            if q > 0:
                out.add(base)
    return out


def acceptable(media_type: str, accept_values: list[str]) -> bool:
    """Whether a stored manifest of ``media_type`` may be served to a client with this Accept.

    No Accept at all, ``*/*`` or ``application/*`` accept anything; otherwise OCI manifests and
    indexes need their type listed (else the handler answers 404 MANIFEST_UNKNOWN, as
    distribution does: "OCI manifest found, but accept header does not support OCI manifests").
    Docker schema 2, manifest lists and schema 1 are served whatever the Accept says: we never
    rewrite manifests (the reference's on-the-fly schema 1 conversion is gone in distribution v3),
    and old Docker clients that omit them still parse what they get.
    """
    types = accepted_types(accept_values)
    if not types or "*/*" in types or "application/*" in types:
        return True
    if mt.base_type(media_type) not in NEGOTIATED_MEDIA_TYPES:
        return True
    return mt.base_type(media_type) in types


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
]
