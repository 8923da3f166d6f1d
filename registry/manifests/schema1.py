"""Docker schema 1: parsing, and verification of libtrust's JWS signatures on signed manifests."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

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
        key = _signature_key(header, f"signatures[{i}].header")
        sig = _b64url_decode(signature.get("signature"), f"signatures[{i}].signature")
        signing_input = f"{signature['protected']}.{encoded_payload}".encode("ascii")
        problem = _verify_signature(key, alg, sig, signing_input)
        if problem:
            raise invalid(f"schema 1 signature {i} does not verify: {problem}")
    return payload


def _signature_key(header: dict[str, Any], where: str) -> Any:
    """The public key: the first x5c certificate's (chain not checked, as libtrust), else jwk."""
    chain = header.get("x5c")
    if chain:
        if not isinstance(chain, list) or not isinstance(chain[0], str):
            raise invalid(f"{where}.x5c must be an array of base64 certificates")
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
            return cert.public_key()
        except (binascii.Error, ValueError):
            raise invalid(f"{where}.x5c[0] is not a DER certificate") from None
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise invalid(f"{where} has neither jwk nor x5c")
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
                raise invalid(f"{where}.crv {curve_name!r} is not P-256, P-384 or P-521")
            curve = _CURVES[curve_name][0]
            octets = (curve.key_size + 7) // 8
            x = _b64url_decode(jwk.get("x"), f"{where}.x")
            y = _b64url_decode(jwk.get("y"), f"{where}.y")
            if len(x) != octets or len(y) != octets:
                raise invalid(f"{where} coordinates must be {octets} octets")
            key: Any = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            ).public_key()
        elif kty == "RSA":
            n = int.from_bytes(_b64url_decode(jwk.get("n"), f"{where}.n"), "big")
            e = int.from_bytes(_b64url_decode(jwk.get("e"), f"{where}.e"), "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
        else:
            raise invalid(f"{where}.kty {kty!r} is not EC or RSA")
    except ValueError as exc:
        raise invalid(f"{where} is not a valid public key: {exc}") from None
    kid = jwk.get("kid")
    if kid is not None and kid != libtrust_key_id(key):
        raise invalid(f"{where}.kid does not match the key")
    return key


def libtrust_key_id(key: Any) -> str:
    """libtrust's key ID (``kid``): SHA-256 of the DER SubjectPublicKeyInfo, truncated to 240 bits,
    base32 in twelve ``:``-separated groups of four (checked against keys the reference signs with)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")  # 240 bits: no padding
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
