"""Docker schema 1: parsing, and verification of libtrust's JWS signatures on signed manifests."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .. import mediatypes as mt
from ..reference import try_digest
from .fields import digest_of, invalid, is_int, list_field, load_json, load_object, optional_str
from .model import Descriptor, Manifest

#: each signature costs a public-key verification; real manifests carry one
MAX_SCHEMA1_SIGNATURES = 16




def parse_schema1(body: bytes, obj: dict[str, Any], media_type: str, algorithm: str) -> Manifest:
    if media_type == mt.DOCKER_SCHEMA1_SIGNED:
        payload = _verify_jws(body, obj)
        content = load_object(payload)
        rest = {k: v for k, v in obj.items() if k != "signatures"}
        if content != rest:
            raise invalid("schema 1 signed payload does not match the manifest body")
    else:
        payload, content = body, obj
    name = content.get("name")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise invalid("schema 1 manifest needs a name (a repository name)")
    for key in ("tag", "architecture"):
        optional_str(content, key)
    fs_layers = list_field(content, "fsLayers")
    history = list_field(content, "history")
    if not fs_layers:
        raise invalid("schema 1 manifest has no fsLayers")
    if len(history) != len(fs_layers):
        raise invalid(f"mismatched history and fsLayers cardinality {len(history)} != {len(fs_layers)}")
    layers: list[Descriptor] = []
    for i, layer in enumerate(fs_layers):
        blob_sum = layer.get("blobSum") if isinstance(layer, dict) else None
        if try_digest(blob_sum) is None:
            raise invalid(f"fsLayers[{i}].blobSum is not a valid sha256 or sha512 digest")
        layers.append(Descriptor(mt.DOCKER_SCHEMA1_LAYER, blob_sum, 0))
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or not isinstance(entry.get("v1Compatibility"), str):
            raise invalid(f"history[{i}].v1Compatibility must be a string")
    return Manifest(
        media_type=media_type,
        schema_version=1,
        body=body,
        digest=digest_of(payload, algorithm),
        layers=layers,
        json=content,
        canonical=payload if media_type == mt.DOCKER_SCHEMA1_SIGNED else None,
    )


def _b64url_decode(value: Any, what: str) -> bytes:
    """libtrust's joseBase64UrlDecode: unpadded (or padded) URL-safe base64, strictly."""
    if not isinstance(value, str):
        raise invalid(f"{what} must be a base64url string")
    try:  # a length of 4n+1 cannot be base64 (binascii says so: libtrust's "illegal base64url string")
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{what} is not valid base64url") from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _format_of(signature: Any, i: int) -> tuple[int, bytes]:
    """formatLength and formatTail from a signature's protected header (libtrust pretty JWS)."""
    if not isinstance(signature, dict):
        raise invalid(f"signatures[{i}] must be an object")
    protected_raw = _b64url_decode(signature.get("protected"), f"signatures[{i}].protected")
    try:
        protected = load_json(protected_raw)
    except ValueError:
        protected = None
    if not isinstance(protected, dict):
        raise invalid(f"signatures[{i}].protected is not a JSON object")
    length = protected.get("formatLength")
    if not is_int(length) or length < 0:
        raise invalid(f"signatures[{i}].protected has no valid formatLength")
    tail = _b64url_decode(protected.get("formatTail"), f"signatures[{i}].protected formatTail")
    return length, tail


def canonical_payload(body: bytes, signatures: list[Any]) -> bytes:
    """The signed payload: the body cut at formatLength plus formatTail (all signatures agree)."""
    formats = {_format_of(s, i) for i, s in enumerate(signatures)}
    if len(formats) != 1:
        raise invalid("schema 1 signatures have conflicting formatLength or formatTail")
    ((length, tail),) = formats
    if length > len(body):
        raise invalid("schema 1 signature formatLength exceeds the manifest length")
    return body[:length] + tail


def _verify_jws(body: bytes, obj: dict[str, Any]) -> bytes:
    """Verify every libtrust JWS signature of a signed schema 1 manifest; return the payload."""
    from . import libtrust  # cryptography, imported when a signature is verified (not to read manifests)

    signatures = obj.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise invalid("signed schema 1 manifest has no signatures")
    if len(signatures) > MAX_SCHEMA1_SIGNATURES:
        raise invalid(f"schema 1 manifest has more than {MAX_SCHEMA1_SIGNATURES} signatures")
    payload = canonical_payload(body, signatures)
    encoded_payload = _b64url_encode(payload)
    for i, signature in enumerate(signatures):
        header = signature.get("header")
        if not isinstance(header, dict):
            raise invalid(f"signatures[{i}].header must be an object")
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise invalid(f"signatures[{i}].header.alg must be a string")
        key = libtrust.signature_key(header, f"signatures[{i}].header")
        sig = _b64url_decode(signature.get("signature"), f"signatures[{i}].signature")
        signing_input = f"{signature['protected']}.{encoded_payload}".encode("ascii")
        problem = libtrust.verify_signature(key, alg, sig, signing_input)
        if problem:
            raise invalid(f"schema 1 signature {i} does not verify: {problem}")
    return payload


def libtrust_key_id(key: Any) -> str:
    """libtrust's key ID of a public key (see :func:`registry.manifests.libtrust.libtrust_key_id`)."""
    from .libtrust import libtrust_key_id as key_id

    return key_id(key)
