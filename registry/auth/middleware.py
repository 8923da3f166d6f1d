"""The registry side of auth: what a request needs, who sent it, and the 401/403 challenge.

Needed access per request (as distribution): GET/HEAD pull; POST/PUT/PATCH pull and push; DELETE
delete; ``/v2/_catalog`` ``registry:catalog:*``; ``/v2/`` and unknown ``/v2/...`` paths only need
authentication. The repository is the route's ``name`` (the very value the handler uses). A mount's
``from`` is asked for in the challenge but not required: without pull on it the upload handler asks
:func:`registry.access.allowed` and falls back to a plain upload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from ..access import ACCESS_KEY, ALLOW_ALL
from ..errors import ErrorCode, RegistryError
from ..observe.metrics import METRICS
from ..reference import is_valid_name
from .bearer import InvalidToken, TokenVerifier
from .config import HtpasswdConfig, TokenConfig
from .htpasswd import Htpasswd, parse_basic
from .ratelimit import LoginLimiter
from .scope import AccessSet, Scope, format_scopes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: failed Basic logins allowed per address and account per window (htpasswd mode; the address
#: and account budgets are the limiter's multiples of it)
BASIC_FAILURES, BASIC_WINDOW = 10, 60.0
MAX_AUTHORIZATION = 7200  # below aiohttp's 8190-byte header limit, so we answer it ourselves
#: stands for a repository name that fails the grammar (case, ``..``, ``//``, trailing ``/``):
#: never granted, never put in a challenge
INVALID_NAME = Scope("repository", "", ("pull",))
#: the request key holding the authenticated account name (for access logs); never a credential
ACCOUNT_KEY: web.RequestKey[str] = web.RequestKey("registry.account", str)


def _v2_suffix(path: str, prefix: str) -> str | None:
    """The part of ``path`` after ``<prefix>v2/`` (``""`` for the base), or None outside the API."""
    root = prefix.rstrip("/") + "/v2"
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return None


def needed_access(request: web.Request, prefix: str = "/") -> tuple[list[Scope], list[Scope]] | None:
    """``(required, optional)`` scopes for ``request``, or None when it is outside ``/v2/``."""
    suffix = _v2_suffix(request.path, prefix)
    if suffix is None:
        return None
    name = request.match_info.get("name") if request.match_info else None
    if name is None:
        if suffix.rstrip("/") == "_catalog":
            return [Scope("registry", "catalog", ("*",))], []
        return [], []
    if not isinstance(name, str) or not is_valid_name(name):
        return ([INVALID_NAME], [])  # no token can grant a malformed name
    method = request.method
    if method in ("GET", "HEAD"):
        actions: tuple[str, ...] = ("pull",)
    elif method in ("POST", "PUT", "PATCH"):
        actions = ("pull", "push")
    elif method == "DELETE":
        actions = ("delete",)
    else:
        return [], []
    optional: list[Scope] = []
    source = request.query.get("from")
    if method == "POST" and request.query.get("mount") and source and is_valid_name(source) and source != name:
        optional.append(Scope("repository", source, ("pull",)))
    return [Scope("repository", name, actions)], optional


def _failed(reason: str) -> None:
    """Count a refused authentication (``registry_auth_failures_total{reason}``)."""
    METRICS.auth_failures.inc((reason,))


def _detail(scopes: Sequence[Scope]) -> list[dict[str, str]]:
    """The UNAUTHORIZED detail, shaped like distribution's: one entry per needed action."""
    scopes = [s for s in scopes if s is not INVALID_NAME]
    return [{"Type": s.type, "Class": s.resource_class, "Name": s.name, "Action": a} for s in scopes for a in s.actions]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BasicAuth:
    """``auth.htpasswd``: every user in the file may do everything (as in distribution).

    Unlike distribution, failed logins are limited (per address and account, see
    :mod:`registry.auth.ratelimit`), since every guess costs a bcrypt check."""

    def __init__(self, config: HtpasswdConfig, state: Any = None) -> None:
        self.config = config
        self.users = Htpasswd(config.path)
        #: with Redis (``state``), one failure budget for every instance
        self.limiter = LoginLimiter(BASIC_FAILURES, BASIC_WINDOW, state=state)

    def challenge(self, needed: Sequence[Scope], message: str = "authentication required") -> RegistryError:
        return RegistryError(
            ErrorCode.UNAUTHORIZED, message, detail=_detail(needed),
            headers={"WWW-Authenticate": f"Basic realm={_quote(self.config.realm)}"},
        )

    async def authorize(self, request: web.Request, needed: list[Scope], optional: list[Scope]) -> None:
        header = request.headers.get("Authorization", "")
        if not header:
            _failed("missing")
            raise self.challenge(needed)
        creds = parse_basic(header) if len(header) <= MAX_AUTHORIZATION else None
        if creds is None:
            _failed("malformed")
            raise self.challenge(needed, "invalid credentials")
        request[ACCOUNT_KEY] = await self.login(request, *creds, needed=needed)
        request[ACCESS_KEY] = ALLOW_ALL

    async def login(self, request: web.Request, user: str, password: str, needed: Sequence[Scope] = ()) -> str:
        """The account when the password is right (failed logins limited per address and
        account); else UNAUTHORIZED, or TOOMANYREQUESTS with ``Retry-After``. The web UI's
        login form asks this too."""
        address = request.remote or "?"
        wait = await self.limiter.retry_after(user, address)
        if wait > 0:
            _failed("rate_limited")
            raise RegistryError(ErrorCode.TOOMANYREQUESTS, "too many failed logins; try again later",
                                headers={"Retry-After": str(int(wait) + 1)})
        if not await self.users.verify(user, password):
            _failed("invalid_credentials")
            await self.limiter.failed(user, address)
            log.info("failed login for account %r from %s", user, address)
            raise self.challenge(needed, "invalid credentials")
        await self.limiter.succeeded(user, address)
        return user


