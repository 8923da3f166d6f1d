"""Certificates from an ACME CA (RFC 8555) for ``http.tls.letsencrypt``, as distribution does it.

distribution (autocert) answers the CA's **TLS-ALPN-01** challenge (RFC 8737) on its own TLS
listener, so nothing but the registry's port must be reachable; so does this manager:

- the listener's context picks, per connection, by SNI: a pending challenge's certificate
  (offering only the ``acme-tls/1`` protocol) while the CA validates, else the host's certificate;
  a name outside ``hosts`` gets a throw-away self-signed certificate no client trusts;
- one background task obtains a certificate for each of ``hosts`` that has none or whose
  certificate expires within 30 days (new order, challenge, finalize, download), with the account
  and protocol of the well-kept ``acme`` client library (certbot's) and an EC P-256 key;
- ``cachefile`` is a directory, in autocert's layout: ``acme_account+key`` (the account key) and a
  file per host holding its key and certificate chain (PEM), written atomically with mode 0600.

Several workers or processes sharing the cache directory cooperate: one holds the directory's lock
and talks to the CA, publishing the challenge certificate in the directory for the others to
serve; the others pick up the new certificate from the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

from ..config import ConfigError, LetsEncryptConfig, TLSConfig
from . import certificate_expiry, server_context

log = logging.getLogger(__name__)

ACCOUNT_KEY_FILE = "acme_account+key"
CHALLENGE_SUFFIX = "+tls-alpn-01"
LOCK_FILE = ".lock"
ALPN_ACME = "acme-tls/1"
#: RFC 8737's acmeIdentifier extension
ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31"
RENEW_BEFORE = dt.timedelta(days=30)
#: how long one order may take (pending authorizations, finalization)
ORDER_DEADLINE = dt.timedelta(minutes=3)


class CertificateManager:
    """The listener's SSL context for ACME hosts, and the task that keeps their certificates."""

    def __init__(self, tls: TLSConfig) -> None:
        assert tls.letsencrypt is not None
        self.tls = tls
        self.acme: LetsEncryptConfig = tls.letsencrypt
        self.directory = Path(self.acme.cachefile)
        self.hosts = [h.lower().rstrip(".") for h in self.acme.hosts]
        require_client()
        check_cache_directory(self.acme.cachefile)
        self.context = server_context(tls, with_certificate=False)
        _load_pair(self.context, *_self_signed("unknown.invalid"))  # for names outside hosts
        self.context.sni_callback = self._select
        self._host_contexts: dict[str, ssl.SSLContext] = {}
        self._host_mtimes: dict[str, float] = {}
        self._challenges: dict[str, ssl.SSLContext] = {}
        self._task: asyncio.Task[None] | None = None
        self.reload()

    # --- serving -------------------------------------------------------------------------

    def _select(self, sslobj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        host = (name or "").lower().rstrip(".")
        if host not in self.hosts:
            return None
        challenge = self._challenges.get(host) or self._challenge_from_directory(host)
        if challenge is not None:
            sslobj.context = challenge
            return None
        ctx = self._host_contexts.get(host)
        if ctx is not None:
            sslobj.context = ctx
        return None

    def _challenge_from_directory(self, host: str) -> ssl.SSLContext | None:
        path = self.directory / (host + CHALLENGE_SUFFIX)
        try:
            pem = path.read_bytes()
        except OSError:
            return None
        return _challenge_context(pem, pem)

    def reload(self) -> None:
        """Load each host's certificate from the cache directory when it changed."""
        for host in self.hosts:
            path = self.directory / host
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if self._host_mtimes.get(host) == mtime:
                continue
            ctx = server_context(self.tls, with_certificate=False)
            try:
                _load_pair(ctx, path, path)
            except ssl.SSLError as exc:
                log.warning("letsencrypt: the cached certificate of %s is unusable (%s); getting a new one", host, exc)
                continue
            self._host_contexts[host] = ctx
            self._host_mtimes[host] = mtime
            log.info("letsencrypt: serving the certificate of %s (valid until %s)", host,
                     _expiry_text(certificate_expiry(str(path))))

    def needs_certificate(self, host: str) -> bool:
        expires = certificate_expiry(str(self.directory / host))
        return expires is None or expires - dt.datetime.now(dt.timezone.utc) < RENEW_BEFORE

    # --- obtaining -----------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._maintain(), name="letsencrypt")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _maintain(self) -> None:
        failures = 0
        while True:
            self.reload()
            pending = [h for h in self.hosts if self.needs_certificate(h)]
            for host in pending:
                try:
                    obtained = await asyncio.to_thread(self._obtain_locked, host)
                except Exception as exc:  # the CA or the network: keep serving, try again later
                    failures += 1
                    log.warning("letsencrypt: could not get a certificate for %s from %s: %s", host,
                                self.acme.directoryurl, " ".join(str(exc).split()) or type(exc).__name__)
                else:
                    if obtained:
                        failures = 0
                    self.reload()
            still = [h for h in self.hosts if self.needs_certificate(h)]
            # missing certificates: retry soon (another process may be getting them), backing off
            # on failures up to an hour; otherwise look again twice a day
            delay = min(5 * 2 ** failures, 3600) if still else 12 * 3600
            await asyncio.sleep(delay)

    def _obtain_locked(self, host: str) -> bool:
        """Get ``host``'s certificate unless another process holds the directory's lock."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / LOCK_FILE, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                if not self.needs_certificate(host):  # another process just got it
                    return False
                self._obtain(host)
                return True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _obtain(self, host: str) -> None:
        import josepy as jose
        from acme import client, crypto_util, errors, messages
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        account_key = _account_key(self.directory / ACCOUNT_KEY_FILE)
        jwk = jose.JWKEC(key=account_key)
        net = client.ClientNetwork(jwk, alg=jose.ES256, user_agent="pyregistry")
        acme = client.ClientV2(client.ClientV2.get_directory(self.acme.directoryurl, net), net=net)
        registration = messages.NewRegistration.from_data(email=self.acme.email or None,
                                                          terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as existing:  # the key's account exists: use it
            net.account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        order = acme.new_order(crypto_util.make_csr(key_pem, [host]))
        published: list[str] = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                name = authz.body.identifier.value
                challenge = next((c for c in authz.body.challenges if c.chall.typ == TLSALPN01.typ), None)
                if challenge is None:
                    raise RuntimeError(f"the CA offers no tls-alpn-01 challenge for {name}")
                key_authorization = challenge.chall.key_authorization(jwk)
                self._publish_challenge(name, key_authorization)
                published.append(name)
                acme.answer_challenge(challenge, challenge.chall.response(jwk))
            deadline = dt.datetime.now() + ORDER_DEADLINE
            order = acme.poll_and_finalize(order, deadline=deadline)
        finally:
            for name in published:
                self._challenges.pop(name, None)
                with contextlib.suppress(OSError):
                    (self.directory / (name + CHALLENGE_SUFFIX)).unlink()
        _write_private(self.directory / host, key_pem + order.fullchain_pem.encode())
        log.info("letsencrypt: obtained a certificate for %s from %s", host, self.acme.directoryurl)

    def _publish_challenge(self, host: str, key_authorization: str) -> None:
        cert_pem, key_pem = _challenge_certificate(host, key_authorization)
        pem = key_pem + cert_pem
        _write_private(self.directory / (host + CHALLENGE_SUFFIX), pem)
        ctx = _challenge_context(pem, pem)
        if ctx is not None:
            self._challenges[host] = ctx


# --------------------------------------------------------------------------- the challenge (RFC 8737)


def _register_challenge() -> Any:
    """tls-alpn-01 as a challenge type of the acme library (which no longer ships it)."""
    from acme import challenges

    @challenges.ChallengeResponse.register
    class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
        """The response: an empty object (RFC 8555 7.5.1); the proof is the served certificate."""

        typ = "tls-alpn-01"

    @challenges.Challenge.register
    class TLSALPN01Challenge(challenges.KeyAuthorizationChallenge):
        response_cls = TLSALPN01Response
        typ = response_cls.typ

        def validation(self, account_key: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("served by the CertificateManager's SNI callback")

    return TLSALPN01Challenge


try:
    TLSALPN01 = _register_challenge()
except ImportError:  # without the acme extra; require_client() says so
    TLSALPN01 = None


def _challenge_certificate(host: str, key_authorization: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``host`` carrying the critical acmeIdentifier extension:
    the SHA-256 of the key authorization as a DER OCTET STRING."""
    from cryptography import x509

    digest = hashlib.sha256(key_authorization.encode()).digest()
    extension = x509.UnrecognizedExtension(x509.ObjectIdentifier(ACME_IDENTIFIER_OID), b"\x04\x20" + digest)
    return _self_signed(host, extension)


def _challenge_context(certfile_pem: bytes, keyfile_pem: bytes) -> ssl.SSLContext | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ALPN_ACME])
    try:
        _load_pair(ctx, certfile_pem, keyfile_pem)
    except ssl.SSLError:
        return None
    return ctx


