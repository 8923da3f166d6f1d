"""libtrust's JWS keys and signatures (signed schema 1 manifests): the part of schema 1 that needs
``cryptography``, imported only when a signature is verified -- reading a stored manifest (the
garbage collector reads thousands) never does."""

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

from .fields import invalid
from .schema1 import _b64url_decode


def signature_key(header: dict[str, Any], where: str) -> Any:
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
    return jwk_public_key(jwk, f"{where}.jwk")


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


def jwk_public_key(jwk: dict[str, Any], where: str) -> Any:
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


def verify_signature(key: Any, alg: str, sig: bytes, signing_input: bytes) -> str | None:
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
