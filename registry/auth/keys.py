"""Signing keys and certificates: load PEM, JWK form, key IDs, x5c chain verification, key creation.

Only asymmetric keys sign tokens here. Each key type has its own algorithms
(:func:`algorithms_for`), so a token can never be checked with HMAC against a public key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from ..manifests.libtrust import libtrust_key_id  # noqa: F401  (the token header's kid, as schema 1's)

PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey]
PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]
#: a verification key: a public key, or the bytes of an ``oct`` JWK (HS* only)
VerifyKey = Union[PublicKey, bytes]

_EC_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EC_CRV = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
MAX_CHAIN = 5


class UnusableKey(ValueError):
    """A key, certificate or chain that cannot be used (message is safe to log)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n: int) -> str:
    return _b64url(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


def algorithms_for(key: VerifyKey) -> tuple[str, ...]:
    """The JWS algorithms a key may verify: RSA→RS/PS, EC→the ES of its curve, Ed25519→EdDSA, oct→HS."""
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALG.get(key.curve.name)
        return (alg,) if alg else ()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("EdDSA",)
    if isinstance(key, bytes):
        return HMAC_ALGORITHMS
    return ()


def signing_algorithm(key: PrivateKey) -> str:
    """The algorithm our token server signs with for ``key``."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = _EC_ALG.get(key.curve.name)
        if alg:
            return alg
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise UnusableKey("signing key must be RSA, EC (P-256/P-384/P-521) or Ed25519")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The public JWK members (RFC 7517) of ``key``."""
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        return {"kty": "RSA", "n": _int_b64(nums.n), "e": _int_b64(nums.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _EC_CRV.get(key.curve.name)
        if crv is None:
            raise UnusableKey(f"unsupported EC curve {key.curve.name}")
        nums = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {"kty": "EC", "crv": crv, "x": _b64url(nums.x.to_bytes(size, "big")),
                "y": _b64url(nums.y.to_bytes(size, "big"))}
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    raise UnusableKey("unsupported public key type")


def thumbprint(key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the ``kid`` distribution v3 matches root keys by."""
    jwk = public_jwk(key)
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    members = {k: jwk[k] for k in required[jwk["kty"]]}
    text = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(text.encode()).digest())


def same_key(a: Any, b: Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return a.public_bytes(*fmt) == b.public_bytes(*fmt)
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------- loading


def load_private_key(path: str | Path) -> PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnusableKey(f"cannot read signing key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UnusableKey(f"signing key {path} is not an unencrypted PEM private key ({exc})") from None
    signing_algorithm(key)  # type: ignore[arg-type]
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise UnusableKey(f"signing key {path}: RSA keys must have at least 2048 bits")
    return key  # type: ignore[return-value]


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (a bundle or a chain, leaf first)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnusableKey(f"cannot read certificates {path}: {exc.strerror or exc}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise UnusableKey(f"{path} holds no readable PEM certificate ({exc})") from None
    return certs


def cert_der_b64(cert: x509.Certificate) -> str:
    """One ``x5c`` entry: standard base64 (not base64url) of the DER certificate."""
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


# --------------------------------------------------------------------------- chain checks

def _ca_key_usage(policy: Any, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    # RFC 5280 6.1.4 (n): keyUsage is optional on a CA, but when present it must allow keyCertSign
    # (WebPKI requires the extension: many hand-made CAs, e.g. `openssl req -x509`, have none).
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage of a CA certificate does not allow keyCertSign")


def _ca_constraints(policy: Any, cert: x509.Certificate, constraints: x509.BasicConstraints) -> None:
    # a CA must say so; criticality is not checked (distribution's Go verifier does not either)
    if not constraints.ca:
        raise ValueError("an issuer of the x5c chain is not a CA (basicConstraints)")


def _leaf_key_usage(policy: Any, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.digital_signature:
        raise ValueError("keyUsage of the signing certificate does not allow digitalSignature")


#: the rules for the CAs of an x5c chain: cryptography's WebPKI defaults (path length and name
#: constraints enforced, unknown critical extensions refused), with RFC 5280's keyUsage and
#: basicConstraints checks instead of WebPKI's stricter presence and criticality rules, and AKI
#: optional, since token certificates are often made by hand
_CA_POLICY = (
    ExtensionPolicy.webpki_defaults_ca()
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_constraints)
)
#: ... and for the signing (leaf) certificate: never a CA; with keyUsage, digitalSignature; SAN,
#: EKU and AKI optional (distribution accepts any extended key usage)
_LEAF_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _leaf_key_usage)
)


def _can_sign(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature)
    except x509.ExtensionNotFound:
        return True


def _reason(exc: VerificationError) -> str:
    """cryptography's message without the certificate it names (safe and short for a log line)."""
    text = re.sub(r"\s*\(encountered processing <Certificate.*$", "", str(exc), flags=re.S)
    text = text.removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    text = text.removeprefix("Python extension validator failed: ValueError: ")
    return text[:160]


def verify_chain(x5c: Sequence[Any], roots: Sequence[x509.Certificate], now: dt.datetime | None = None) -> PublicKey:
    """The leaf's public key when the ``x5c`` chain leads to a certificate in ``roots``, else UnusableKey.

    A certificate of the bundle itself is trusted as it is (the usual self-signed token
    certificate, even one marked CA, as distribution does), when in its validity period and, with
    keyUsage, allowed to sign. Any other chain is verified by ``cryptography.x509.verification``
    under WebPKI rules (:data:`_CA_POLICY`, :data:`_LEAF_POLICY`): signatures, validity, CA flags,
    key usage, path length and name constraints.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if not isinstance(x5c, list) or not x5c or len(x5c) > MAX_CHAIN:
        raise UnusableKey("x5c must be a list of 1 to 5 certificates")
    chain: list[x509.Certificate] = []
    for entry in x5c:
        if not isinstance(entry, str) or len(entry) > 16384:
            raise UnusableKey("malformed x5c entry")
        try:
            chain.append(x509.load_der_x509_certificate(base64.b64decode(entry, validate=True)))
        except (ValueError, TypeError):
            raise UnusableKey("x5c entry is not a DER certificate") from None
    if not roots:
        raise UnusableKey("no root certificates configured for x5c chains")
    leaf = chain[0]
    root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    if leaf.public_bytes(serialization.Encoding.DER) in root_ders:
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise UnusableKey("a certificate in the x5c chain is expired or not yet valid")
        if not _can_sign(leaf):
            raise UnusableKey("the x5c certificate's keyUsage does not allow digitalSignature")
    else:
        verifier = (
            PolicyBuilder()
            .store(Store(list(roots)))
            .time(now)
            .max_chain_depth(MAX_CHAIN)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_LEAF_POLICY)
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, chain[1:])
        except VerificationError as exc:
            reason = _reason(exc)
            if "not valid at validation time" in reason:
                raise UnusableKey("a certificate in the x5c chain is expired or not yet valid") from None
            raise UnusableKey(f"x5c chain is not rooted in the configured certificate bundle: {reason}") from None
    key = leaf.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise UnusableKey("unsupported key type in the leaf certificate")
    return key


# --------------------------------------------------------------------------- creation (operator CLI, tests)


def generate_private_key(kind: str = "ec") -> PrivateKey:
    """A new signing key: ``ec`` (P-256, the default), ``rsa`` (3072 bits) or ``ed25519``."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise UnusableKey(f"unknown key type {kind!r}: use ec, rsa or ed25519")


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certificate(
    key: PrivateKey,
    common_name: str,
    issuer_key: PrivateKey | None = None,
    issuer_cert: x509.Certificate | None = None,
    days: int = 365,
    ca: bool = False,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate for ``key``: self-signed, or signed by ``issuer_key``/``issuer_cert``."""
    now = not_before or (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name = issuer_cert.subject if issuer_cert is not None else subject
    signer = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)  # type: ignore[arg-type]