# --------------------------------------------------------------------------- keys and files


def require_client() -> None:
    """The ACME client library must be installed (the ``acme`` extra)."""
    try:
        import acme  # noqa: F401
        import josepy  # noqa: F401
    except ImportError:
        raise ConfigError("http.tls.letsencrypt needs the acme and josepy packages: "
                          "pip install 'pyregistry[acme]'") from None


def check_cache_directory(path: str) -> None:
    """``cachefile`` must be a directory (distribution 3) or creatable; distribution 2.8's single
    cache file is refused with a line saying so. Writes nothing."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"http.tls.letsencrypt.cachefile: {path} is a file (distribution 2.8's format); "
                          "this registry, like distribution 3, keeps a directory there: give a new path")
    parent = p if p.exists() else next((a for a in p.absolute().parents if a.exists()), None)
    if parent is None or not os.access(parent, os.W_OK):
        raise ConfigError(f"http.tls.letsencrypt.cachefile: cannot create or write {path}")


def _account_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
        return key


def _self_signed(host: str, *extensions: Any) -> tuple[bytes, bytes]:
    """A throw-away EC certificate and key (PEM) for ``host``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=7))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=True)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


def _load_pair(ctx: ssl.SSLContext, cert: bytes | Path, key: bytes | Path) -> None:
    """``load_cert_chain`` from files or from PEM bytes (through a private temporary file)."""
    if isinstance(cert, Path) and isinstance(key, Path):
        ctx.load_cert_chain(cert, key)
        return
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as f:
        f.write(cert if isinstance(cert, bytes) else Path(cert).read_bytes())
        if key != cert:
            f.write(key if isinstance(key, bytes) else Path(key).read_bytes())
        f.flush()
        ctx.load_cert_chain(f.name)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _expiry_text(expires: dt.datetime | None) -> str:
    return expires.strftime("%Y-%m-%d %H:%M UTC") if expires else "unknown"
