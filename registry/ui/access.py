"""Who is looking, and what they may see: the API's own accounts and rules, sessions, CSRF.

The UI decides access exactly as the API would for the same account:

- no ``auth:``: everyone may do everything (as on the API);
- ``auth.htpasswd``: anonymous may do nothing; every user of the file may do everything;
- ``auth.token`` with the built-in token server in this process: the token server's ordered
  rules (:func:`registry.auth.acl.permits`) for the logged-in account, or for anonymous;
- ``auth.token`` with an external token server: its rules are not known here, so the UI shows
  nothing and offers no login (it says so).

A session is a cookie signed with a key derived from ``http.secret`` (shared by every worker and
instance that shares the secret) holding the account, an expiry, a random nonce (the CSRF
token's seed) and a keyed fingerprint of the account's password hash: changing the password or
removing the user ends every session of that account. Anonymous visitors get a random
``csrf`` cookie instead, for the login form (and, without auth, the delete forms).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from aiohttp import web

from ..auth import AUTHORIZER_KEY
from ..auth.acl import permits
from ..auth.htpasswd import USERNAME_RE
from ..auth.tokenserver import TOKEN_SERVER_KEY, TokenError
from ..errors import RegistryError

SESSION_COOKIE = "registry_ui_session"
CSRF_COOKIE = "registry_ui_csrf"
#: a session ends this long after login
SESSION_LIFETIME = 12 * 3600
MAX_COOKIE = 2048


class LoginRefused(Exception):
    """A failed login: a message safe to show, and seconds to wait when rate-limited."""

    def __init__(self, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class Viewer:
    """The person behind one request: an account (None: anonymous) and what they may do."""

    account: str | None
    auth: "UIAuth"
    #: the seed of this viewer's CSRF token (session nonce, or the csrf cookie)
    nonce: str

    def may(self, name: str, action: str) -> bool:
        return self.auth.permits(self.account, name, action)

    def may_pull(self, name: str) -> bool:
        return self.may(name, "pull")

    @property
    def csrf_token(self) -> str:
        return self.auth.csrf_for(self.nonce)


class UIAuth:
    """The UI's view of the registry's auth configuration (built once per app)."""

    def __init__(self, app: web.Application, secret: str) -> None:
        from ..auth.middleware import BasicAuth, BearerAuth

        self.key = hmac.new(secret.encode(), b"registry-ui-session-v1", hashlib.sha256).digest()
        authorizer = app.get(AUTHORIZER_KEY)
        self.token_server = app.get(TOKEN_SERVER_KEY)
        self.basic: BasicAuth | None = authorizer if isinstance(authorizer, BasicAuth) else None
        if authorizer is None:
            self.mode = "none"
        elif self.basic is not None:
            self.mode = "htpasswd"
        elif isinstance(authorizer, BearerAuth) and self.token_server is not None:
            self.mode = "token"
        else:
            self.mode = "external"

    # --- rules ---------------------------------------------------------------------------------

    @property
    def can_login(self) -> bool:
        return self.mode in ("htpasswd", "token")

    def permits(self, account: str | None, name: str, action: str) -> bool:
        if self.mode == "none":
            return True
        if self.mode == "htpasswd":
            return account is not None
        if self.mode == "token":
            return permits(self.token_server.config.rules, account, "repository", name, action)
        return False

    @property
    def _users(self) -> Any:
        if self.mode == "htpasswd":
            return self.basic.users
        if self.mode == "token":
            return self.token_server.users
        return None

    async def login(self, request: web.Request, user: str, password: str) -> str:
        """The account for a right password (the API's failure limits apply); LoginRefused else."""
        if not self.can_login:
            raise LoginRefused("this registry's accounts cannot log in here")
        if not USERNAME_RE.match(user) or not password:
            raise LoginRefused("wrong user name or password")
        try:
            if self.mode == "htpasswd":
                return await self.basic.login(request, user, password)
            return await self.token_server.login(request, user, password)
        except TokenError as err:
            raise LoginRefused(_refusal(err.status), _retry(err.headers)) from None
        except RegistryError as err:
            raise LoginRefused(_refusal(err.status), _retry(err.headers)) from None

    # --- sessions --------------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.key, payload, hashlib.sha256).digest())

    def _fingerprint(self, account: str) -> str | None:
        users = self._users
        return users.fingerprint(account, self.key) if users is not None else None

    def session_cookie(self, account: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        payload = json.dumps({"a": account, "e": int(now) + SESSION_LIFETIME, "n": secrets.token_urlsafe(24),
                              "f": self._fingerprint(account)}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def session(self, value: str | None, now: float | None = None) -> tuple[str, str] | None:
        """(account, nonce) of a valid session cookie, else None."""
        if not value or len(value) > MAX_COOKIE or not self.can_login:
            return None
        body, _, signature = value.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
            return None
        try:
            data = json.loads(payload)
            account, expiry, nonce, fingerprint = data["a"], data["e"], data["n"], data["f"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(account, str) or not isinstance(expiry, int) or not isinstance(nonce, str):
            return None
        if expiry < (time.time() if now is None else now):
            return None
        current = self._fingerprint(account)
        if current is None or not isinstance(fingerprint, str) or not hmac.compare_digest(current, fingerprint):
            return None  # the user was removed or changed their password
        return account, nonce

    # --- CSRF ------------------------------------------------------------------------------------

    def csrf_for(self, nonce: str) -> str:
        return self._sign(b"csrf:" + nonce.encode())

    def csrf_ok(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_for(nonce).encode(), str(token).encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _refusal(status: int) -> str:
    return "too many failed logins; try again later" if status == 429 else "wrong user name or password"


def _retry(headers: Any) -> int:
    try:
        return int((headers or {}).get("Retry-After", 0))
    except (TypeError, ValueError):
        return 0
