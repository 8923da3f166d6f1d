"""TLS for the registry's listener, from distribution's ``http.tls`` keys.

:func:`server_context` builds the one :class:`ssl.SSLContext` the server uses: the minimum
version (``minimumtls``), the TLS 1.0-1.2 cipher suites (``ciphersuites``, distribution's Go names
mapped to OpenSSL's; distribution's default list when empty), client certificates (``clientcas``
and ``clientauth``) and the certificate and key. Only HTTP/1.1 is offered in ALPN. Any file that
cannot be used is a :class:`~registry.config.ConfigError` naming the key, so ``check-config``
catches it. Certificates from ACME (``letsencrypt``) are :mod:`registry.tls.letsencrypt`'s.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
from typing import Any

from ..config import ConfigError, TLSConfig

log = logging.getLogger(__name__)

#: distribution's Go cipher suite names (2.8 and 3.x) -> OpenSSL's names
GO_CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    # TLS 1.3: not configurable (in Go as in OpenSSL through Python); always all three
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}

#: distribution's default list when ``ciphersuites`` is empty (its TLS 1.2 part)
DEFAULT_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
)

TLS_VERSIONS = {
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}

#: distribution's ``clientauth`` modes -> what Python's ssl can do (it cannot accept a client
#: certificate without verifying it, so the two "unverified" modes verify: stricter, never weaker)
CLIENT_AUTH = {
    "request-client-cert": ssl.CERT_OPTIONAL,
    "require-any-client-cert": ssl.CERT_REQUIRED,
    "verify-client-cert-if-given": ssl.CERT_OPTIONAL,
    "require-and-verify-client-cert": ssl.CERT_REQUIRED,
}
STRICTER_CLIENT_AUTH = ("request-client-cert", "require-any-client-cert")


def openssl_ciphers(names: list[str] | tuple[str, ...]) -> list[str]:
    """The OpenSSL names of the TLS 1.0-1.2 suites among distribution's Go ``names``."""
    return [GO_CIPHER_SUITES[n] for n in names if GO_CIPHER_SUITES.get(n)]


def server_context(tls: TLSConfig, *, with_certificate: bool = True) -> ssl.SSLContext:
    """The listener's context. ``with_certificate=False`` leaves the certificate out (ACME
    supplies it per server name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    minimum = TLS_VERSIONS[tls.minimumtls]
    if minimum < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 refuses TLS 1.0 and 1.1 at its default security level: stricter than asked
        minimum = ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = minimum
    if minimum <= ssl.TLSVersion.TLSv1_2:
        suites = openssl_ciphers(tls.ciphersuites or DEFAULT_CIPHER_SUITES)
        if not suites:  # only TLS 1.3 names listed: as in Go, TLS 1.2 then has no suite at all
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        else:
            available = [s for s in suites if _cipher_available(s)]
            if not available:
                raise ConfigError("http.tls.ciphersuites: none of the listed cipher suites is available "
                                  f"in this OpenSSL ({ssl.OPENSSL_VERSION})")
            ctx.set_ciphers(":".join(available))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    if with_certificate:
        load_certificate(ctx, tls.certificate, tls.key)
    if tls.clientcas:
        for ca in tls.clientcas:
            try:
                ctx.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"http.tls.clientcas: cannot use {ca}: {_reason(exc)}") from None
        ctx.verify_mode = CLIENT_AUTH[tls.clientauth or "require-and-verify-client-cert"]
    return ctx


def load_certificate(ctx: ssl.SSLContext, certificate: str, key: str) -> None:
    """Load the pair into ``ctx``; a ConfigError when a file is missing, unreadable or the key does
    not match; a warning when the certificate has expired or expires within 14 days."""
    for name, path in (("certificate", certificate), ("key", key)):
        if not os.path.isfile(path):
            raise ConfigError(f"http.tls.{name}: {path} does not exist or is not a file")
    try:
        ctx.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"http.tls: cannot use certificate {certificate} with key {key}: {_reason(exc)}") from None
    expires = certificate_expiry(certificate)
    if expires is not None:
        left = expires - dt.datetime.now(dt.timezone.utc)
        if left.total_seconds() <= 0:
            log.warning("http.tls.certificate %s expired on %s", certificate, expires.date())
        elif left < dt.timedelta(days=14):
            log.warning("http.tls.certificate %s expires on %s", certificate, expires.date())


def certificate_expiry(path: str) -> dt.datetime | None:
    """The ``notAfter`` of the first certificate in ``path`` (None if it cannot be read)."""
    from cryptography import x509

    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificates(f.read())[0]
    except (OSError, ValueError, IndexError):
        return None
    return cert.not_valid_after_utc


def summary(tls: TLSConfig | None) -> str:
    """One line for the start-up summary: what TLS the listener speaks."""
    if tls is None:
        return "off (plain HTTP)"
    parts = [f"minimum {tls.minimumtls}"]
    if tls.letsencrypt is not None:
        parts.insert(0, f"ACME certificates for {', '.join(tls.letsencrypt.hosts)} from {tls.letsencrypt.directoryurl}")
    else:
        parts.insert(0, f"certificate {tls.certificate}")
    if tls.ciphersuites:
        parts.append(f"{len(tls.ciphersuites)} cipher suites")
    if tls.clientcas:
        parts.append(f"client certificates: {tls.clientauth or 'require-and-verify-client-cert'} "
                     f"({len(tls.clientcas)} CA file{'s' if len(tls.clientcas) > 1 else ''})")
    return ", ".join(parts)


def _cipher_available(name: str) -> bool:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.set_ciphers(name)
    except ssl.SSLError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    reason: Any = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
    return " ".join(str(reason).split())
