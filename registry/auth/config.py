"""Typed ``auth:`` (distribution's keys) and ``tokenserver:`` (our built-in token server) config.

``auth:`` holds at most one of ``htpasswd: {realm, path}`` or ``token: {realm, service, issuer,
rootcertbundle, jwks, signingalgorithms, autoredirect, autoredirectpath}``, exactly as in
distribution, plus our ``insufficientscopestatus`` (auto, 401 or 403). ``tokenserver:`` configures the token server
this process serves (and ``registry auth serve-token`` runs alone). Both are validated once, here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any

from ..config import ConfigError, Section
from .keys import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS
from .scope import KNOWN_ACTIONS

SUPPORTED_SCHEMES = ("htpasswd", "token")
DEFAULT_ALGORITHMS = ASYMMETRIC_ALGORITHMS
DEFAULT_AUTOREDIRECT_PATH = "/auth/token"


def _string(s: Section, name: str, required: bool = False, default: str = "") -> str:
    value = s.raw(name)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{s.where(name)} is required")
        return default
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise s.bad(name, "a string", value)
    return str(value)


def _int(s: Section, name: str, default: int, minimum: int) -> int:
    value = s.raw(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise s.bad(name, f"an integer of at least {minimum}", value)
    return value


def _path(value: str, key: str) -> str:
    if not value.startswith("/") or "//" in value or any(c in value for c in "?#{} "):
        raise ConfigError(f"{key}: expected an absolute URL path like /auth/token, got {value!r}")
    return value


# --------------------------------------------------------------------------- auth: (resource server)


@dataclasses.dataclass(frozen=True)
class HtpasswdConfig:
    realm: str
    path: str


@dataclasses.dataclass(frozen=True)
class TokenConfig:
    realm: str
    service: str
    issuer: str
    rootcertbundle: str = ""
    #: a JWKS file path, or an http(s) URL re-fetched when a token names an unknown ``kid``
    jwks: str = ""
    signingalgorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    autoredirect: bool = False
    autoredirectpath: str = DEFAULT_AUTOREDIRECT_PATH
    #: status for a valid token lacking scope: None ("auto", see :func:`insufficient_scope_status`),
    #: 401 (always, as distribution) or 403 (always, RFC 6750 §3.1)
    insufficientscopestatus: int | None = None


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    htpasswd: HtpasswdConfig | None = None
    token: TokenConfig | None = None

    @property
    def enabled(self) -> bool:
        return self.htpasswd is not None or self.token is not None

    @classmethod
    def from_dict(cls, raw: Any) -> "AuthConfig":
        """Type distribution's ``auth:`` block; ConfigError (a ValueError) names the bad key."""
        s = Section(_string_form(raw), "auth")
        config = cls.from_section(s)
        s.finish()
        return config

    @classmethod
    def from_section(cls, s: Section) -> "AuthConfig":
        for name in s.keys():
            if name not in SUPPORTED_SCHEMES:  # a scheme we cannot check would let everyone in
                raise ConfigError(f"{s.where(name)}: unsupported auth scheme (supported: htpasswd, token)")
        if len(s.keys()) > 1:
            raise ConfigError(f"auth: more than one auth scheme configured: {', '.join(sorted(s.keys()))}")
        if "htpasswd" in s.keys():
            h = s.section("htpasswd")
            return cls(htpasswd=HtpasswdConfig(
                realm=_string(h, "realm", default="basic-realm"),
                path=_string(h, "path", required=True),
            ))
        if "token" in s.keys():
            return cls(token=_token_config(s.section("token")))
        return cls()


def _string_form(raw: Any) -> Any:
    """distribution's ``auth: htpasswd`` (a bare scheme name) is ``auth: {htpasswd: {}}``."""
    return {raw: {}} if isinstance(raw, str) and raw else raw


