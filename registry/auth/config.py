"""Typed ``auth:`` (distribution's keys) and ``tokenserver:`` (our built-in token server) config.

``auth:`` holds at most one of ``htpasswd: {realm, path}`` or ``token: {realm, service, issuer,
rootcertbundle, jwks, signingalgorithms, autoredirect, autoredirectpath}``, exactly as in
distribution, plus our ``insufficientscopestatus`` (auto, 401 or 403). ``tokenserver:`` configures the token server
this process serves (and ``registry auth serve-token`` runs alone). Both are validated once, here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, parse_duration, section
from .keys import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS
from .scope import KNOWN_ACTIONS

log = logging.getLogger(__name__)

SUPPORTED_SCHEMES = ("htpasswd", "token")
DEFAULT_ALGORITHMS = ASYMMETRIC_ALGORITHMS
DEFAULT_AUTOREDIRECT_PATH = "/auth/token"


def _string(raw: Mapping[str, Any], name: str, key: str, required: bool = False, default: str = "") -> str:
    value = raw.get(name)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{key}.{name} is required")
        return default
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ConfigError(f"{key}.{name}: expected a string, got {value!r}")
    return str(value)


def _boolean(raw: Mapping[str, Any], name: str, key: str, default: bool = False) -> bool:
    value = raw.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key}.{name}: expected true or false, got {value!r}")


def _int(raw: Mapping[str, Any], name: str, key: str, default: int, minimum: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}.{name}: expected an integer of at least {minimum}, got {value!r}")
    return value


def _warn_unknown(raw: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for name in raw:
        if name not in known:
            log.warning("config: unknown key %s.%s ignored", where, name)


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
        raw = section(raw, "auth")
        for name in raw:
            if name not in SUPPORTED_SCHEMES:
                raise ConfigError(f"auth.{name}: unsupported auth scheme (supported: htpasswd, token)")
        if len(raw) > 1:
            raise ConfigError(f"auth: more than one auth scheme configured: {', '.join(sorted(raw))}")
        if "htpasswd" in raw:
            h = section(raw["htpasswd"], "auth.htpasswd")
            _warn_unknown(h, ("realm", "path"), "auth.htpasswd")
            return cls(htpasswd=HtpasswdConfig(
                realm=_string(h, "realm", "auth.htpasswd", default="basic-realm"),
                path=_string(h, "path", "auth.htpasswd", required=True),
            ))
        if "token" in raw:
            return cls(token=_token_config(section(raw["token"], "auth.token")))
        return cls()


def _token_config(t: dict[str, Any]) -> TokenConfig:
    key = "auth.token"
    _warn_unknown(t, ("realm", "service", "issuer", "rootcertbundle", "jwks", "signingalgorithms", "autoredirect",
                      "autoredirectpath", "insufficientscopestatus"), key)
    algs_raw = t.get("signingalgorithms")
    algs: tuple[str, ...] = DEFAULT_ALGORITHMS
    if algs_raw is not None:
        if not isinstance(algs_raw, list) or not algs_raw or not all(isinstance(a, str) for a in algs_raw):
            raise ConfigError(f"{key}.signingalgorithms must be a non-empty list of algorithm names")
        for a in algs_raw:
            if a not in ASYMMETRIC_ALGORITHMS + HMAC_ALGORITHMS:
                raise ConfigError(f"{key}.signingalgorithms: unsupported signing algorithm {a!r}")
        algs = tuple(dict.fromkeys(algs_raw))
    raw_status = t.get("insufficientscopestatus", "auto")
    status: int | None = None
    if not (isinstance(raw_status, str) and raw_status.strip().lower() == "auto"):
        status = _int(t, "insufficientscopestatus", key, 0, 401)
        if status not in (401, 403):
            raise ConfigError(f"{key}.insufficientscopestatus: expected auto, 401 or 403, got {status}")
    autoredirect = _boolean(t, "autoredirect", key)
    return TokenConfig(
        realm=_string(t, "realm", key, required=not autoredirect),
        service=_string(t, "service", key, required=True),
        issuer=_string(t, "issuer", key, required=True),
        rootcertbundle=_string(t, "rootcertbundle", key),
        jwks=_string(t, "jwks", key),
        signingalgorithms=algs,
        autoredirect=autoredirect,
        autoredirectpath=_path(_string(t, "autoredirectpath", key, default=DEFAULT_AUTOREDIRECT_PATH),
                               f"{key}.autoredirectpath"),
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
        raw = section(raw, "tokenserver")
        if not raw or not _boolean(raw, "enabled", "tokenserver", default=True):
            return None
        key = "tokenserver"
        _warn_unknown(raw, ("enabled", "issuer", "service", "users", "key", "certificate", "path", "jwkspath",
                            "expiration", "refreshtokens", "ratelimit", "rules"), key)
        services_raw = raw.get("service")
        if isinstance(services_raw, str) and services_raw:
            services: tuple[str, ...] = (services_raw,)
        elif isinstance(services_raw, list) and services_raw and all(isinstance(s, str) and s for s in services_raw):
            services = tuple(services_raw)
        else:
            raise ConfigError(f"{key}.service is required: the service name (or a list of names) tokens are for")
        expiration = parse_duration(raw.get("expiration", 300), f"{key}.expiration")
        if expiration < 60 or expiration > 24 * 3600:
            raise ConfigError(f"{key}.expiration: must be between 60s and 24h")
        refresh = section(raw.get("refreshtokens"), f"{key}.refreshtokens")
        _warn_unknown(refresh, ("path", "expiration"), f"{key}.refreshtokens")
        limit = section(raw.get("ratelimit"), f"{key}.ratelimit")
        _warn_unknown(limit, ("failures", "window", "addressfailures", "accountfailures", "trustedproxies"),
                      f"{key}.ratelimit")
        proxies = limit.get("trustedproxies") or []
        if not isinstance(proxies, list):
            raise ConfigError(f"{key}.ratelimit.trustedproxies: expected a list of addresses or networks")
        for net in proxies:
            try:
                ipaddress.ip_network(str(net), strict=False)
            except ValueError:
                raise ConfigError(f"{key}.ratelimit.trustedproxies: {net!r} is not an address or network") from None
        failures = _int(limit, "failures", f"{key}.ratelimit", 5, 1)
        rules_raw = raw.get("rules") or []
        if not isinstance(rules_raw, list):
            raise ConfigError(f"{key}.rules: expected a list of rules")
        return cls(
            issuer=_string(raw, "issuer", key, required=True),
            services=services,
            users=_string(raw, "users", key, required=True),
            key=_string(raw, "key", key, required=True),
            certificate=_string(raw, "certificate", key),
            path=_path(_string(raw, "path", key, default="/auth/token"), f"{key}.path"),
            jwkspath=_path(_string(raw, "jwkspath", key, default="/.well-known/jwks.json"), f"{key}.jwkspath"),
            expiration=expiration,
            refreshtokens_path=_string(refresh, "path", f"{key}.refreshtokens"),
            refreshtokens_expiration=parse_duration(refresh.get("expiration", "2160h"),
                                                    f"{key}.refreshtokens.expiration"),
            ratelimit_failures=failures,
            ratelimit_addressfailures=_int(limit, "addressfailures", f"{key}.ratelimit", 4 * failures, failures),
            ratelimit_accountfailures=_int(limit, "accountfailures", f"{key}.ratelimit", 10 * failures, failures),
            ratelimit_window=parse_duration(limit.get("window", "1m"), f"{key}.ratelimit.window"),
            trustedproxies=tuple(str(p) for p in proxies),
            rules=tuple(_rule(r, f"{key}.rules[{i}]") for i, r in enumerate(rules_raw)),
        )


def _rule(raw: Any, key: str) -> AclRule:
    r = section(raw, key)
    _warn_unknown(r, ("account", "anonymous", "type", "name", "actions", "comment"), key)
    accounts_raw = r.get("account", [])
    if isinstance(accounts_raw, str):
        accounts_raw = [accounts_raw]
    if not isinstance(accounts_raw, list) or not all(isinstance(a, str) and _ACCOUNT_PATTERN_RE.match(a)
                                                     for a in accounts_raw):
        raise ConfigError(f"{key}.account: expected an account name, a glob like '*', or a list of them")
    anonymous = _boolean(r, "anonymous", key)
    if not accounts_raw and not anonymous:
        raise ConfigError(f"{key}: a rule needs 'account' (a name or glob) or 'anonymous: true'")
    rtype = _string(r, "type", key, default="repository")
    if not re.match(r"^[a-z0-9]+$", rtype):
        raise ConfigError(f"{key}.type: expected a resource type like repository or registry, got {rtype!r}")
    name = _string(r, "name", key, required=True)
    if len(name) > 256 or any(c.isspace() for c in name):
        raise ConfigError(f"{key}.name: expected a repository glob like 'team/*' or '${{account}}/**'")
    actions_raw = r.get("actions")
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
    return AuthConfig.from_dict(raw_auth), TokenServerConfig.from_dict(raw_tokenserver)