class BearerAuth:
    """``auth.token``: a JWT from a trusted token server must grant every needed action."""

    def __init__(self, config: TokenConfig, verifier: TokenVerifier) -> None:
        self.config = config
        self.verifier = verifier

    def _realm(self, request: web.Request) -> str:
        if not self.config.autoredirect:
            return self.config.realm
        scheme = request.headers.get("X-Forwarded-Proto", "https").split(",")[0].strip() or "https"
        if scheme not in ("http", "https"):
            scheme = "https"
        return f"{scheme}://{request.host}{self.config.autoredirectpath}"

    def challenge(
        self, request: web.Request, scopes: Sequence[Scope], error: str = "", status: int = 401
    ) -> RegistryError:
        value = f"Bearer realm={_quote(self._realm(request))},service={_quote(self.config.service)}"
        scopes = [s for s in scopes if s is not INVALID_NAME]
        if scopes:
            value += f",scope={_quote(format_scopes(scopes))}"
        if error:
            value += f",error={_quote(error)}"
        if status == 403:
            message = "insufficient scope" if scopes else "no access to an invalid repository name"
            return RegistryError(ErrorCode.DENIED, message, detail=_detail(scopes), status=403,
                                 headers={"WWW-Authenticate": value})
        message = {"invalid_token": "invalid token", "insufficient_scope": "insufficient scope"}.get(
            error, "authentication required")
        return RegistryError(ErrorCode.UNAUTHORIZED, message, detail=_detail(scopes),
                             headers={"WWW-Authenticate": value})

    async def authorize(self, request: web.Request, needed: list[Scope], optional: list[Scope]) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if not header or scheme.lower() != "bearer":
            # no credentials, or Basic credentials sent to a token-only registry
            _failed("missing")
            raise self.challenge(request, needed + optional)
        token = token.strip()
        if len(header) > MAX_AUTHORIZATION:
            _failed("malformed")
            raise self.challenge(request, needed, "invalid_token")
        try:
            grants = await self.verifier.verify(token)
        except InvalidToken as exc:
            _failed("invalid_token")
            log.info("bearer token refused for %s %s: %s", request.method, request.path, exc)
            raise self.challenge(request, needed, "invalid_token") from None
        if not grants.allows_all(needed):
            _failed("insufficient_scope")
            raise self.challenge(request, needed + optional, "insufficient_scope",
                                 status=insufficient_scope_status(grants, self.config.insufficientscopestatus))
        request[ACCOUNT_KEY] = grants.subject
        request[ACCESS_KEY] = grants


def insufficient_scope_status(grants: AccessSet, configured: int | None) -> int:
    """The status for a valid token that lacks the needed scope.

    ``auth.token.insufficientscopestatus`` 401 or 403 decides when set. By default ("auto"): 401 for a
    token that grants nothing at all, 403 for one that grants something else. Clients differ in
    what they answer with a new token: containers/image (podman, skopeo, buildah), containerd,
    docker and oras-go fetch one only after a 401 (containers/image only when it carries
    ``error="insufficient_scope"`` and a ``scope``); oras-py only after a 403 (it resends its
    token once after a 401). A token granting nothing is the first token of ``podman search`` or of
    ``docker login`` (issued for no scope), which only a 401 gets replaced; a token granting
    something lacks an upgrade (pull to push, another repository), which only oras-py asks for
    (the others ask for every scope an operation needs up front), and for the others a 403 reads
    "denied", as it is.
    """
    if configured is not None:
        return configured
    return 401 if grants.empty else 403


def make_middleware(authorizer: BasicAuth | BearerAuth, prefix: str = "/") -> Any:
    """The aiohttp middleware that authorizes every ``/v2/`` request before its handler runs."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        access = needed_access(request, prefix)
        if access is not None:
            await authorizer.authorize(request, *access)
        return await handler(request)

    return auth_middleware