def _token_config(t: Section) -> TokenConfig:
    algs_raw = t.raw("signingalgorithms")
    algs: tuple[str, ...] = DEFAULT_ALGORITHMS
    if algs_raw is not None:
        if not isinstance(algs_raw, list) or not algs_raw or not all(isinstance(a, str) for a in algs_raw):
            raise ConfigError(f"{t.where('signingalgorithms')} must be a non-empty list of algorithm names")
        for a in algs_raw:
            if a not in ASYMMETRIC_ALGORITHMS + HMAC_ALGORITHMS:
                raise ConfigError(f"{t.where('signingalgorithms')}: unsupported signing algorithm {a!r}")
        algs = tuple(dict.fromkeys(algs_raw))
    raw_status = t.raw("insufficientscopestatus", "auto")
    status: int | None = None
    if not (isinstance(raw_status, str) and raw_status.strip().lower() == "auto"):
        status = _int(t, "insufficientscopestatus", 0, 401)
        if status not in (401, 403):
            raise ConfigError(f"{t.where('insufficientscopestatus')}: expected auto, 401 or 403, got {status}")
    autoredirect = t.bool("autoredirect", False)
    return TokenConfig(
        realm=_string(t, "realm", required=not autoredirect),
        service=_string(t, "service", required=True),
        issuer=_string(t, "issuer", required=True),
        rootcertbundle=_string(t, "rootcertbundle"),
        jwks=_string(t, "jwks"),
        signingalgorithms=algs,
        autoredirect=autoredirect,
        autoredirectpath=_path(_string(t, "autoredirectpath", default=DEFAULT_AUTOREDIRECT_PATH),
                               t.where("autoredirectpath")),
        insufficientscopestatus=status,
    )


# --------------------------------------------------------------------------- tokenserver: (our token server)

_ACCOUNT_PATTERN_RE = re.compile(r"^[^\s:]{1,128}$")


@dataclasses.dataclass(frozen=True)
class AclRule:
    """One ordered rule: who (accounts or anonymous), what (type + name glob), which actions."""

    accounts: tuple[str, ...]
    anonymous: bool
    type: str
    name: str
    actions: frozenset[str]

    def matches_account(self, account: str | None) -> bool:
        if account is None:
            return self.anonymous
        return any(fnmatch.fnmatchcase(account, pattern) for pattern in self.accounts)


@dataclasses.dataclass(frozen=True)
class TokenServerConfig:
    issuer: str
    #: the services tokens may be asked for (the ``aud``); the first is the default
    services: tuple[str, ...]
    users: str
    key: str
    certificate: str = ""
    path: str = "/auth/token"
    jwkspath: str = "/.well-known/jwks.json"
    expiration: float = 300.0
    refreshtokens_path: str = ""
    refreshtokens_expiration: float = 90 * 24 * 3600.0
    #: failed logins per window from one address at one account; from one address at any
    #: account; at one account from any address (see registry.auth.ratelimit)
    ratelimit_failures: int = 5
    ratelimit_window: float = 60.0
    ratelimit_addressfailures: int = 20
    ratelimit_accountfailures: int = 50
    #: proxies whose X-Forwarded-For is believed when counting failures per client address
    trustedproxies: tuple[str, ...] = ()
    rules: tuple[AclRule, ...] = ()

    @classmethod
    def from_dict(cls, raw: Any) -> "TokenServerConfig | None":
        """Type the ``tokenserver:`` block; None when it is absent or ``enabled: false``."""
        s = Section(raw, "tokenserver")
        config = cls.from_section(s)
        s.finish()
        return config

    @classmethod
    def from_section(cls, s: Section) -> "TokenServerConfig | None":
        if not s.keys() or not s.bool("enabled", True):
            if s.keys():
                for name in s.keys():  # disabled: the rest of the block is deliberately not read
                    s.raw(name)
            return None
        services_raw = s.raw("service")
        if isinstance(services_raw, str) and services_raw:
            services: tuple[str, ...] = (services_raw,)
        elif isinstance(services_raw, list) and services_raw and all(isinstance(x, str) and x for x in services_raw):
            services = tuple(services_raw)
        else:
            raise ConfigError("tokenserver.service is required: the service name (or a list of names) tokens are for")
        expiration = s.duration("expiration", 300)
        if expiration < 60 or expiration > 24 * 3600:
            raise ConfigError("tokenserver.expiration: must be between 60s and 24h")
        refresh = s.section("refreshtokens")
        limit = s.section("ratelimit")
        proxies = limit.networks("trustedproxies")
        failures = _int(limit, "failures", 5, 1)
        return cls(
            issuer=_string(s, "issuer", required=True),
            services=services,
            users=_string(s, "users", required=True),
            key=_string(s, "key", required=True),
            certificate=_string(s, "certificate"),
            path=_path(_string(s, "path", default="/auth/token"), "tokenserver.path"),
            jwkspath=_path(_string(s, "jwkspath", default="/.well-known/jwks.json"), "tokenserver.jwkspath"),
            expiration=expiration,
            refreshtokens_path=_string(refresh, "path"),
            refreshtokens_expiration=refresh.duration("expiration", "2160h"),
            ratelimit_failures=failures,
            ratelimit_addressfailures=_int(limit, "addressfailures", 4 * failures, failures),
            ratelimit_accountfailures=_int(limit, "accountfailures", 10 * failures, failures),
            ratelimit_window=limit.duration("window", "1m"),
            trustedproxies=tuple(proxies),
            rules=tuple(_rule(r) for r in s.sections("rules")),
        )


