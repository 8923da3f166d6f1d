"""The built-in token server: Docker token ``GET``, OAuth2 ``POST``, and the JWKS.

``GET <path>?service=&scope=...&account=&offline_token=true&client_id=`` with Basic credentials or
anonymously; ``POST <path>`` form with ``grant_type=password|refresh_token`` and ``client_id``.
A token grants the intersection of what was asked and what the ACL rules allow: a partial or empty
grant is a token, not an error. Failed logins are limited per address and account (see
:mod:`registry.auth.ratelimit`). Credentials
and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import jwt
from aiohttp import web

from . import acl, keys
from .config import TokenServerConfig
from .htpasswd import USERNAME_RE, Htpasswd, parse_basic
from .ratelimit import LoginLimiter, client_address
from .refresh import RefreshStore, SharedRefreshStore
from .scope import Scope, ScopeError, format_scopes, parse_scopes, to_claim

log = logging.getLogger(__name__)

TOKEN_SERVER_KEY: web.AppKey["TokenServer"] = web.AppKey("tokenserver", object)  # type: ignore[arg-type]
MAX_FORM_BYTES = 16 * 1024
_CLIENT_ID_MAX = 128


class TokenError(Exception):
    """An answer other than a token: status, OAuth2 error code, description (safe to show)."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def response(self) -> web.Response:
        code = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS",
                503: "UNAVAILABLE"}.get(self.status, "UNSUPPORTED")
        body = {
            "error": self.error,
            "error_description": self.description,
            "errors": [{"code": code, "message": self.description}],
        }
        return web.json_response(body, status=self.status, headers={"Cache-Control": "no-store", **self.headers})


