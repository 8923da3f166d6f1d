"""Shared set-up of the auth tests: keys and certificates made on the fly, users, rules, configs.

Nothing here is a mock: tokens are signed with real keys, checked by the real verifier, and
served by the real token server inside the real app.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt

from registry.auth import keys
from registry.auth.htpasswd import set_user
from registry.config import Config

ISSUER = "test-token-issuer"
SERVICE = "test-registry"
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-2", "reader": "reader-secret-3", "admin": "admin-secret-4"}

RULES: list[dict[str, Any]] = [
    {"account": "admin", "name": "**", "actions": ["*"]},
    {"account": "admin", "type": "registry", "name": "catalog", "actions": ["*"]},
    {"account": "reader", "name": "**", "actions": ["pull"]},
    {"account": "*", "name": "${account}/**", "actions": ["pull", "push", "delete"]},
    {"account": "*", "name": "shared/**", "actions": ["pull", "push"]},
    {"anonymous": True, "account": "*", "name": "public/**", "actions": ["pull"]},
]


@dataclasses.dataclass
class Pki:
    """The token server's key and self-signed certificate, and an attacker's own key/cert/CA."""

    dir: Path
    key: keys.PrivateKey
    cert: Any
    key_path: Path
    cert_path: Path
    attacker_key: keys.PrivateKey
    attacker_cert: Any
    ca_key: keys.PrivateKey
    ca_cert: Any
    bundle_path: Path

    @property
    def kid(self) -> str:
        return keys.thumbprint(self.key.public_key())


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    key = keys.generate_private_key("ec")
    cert = keys.make_certificate(key, "token-signer")
    key_path, cert_path = directory / "token.key", directory / "token.crt"
    key_path.write_bytes(keys.private_key_pem(key))
    cert_path.write_bytes(keys.certificate_pem(cert))
    # a real CA (in the bundle) for chain tests
    ca_key = keys.generate_private_key("ec")
    ca_cert = keys.make_certificate(ca_key, "test-root-ca", ca=True)
    bundle_path = directory / "bundle.crt"
    bundle_path.write_bytes(keys.certificate_pem(cert) + keys.certificate_pem(ca_cert))
    attacker_key = keys.generate_private_key("ec")
    attacker_cert = keys.make_certificate(attacker_key, "token-signer")  # same name, other key
    return Pki(directory, key, cert, key_path, cert_path, attacker_key, attacker_cert, ca_key, ca_cert, bundle_path)


def chain_cert(key: Any, common_name: str, issuer_key: Any, issuer_cert: Any, *, ca: bool = False,
               path_length: int | None = None, key_usage: str | None = "default", basic_constraints: bool = True,
               extensions: list[tuple[Any, bool]] = ()) -> Any:
    """A certificate with exactly the extensions a chain test needs. ``key_usage``: "default" (CA:
    keyCertSign+cRLSign, else digitalSignature), None (no keyUsage extension) or a comma-separated
    list of ``x509.KeyUsage`` field names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = utcnow() - dt.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    if key_usage is not None:
        fields = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                                "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
        wanted = ("key_cert_sign,crl_sign" if ca else "digital_signature") if key_usage == "default" else key_usage
        fields.update(dict.fromkeys([f for f in wanted.split(",") if f], True))
        builder = builder.add_extension(x509.KeyUsage(**fields), critical=True)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())


def make_users(path: Path, users: dict[str, str] | None = None) -> Path:
    for user, password in (users or PASSWORDS).items():
        set_user(path, user, password, rounds=4)  # fast hashes keep the tests quick
    return path


def tokenserver_block(tmp: Path, pki: Pki, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "issuer": ISSUER,
        "service": SERVICE,
        "users": str(tmp / "htpasswd"),
        "key": str(pki.key_path),
        "certificate": str(pki.cert_path),
        "path": "/auth/token",
        "expiration": "5m",
        "refreshtokens": {"path": str(tmp / "refresh-tokens.json")},
        "ratelimit": {"failures": 5, "window": "1m"},
        "rules": RULES,
    }
    block.update(extra)
    return block


def token_auth_block(realm: str = "http://127.0.0.1/auth/token", **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"realm": realm, "service": SERVICE, "issuer": ISSUER}
    block.update(extra)
    return {"token": block}


def registry_config(root: Path, auth: dict[str, Any] | None = None, tokenserver: dict[str, Any] | None = None,
                    addr: str = "127.0.0.1:5000") -> Config:
    raw: dict[str, Any] = {
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"secret": "auth-test-secret", "addr": addr},
    }
    if auth:
        raw["auth"] = auth
    if tokenserver:
        raw["tokenserver"] = tokenserver
    return Config.from_dict(raw)


def sign(key: Any, claims: dict[str, Any] | None = None, headers: dict[str, Any] | None = None,
         alg: str = "ES256", **overrides: Any) -> str:
    """A token signed by ``key`` with sane defaults; ``overrides`` replace claims (None deletes)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now, "iat": now,
        "jti": os.urandom(8).hex(), "access": [],
    }
    body.update(claims or {})
    for k, v in overrides.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return jwt.encode(body, key, algorithm=alg, headers=headers or {})


def access(name: str, *actions: str, rtype: str = "repository") -> list[dict[str, Any]]:
    return [{"type": rtype, "name": name, "actions": list(actions)}]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A hand-built compact JWS (for alg=none and tampering)."""
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` with size and mtime: compare before/after to prove nothing was written."""
    out: dict[str, tuple[int, int]] = {}
    if not root.exists():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    for dirpath, dirs, _files in os.walk(root):
        for d in dirs:
            out[str((Path(dirpath) / d).relative_to(root)) + "/"] = (0, 0)
    return out


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