def _rule(r: Section) -> AclRule:
    key = r.name
    accounts_raw = r.raw("account", [])
    if isinstance(accounts_raw, str):
        accounts_raw = [accounts_raw]
    if not isinstance(accounts_raw, list) or not all(isinstance(a, str) and _ACCOUNT_PATTERN_RE.match(a)
                                                     for a in accounts_raw):
        raise ConfigError(f"{key}.account: expected an account name, a glob like '*', or a list of them")
    anonymous = r.bool("anonymous", False)
    if not accounts_raw and not anonymous:
        raise ConfigError(f"{key}: a rule needs 'account' (a name or glob) or 'anonymous: true'")
    r.raw("comment")  # free text for the operator
    rtype = _string(r, "type", default="repository")
    if not re.match(r"^[a-z0-9]+$", rtype):
        raise ConfigError(f"{key}.type: expected a resource type like repository or registry, got {rtype!r}")
    name = _string(r, "name", required=True)
    if len(name) > 256 or any(c.isspace() for c in name):
        raise ConfigError(f"{key}.name: expected a repository glob like 'team/*' or '${{account}}/**'")
    actions_raw = r.raw("actions")
    if isinstance(actions_raw, str):
        actions_raw = [a.strip() for a in actions_raw.split(",") if a.strip()]
    if not isinstance(actions_raw, list) or not all(isinstance(a, str) for a in actions_raw):
        raise ConfigError(f"{key}.actions: expected a list such as [pull, push] (an empty list denies)")
    for a in actions_raw:
        if a != "*" and not re.match(r"^[a-z][a-z0-9_-]{0,31}$", a):
            raise ConfigError(f"{key}.actions: invalid action {a!r}")
        if rtype == "repository" and a not in KNOWN_ACTIONS + ("*",):
            raise ConfigError(f"{key}.actions: unknown repository action {a!r} (pull, push, delete or *)")
    return AclRule(tuple(accounts_raw), anonymous, rtype, name, frozenset(actions_raw))


def load(raw_auth: Any, raw_tokenserver: Any) -> tuple[AuthConfig, TokenServerConfig | None]:
    """Both blocks, typed; the lead's config loader and :func:`registry.auth.setup_auth` call this."""
    # The keys were checked (and warned about) when the configuration was loaded: read quietly here.
    return (AuthConfig.from_section(Section(_string_form(raw_auth), "auth")),
            TokenServerConfig.from_section(Section(raw_tokenserver, "tokenserver")))