class TokenSigner:
    """Signs access tokens with the configured key; ``kid`` is its RFC 7638 thumbprint, plus ``x5c``."""

    def __init__(self, key: keys.PrivateKey, chain: list[Any], issuer: str, lifetime: float) -> None:
        self.key = key
        self.algorithm = keys.signing_algorithm(key)
        self.public_key = key.public_key()
        self.kid = keys.thumbprint(self.public_key)  # type: ignore[arg-type]
        self.x5c = [keys.cert_der_b64(c) for c in chain]
        self.issuer = issuer
        self.lifetime = int(lifetime)

    @classmethod
    def from_config(cls, config: TokenServerConfig) -> "TokenSigner":
        key = keys.load_private_key(config.key)
        chain = keys.load_certificates(config.certificate) if config.certificate else []
        if chain and not keys.same_key(chain[0].public_key(), key.public_key()):
            raise keys.UnusableKey(f"tokenserver.certificate: the first certificate in {config.certificate} "
                                 f"is not for the key in {config.key}")
        return cls(key, chain, config.issuer, config.expiration)

    def sign(self, subject: str, audience: str, scopes: list[Scope], now: float | None = None) -> tuple[str, float]:
        now = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + self.lifetime,
            "nbf": now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": to_claim(scopes),
        }
        headers: dict[str, Any] = {"typ": "JWT", "kid": self.kid}
        if self.x5c:
            headers["x5c"] = self.x5c
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers), now  # type: ignore[arg-type]

    def jwks(self) -> dict[str, Any]:
        jwk = dict(keys.public_jwk(self.public_key), kid=self.kid, use="sig", alg=self.algorithm)  # type: ignore[arg-type]
        if self.x5c:
            jwk["x5c"] = self.x5c
        return {"keys": [jwk]}

    def trusted_keys(self) -> dict[str, keys.VerifyKey]:
        return {self.kid: self.public_key}  # type: ignore[dict-item]


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenServer:
    def __init__(self, config: TokenServerConfig, signer: TokenSigner | None = None, state: Any = None) -> None:
        """``state``: the shared :mod:`registry.state` backend; with Redis the failed-login
        counters and the refresh tokens live there, one for every instance."""
        self.config = config
        self.signer = signer or TokenSigner.from_config(config)
        self.users = Htpasswd(config.users)
        self.limiter = LoginLimiter(config.ratelimit_failures, config.ratelimit_window,
                                    address_failures=config.ratelimit_addressfailures,
                                    account_failures=config.ratelimit_accountfailures, state=state)
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in config.trustedproxies]
        self.refresh: RefreshStore | SharedRefreshStore | None = None
        if config.refreshtokens_path and state is not None and state.shared:
            self.refresh = SharedRefreshStore(state, config.refreshtokens_expiration)
            log.info("refresh tokens are kept in Redis (shared by every instance), not in %s",
                     config.refreshtokens_path)
        elif config.refreshtokens_path:
            self.refresh = RefreshStore(config.refreshtokens_path, config.refreshtokens_expiration)
        else:
            log.info("tokenserver.refreshtokens.path is not set: no refresh tokens will be issued")

    async def _refresh_call(self, method: str, *args: Any) -> Any:
        """A refresh-store call: the file store blocks (worker thread), the shared one is async;
        the shared state away is a 503 (a revoked token must never pass unchecked)."""
        from ..state import StateUnavailable

        assert self.refresh is not None
        fn = getattr(self.refresh, method)
        if getattr(self.refresh, "asynchronous", False):
            try:
                return await fn(*args)
            except StateUnavailable:
                raise TokenError(503, "temporarily_unavailable", "refresh tokens are unavailable; retry shortly",
                                 headers={"Retry-After": "2"}) from None
        return await asyncio.to_thread(fn, *args)

    # ------------------------------------------------------------------ shared steps

    def _service(self, value: str | None) -> str:
        if not value:
            return self.config.services[0]
        if value not in self.config.services:
            raise TokenError(400, "invalid_request", "unknown service")
        return value

    def _scopes(self, values: list[str]) -> list[Scope]:
        try:
            return parse_scopes(values)
        except ScopeError as exc:
            raise TokenError(400, "invalid_scope", str(exc)) from None

    def _client_id(self, value: str | None, required: bool) -> str:
        value = value or ""
        if required and not value:
            raise TokenError(400, "invalid_request", "client_id is required")
        if len(value) > _CLIENT_ID_MAX or not value.isprintable():
            raise TokenError(400, "invalid_request", "invalid client_id")
        return value

    def _unauthorized(self, description: str) -> TokenError:
        return TokenError(401, "invalid_grant", description,
                          headers={"WWW-Authenticate": f'Basic realm="{self.config.issuer}"'})

    def _address(self, request: web.Request) -> str:
        """The client's address: the peer, or behind trusted proxies the last untrusted X-Forwarded-For hop."""
        return client_address(request, self._proxies)

    async def _login(self, request: web.Request, user: str, password: str) -> str:
        """The account when ``user``/``password`` are right; failures limited per address and account."""
        if not USERNAME_RE.match(user):
            raise self._unauthorized("invalid username or password")
        address = self._address(request)
        wait = await self.limiter.retry_after(user, address)
        if wait > 0:
            raise TokenError(429, "slow_down", "too many failed logins; try again later",
                             headers={"Retry-After": str(int(wait) + 1)})
        if not await self.users.verify(user, password):
            await self.limiter.failed(user, address)
            log.info("failed login for account %r from %s", user, address)
            raise self._unauthorized("invalid username or password")
        await self.limiter.succeeded(user, address)
        return user

    async def login(self, request: web.Request, user: str, password: str) -> str:
        """Check a user's password as a token request would (same failure limits); the web UI's
        login form. Raises :class:`TokenError` (401, or 429 with ``Retry-After``)."""
        return await self._login(request, user, password)

    def _grant(self, account: str | None, service: str, asked: list[Scope]) -> tuple[str, float, list[Scope]]:
        granted = acl.grant(self.config.rules, account, asked)
        token, issued = self.signer.sign(account or "", service, granted)
        return token, issued, granted

    async def _issue_refresh(self, account: str, client_id: str, service: str) -> str | None:
        if self.refresh is None:
            return None
        return await self._refresh_call("issue", account, client_id, service)

    # ------------------------------------------------------------------ handlers

    async def handle_get(self, request: web.Request) -> web.Response:
        try:
            return await self._get(request)
        except TokenError as err:
            return err.response()

    async def _get(self, request: web.Request) -> web.Response:
        q = request.query
        service = self._service(q.get("service"))
        asked = self._scopes(q.getall("scope", []))
        client_id = self._client_id(q.get("client_id"), required=False)
        header = request.headers.get("Authorization", "")
        account: str | None = None
        if header:
            creds = parse_basic(header)
            if creds is None:
                raise self._unauthorized("malformed Basic credentials")
            account = await self._login(request, *creds)
            claimed = q.get("account")
            if claimed and claimed != account:
                raise self._unauthorized("account does not match the credentials")
        token, issued, granted = self._grant(account, service, asked)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.signer.lifetime,
            "issued_at": _rfc3339(issued),
        }
        if q.get("offline_token", "").lower() == "true" and account is not None:
            refresh = await self._issue_refresh(account, client_id, service)
            if refresh:
                body["refresh_token"] = refresh
        log.info("token issued: account=%r service=%r scope=%r", account or "", service, format_scopes(granted))
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def handle_post(self, request: web.Request) -> web.Response:
        try:
            return await self._post(request)
        except TokenError as err:
            return err.response()

    async def _form(self, request: web.Request) -> dict[str, str]:
        if request.content_type != "application/x-www-form-urlencoded":
            raise TokenError(400, "invalid_request", "expected an application/x-www-form-urlencoded body")
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            raise TokenError(400, "invalid_request", "request body too large")
        body = await request.content.read(MAX_FORM_BYTES + 1)
        if len(body) > MAX_FORM_BYTES:
            raise TokenError(400, "invalid_request", "request body too large")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=64)
        except (UnicodeDecodeError, ValueError):
            raise TokenError(400, "invalid_request", "malformed form body") from None
        form: dict[str, str] = {}
        for key, value in pairs:
            if key in form and key != "scope":
                raise TokenError(400, "invalid_request", f"parameter {key} given twice")
            form[key] = f"{form[key]} {value}" if key in form else value
        return form

    async def _post(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        service = self._service(form.get("service"))
        client_id = self._client_id(form.get("client_id"), required=True)
        asked = self._scopes([form.get("scope", "")])
        grant_type = form.get("grant_type", "")
        refresh: str | None = None
        if grant_type == "password":
            account = await self._login(request, form.get("username", ""), form.get("password", ""))
            if form.get("access_type") == "offline":
                refresh = await self._issue_refresh(account, client_id, service)
        elif grant_type == "refresh_token":
            account = await self._refreshed_account(request, form.get("refresh_token", ""), client_id, service)
            refresh = form.get("refresh_token")
        else:
            raise TokenError(400, "unsupported_grant_type", "grant_type must be password or refresh_token")
        token, issued, granted = self._grant(account, service, asked)
        body: dict[str, Any] = {
            "access_token": token,
            "scope": format_scopes(granted),
            "expires_in": self.signer.lifetime,
            "issued_at": _rfc3339(issued),
        }
        if refresh:
            body["refresh_token"] = refresh
        log.info("token issued: account=%r service=%r scope=%r grant=%s", account, service,
                 body["scope"], grant_type)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _refreshed_account(self, request: web.Request, token: str, client_id: str, service: str) -> str:
        address = self._address(request)
        wait = await self.limiter.retry_after(None, address)
        if wait > 0:
            raise TokenError(429, "slow_down", "too many failed attempts; try again later",
                             headers={"Retry-After": str(int(wait) + 1)})
        record = await self._refresh_call("lookup", token) if (self.refresh and token) else None
        if (
            record is None
            or not secrets.compare_digest(record.client_id.encode(), client_id.encode())
            or record.service != service
            or not self.users.exists(record.account)
        ):
            await self.limiter.failed(None, address)
            raise self._unauthorized("invalid, expired or revoked refresh token")
        return record.account

    async def handle_jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.signer.jwks(), headers={"Cache-Control": "max-age=300"})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", self.config.path, self.handle_get)
        app.router.add_route("POST", self.config.path, self.handle_post)
        app.router.add_route("GET", self.config.jwkspath, self.handle_jwks)


def token_app(config: TokenServerConfig) -> web.Application:
    """A stand-alone application serving only the token server (``registry auth serve-token``)."""
    app = web.Application(client_max_size=MAX_FORM_BYTES)
    server = TokenServer(config)
    app[TOKEN_SERVER_KEY] = server
    server.add_routes(app)
    return app
