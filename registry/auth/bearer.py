"""Bearer-token (JWT) validation for the registry, as distribution's ``auth.token`` does it, stricter.

Order of checks: size and shape; the header's ``alg`` against the allow-list; the key, found through
an ``x5c`` chain verified against ``rootcertbundle``, or a ``jwk`` whose RFC 7638 thumbprint is a
trusted key, or a ``kid`` (JWKS kid, root-certificate thumbprint or libtrust ID); the key type must
fit the algorithm (never HMAC with a public key); then signature, ``iss``, ``aud`` (string or list),
``exp``/``nbf`` with 60 s leeway, and the ``access`` claim.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import binascii
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography import x509

from . import keys
from .config import TokenConfig
from .scope import AccessSet, ScopeError

log = logging.getLogger(__name__)

LEEWAY = 60
MAX_TOKEN_LENGTH = 7168
MAX_JWKS_BYTES = 1024 * 1024
JWKS_REFRESH_MIN_INTERVAL = 30.0
#: validated tokens are remembered (by their exact text) for at most this long, so a client sending
#: one token on every request pays the signature check once a minute, not once a request
CACHE_SECONDS = 60.0
CACHE_SIZE = 4096
#: \Z, not $ (which also matches before a trailing newline)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")


class InvalidToken(Exception):
    """The token is malformed, untrusted, expired or not for us. The message is for logs only."""


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parse_jwks(data: Any, allow_hmac: bool) -> dict[str, keys.VerifyKey]:
    """``kid -> key`` from a JWKS document; ``oct`` keys only when HS* algorithms are allowed."""
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise ValueError("a JWKS must be an object with a 'keys' list")
    out: dict[str, keys.VerifyKey] = {}
    for entry in data["keys"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str) or not entry["kid"]:
            raise ValueError("every JWKS key needs a 'kid'")
        if entry.get("kty") == "oct" and not allow_hmac:
            log.warning("JWKS key %s is symmetric (oct) and HS* is not in signingalgorithms: ignored", entry["kid"])
            continue
        try:
            jwk = jwt.PyJWK.from_dict(dict(entry))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise ValueError(f"JWKS key {entry['kid']}: {exc}") from None
        key = jwk.key
        if not isinstance(key, bytes) and hasattr(key, "private_bytes"):
            key = key.public_key()  # a JWKS holding private keys: only their public half is used
        out[entry["kid"]] = key
    return out


class TokenVerifier:
    """Validates bearer tokens for one service, with keys from a bundle, a JWKS, or given directly."""

    def __init__(
        self,
        config: TokenConfig,
        roots: Sequence[x509.Certificate] = (),
        trusted: Mapping[str, keys.VerifyKey] | None = None,
    ) -> None:
        self.config = config
        self.algorithms = frozenset(config.signingalgorithms)
        self.roots = list(roots)
        self._keys: dict[str, keys.VerifyKey] = dict(trusted or {})
        for cert in self.roots:
            pub = cert.public_key()
            try:
                self._keys.setdefault(keys.thumbprint(pub), pub)  # type: ignore[arg-type]
                self._keys.setdefault(keys.libtrust_key_id(pub), pub)  # type: ignore[arg-type]
            except keys.UnusableKey:
                continue
        self._jwks_url = config.jwks if config.jwks.startswith(("http://", "https://")) else ""
        self._jwks_keys: dict[str, keys.VerifyKey] = {}
        self._jwks_fetched = 0.0
        self._jwks_lock = asyncio.Lock()
        #: token -> (grants, not before, cache expiry); time claims are re-checked on every hit
        self._cache: collections.OrderedDict[str, tuple[AccessSet, float, float]] = collections.OrderedDict()

    @classmethod
    def from_config(cls, config: TokenConfig, extra: Mapping[str, keys.VerifyKey] | None = None) -> "TokenVerifier":
        """Load ``rootcertbundle`` and a JWKS file now (errors are config errors)."""
        roots = keys.load_certificates(config.rootcertbundle) if config.rootcertbundle else []
        trusted: dict[str, keys.VerifyKey] = dict(extra or {})
        allow_hmac = any(a in keys.HMAC_ALGORITHMS for a in config.signingalgorithms)
        if config.jwks and not config.jwks.startswith(("http://", "https://")):
            try:
                trusted.update(parse_jwks(json.loads(Path(config.jwks).read_text()), allow_hmac))
            except (OSError, ValueError) as exc:
                raise keys.UnusableKey(f"auth.token.jwks {config.jwks}: {exc}") from None
        verifier = cls(config, roots, trusted)
        if not roots and not trusted and not verifier._jwks_url:
            raise keys.UnusableKey("auth.token needs rootcertbundle or jwks: token auth requires at least one signing key")
        return verifier

    # ------------------------------------------------------------------ key lookup

    async def _refresh_jwks(self) -> None:
        if not self._jwks_url:
            return
        async with self._jwks_lock:
            if time.monotonic() - self._jwks_fetched < JWKS_REFRESH_MIN_INTERVAL:
                return
            self._jwks_fetched = time.monotonic()
            allow_hmac = any(a in keys.HMAC_ALGORITHMS for a in self.algorithms)
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.get(self._jwks_url) as resp:
                        if resp.status != 200:
                            raise ValueError(f"HTTP {resp.status}")
                        body = await resp.content.read(MAX_JWKS_BYTES + 1)
                        if len(body) > MAX_JWKS_BYTES:
                            raise ValueError("JWKS larger than 1 MiB")
                self._jwks_keys = parse_jwks(json.loads(body), allow_hmac)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                log.warning("cannot fetch JWKS from %s: %s", self._jwks_url, exc)

    def _lookup(self, kid: str) -> keys.VerifyKey | None:
        return self._keys.get(kid) or self._jwks_keys.get(kid)

    async def _key_for(self, header: Mapping[str, Any]) -> keys.VerifyKey:
        if "x5c" in header and self.roots:
            # with no bundle configured an x5c proves nothing; the kid below must then be trusted
            try:
                return keys.verify_chain(header["x5c"], self.roots)
            except keys.UnusableKey as exc:
                raise InvalidToken(str(exc)) from None
        if "jwk" in header:
            jwk = header["jwk"]
            if not isinstance(jwk, Mapping):
                raise InvalidToken("malformed jwk header")
            if "x5c" in jwk and self.roots:
                try:
                    return keys.verify_chain(jwk["x5c"], self.roots)
                except keys.UnusableKey as exc:
                    raise InvalidToken(str(exc)) from None
            try:
                embedded = jwt.PyJWK.from_dict(dict(jwk)).key
                tp = keys.thumbprint(embedded)
            except Exception:  # any unparsable key is simply untrusted
                raise InvalidToken("unusable jwk header") from None
            key = self._lookup(tp)
            if key is None:
                raise InvalidToken("token signed by an untrusted embedded jwk")
            return key  # the trusted copy, never the attacker-supplied one
        kid = header.get("kid")
        if isinstance(kid, str) and kid and len(kid) <= 256:
            key = self._lookup(kid)
            if key is None and self._jwks_url:
                await self._refresh_jwks()
                key = self._lookup(kid)
            if key is None:
                raise InvalidToken("token signed by an unknown key id")
            return key
        raise InvalidToken("token names no key (x5c, jwk or kid)")

    # ------------------------------------------------------------------ verification

    async def verify(self, token: str) -> AccessSet:
        """The access a valid token grants; InvalidToken otherwise."""
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None:
            grants, not_before, until = hit
            if not_before - LEEWAY <= now < until:
                self._cache.move_to_end(token)
                return grants
            del self._cache[token]
        grants, claims = await self._verify(token)
        exp = claims.get("exp")
        nbf = claims.get("nbf")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            until = min(float(exp) + LEEWAY, now + CACHE_SECONDS)
            not_before = float(nbf) if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) else 0.0
            self._cache[token] = (grants, not_before, until)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return grants

    async def _verify(self, token: str) -> tuple[AccessSet, dict[str, Any]]:
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_RE.match(token):
            raise InvalidToken("malformed token")
        try:
            header = json.loads(_b64decode(token.split(".", 1)[0]))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidToken("malformed token header") from None
        if not isinstance(header, dict):
            raise InvalidToken("malformed token header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms or alg.lower() == "none":
            raise InvalidToken(f"signing algorithm {str(alg)[:20]!r} not allowed")
        if "crit" in header:
            raise InvalidToken("critical header parameters are not supported")
        key = await self._key_for(header)
        if alg not in keys.algorithms_for(key):
            raise InvalidToken(f"algorithm {alg} does not fit the signing key")
        try:
            claims = jwt.decode(
                token,
                key=key,  # type: ignore[arg-type]
                algorithms=[alg],
                audience=self.config.service,
                issuer=self.config.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {type(exc).__name__}") from None
        except (ValueError, TypeError):
            raise InvalidToken("token rejected") from None
        if claims.get("token_use") == "refresh":
            raise InvalidToken("a refresh token is not an access token")
        try:
            return AccessSet.from_claim(claims.get("access"), subject=str(claims.get("sub", ""))[:256]), claims
        except ScopeError as exc:
            raise InvalidToken(f"malformed access claim: {exc}") from None
