"""Authentication and authorization: htpasswd or bearer tokens on the registry, and our token server.

:func:`setup_auth` is the one hook :func:`registry.app.create_app` calls: it adds the auth middleware
when ``auth:`` is configured and mounts the token server and its JWKS when ``tokenserver:`` is.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..config import ConfigError
from .config import AuthConfig, TokenServerConfig, load

__all__ = ["AUTHORIZER_KEY", "AuthConfig", "TokenServerConfig", "setup_auth", "load", "validate"]

#: the registry's authorizer (``BasicAuth`` or ``BearerAuth``) when ``auth:`` is configured; the web
#: UI reuses its users and login limits
AUTHORIZER_KEY: web.AppKey[Any] = web.AppKey("authorizer", object)


def validate(config: Any) -> None:
    """Load everything auth needs (config, keys, certificates, users) once; ConfigError if unusable.

    The CLI calls this before serving, so ``check-config`` and ``serve`` fail with one clear line.
    """
    setup_auth(web.Application(), config)


def setup_auth(app: web.Application, config: Any) -> None:
    """Add auth to ``app`` (before it starts) from ``config.auth`` and ``config.tokenserver``."""
    from . import keys
    from .bearer import TokenVerifier
    from .htpasswd import HtpasswdError
    from .refresh import RefreshStoreError
    from .middleware import BasicAuth, BearerAuth, make_middleware
    from .tokenserver import TOKEN_SERVER_KEY, TokenServer

    auth_config, server_config = load(getattr(config, "auth", {}), getattr(config, "tokenserver", {}))
    prefix = getattr(getattr(config, "http", None), "prefix", "/") or "/"
    from ..app import STATE_KEY

    state = app.get(STATE_KEY)  # shared counters and refresh tokens when it is Redis
    try:
        server = TokenServer(server_config, state=state) if server_config is not None else None
        authorizer: BasicAuth | BearerAuth | None = None
        if auth_config.htpasswd is not None:
            authorizer = BasicAuth(auth_config.htpasswd, state=state)
        elif auth_config.token is not None:
            # Our own token server's key is trusted without a bundle when both run in this process.
            own = server.signer.trusted_keys() if server is not None else {}
            verifier = TokenVerifier.from_config(auth_config.token, extra=own)
            authorizer = BearerAuth(auth_config.token, verifier)
    except (keys.UnusableKey, HtpasswdError, RefreshStoreError) as exc:
        raise ConfigError(str(exc)) from None
    _warn_inconsistent(auth_config, server_config)
    if server is not None:
        app[TOKEN_SERVER_KEY] = server
        server.add_routes(app)
    if authorizer is not None:
        app[AUTHORIZER_KEY] = authorizer
        app.middlewares.append(make_middleware(authorizer, prefix))


def _warn_inconsistent(auth_config: AuthConfig, server_config: TokenServerConfig | None) -> None:
    """Combinations that run but are probably not what the operator meant."""
    import logging

    log = logging.getLogger(__name__)
    if server_config is None:
        return
    if auth_config.token is None:
        log.warning("tokenserver is enabled but auth.token is not: this registry itself accepts every request"
                    if auth_config.htpasswd is None else
                    "tokenserver is enabled but the registry uses auth.htpasswd: its tokens are not accepted here")
        return
    if auth_config.token.issuer != server_config.issuer:
        log.warning("auth.token.issuer %r differs from tokenserver.issuer %r: the registry will refuse "
                    "the tokens this process issues", auth_config.token.issuer, server_config.issuer)
    if auth_config.token.service not in server_config.services:
        log.warning("auth.token.service %r is not among tokenserver.service %r", auth_config.token.service,
                    list(server_config.services))
