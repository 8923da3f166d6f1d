"""Users from an htpasswd file (bcrypt only, like distribution), re-read when the file changes.

Password checks run bcrypt in a worker thread so the event loop never stalls. A user that does not
exist is checked against a dummy hash, so timing does not reveal which accounts exist. Successful
checks are remembered for a minute under an HMAC of the credentials (never the password itself),
so a client sending Basic credentials on every request does not pay bcrypt each time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from pathlib import Path

import bcrypt

MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused, never truncated
MAX_USERNAME = 128
MAX_BASIC_HEADER = 1024
USERNAME_RE = re.compile(r"^[^\s:]{1,128}$")
_BCRYPT_RE = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
CACHE_TTL = 60.0
CACHE_MAX = 10000


class HtpasswdError(ValueError):
    """The htpasswd file cannot be used (message names the file and line, never a hash)."""


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(user, password)`` from a ``Basic`` Authorization value, or None when malformed."""
    if len(header) > MAX_BASIC_HEADER:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not USERNAME_RE.match(user):
        return None
    return user, password


def hash_password(password: str, rounds: int = 12) -> str:
    data = password.encode("utf-8")
    if not data or len(data) > MAX_PASSWORD_BYTES or b"\x00" in data:
        raise HtpasswdError(f"passwords must be 1 to {MAX_PASSWORD_BYTES} bytes long, without NUL")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds)).decode()


def read_entries(path: str | Path) -> dict[str, str]:
    """``user -> bcrypt hash`` from the file; non-bcrypt entries are refused with a clear error."""
    entries: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HtpasswdError(f"htpasswd file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HtpasswdError(f"cannot read htpasswd file {path}: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not USERNAME_RE.match(user):
            raise HtpasswdError(f"{path}:{lineno}: expected user:bcrypt-hash")
        if not _BCRYPT_RE.match(hashed):
            raise HtpasswdError(f"{path}:{lineno}: user {user!r} has no bcrypt hash (only bcrypt is supported: htpasswd -B)")
        entries[user] = hashed
    return entries


def set_user(path: str | Path, user: str, password: str, rounds: int = 12) -> bool:
    """Add or replace ``user`` in the file (created 0600 if missing); True when the user was new."""
    if not USERNAME_RE.match(user):
        raise HtpasswdError("user names must be 1-128 characters without spaces or ':'")
    p = Path(path)
    lines = p.read_text(encoding="utf-8").splitlines() if p.exists() else []
    entry = f"{user}:{hash_password(password, rounds)}"
    new = True
    for i, line in enumerate(lines):
        if line.partition(":")[0] == user:
            lines[i] = entry
            new = False
    if new:
        lines.append(entry)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, p)
    return new


def _dummy_hash(entries: dict[str, str]) -> bytes:
    """A hash with the cost most users have, checked for unknown users."""
    costs = [int(h[4:6]) for h in entries.values()]
    cost = max(set(costs), key=costs.count) if costs else 12
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(min(max(cost, 4), 16)))


class Htpasswd:
    """The users of one htpasswd file, reloaded (at most once a second) after it changes."""

    def __init__(self, path: str | Path, check_interval: float = 1.0) -> None:
        self.path = Path(path)
        self._check_interval = check_interval
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._entries: dict[str, str] = {}
        self._cache: dict[bytes, float] = {}
        self._cache_key = secrets.token_bytes(32)
        self._dummy = b""
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._check_interval:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            if force:
                raise HtpasswdError(f"htpasswd file {self.path} does not exist") from None
            return  # keep the last good users while the file is being replaced
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            entries = read_entries(self.path)
        except HtpasswdError:
            if force:
                raise
            return
        dummy = _dummy_hash(entries)
        with self._lock:
            self._entries, self._stamp, self._dummy = entries, stamp, dummy
            self._cache.clear()

    def exists(self, user: str) -> bool:
        self._reload()
        return user in self._entries

    def fingerprint(self, user: str, key: bytes) -> str | None:
        """A keyed digest of ``user``'s current password hash, None for an unknown user: a web
        session carries it, so changing the password or removing the user ends the session."""
        self._reload()
        with self._lock:
            hashed = self._entries.get(user)
        if hashed is None:
            return None
        return hmac.new(key, hashed.encode(), hashlib.sha256).hexdigest()[:32]

    def _cache_id(self, user: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{user}\x00{password}".encode(), hashlib.sha256).digest()

    def check(self, user: str, password: str) -> bool:
        """Constant-time password check (bcrypt); blocking, see :meth:`verify`."""
        self._reload()
        cid = self._cache_id(user, password)
        now = time.monotonic()
        with self._lock:
            hashed = self._entries.get(user)
            expiry = self._cache.get(cid)
        if hashed is not None and expiry is not None and expiry > now:
            return True
        data = password.encode("utf-8", "surrogatepass")
        ok = False
        if hashed is None or not data or len(data) > MAX_PASSWORD_BYTES or b"\x00" in data:
            bcrypt.checkpw(b"x", self._dummy)  # same work as a real check: no user enumeration by timing
        else:
            try:
                ok = bcrypt.checkpw(data, hashed.encode())
            except ValueError:
                ok = False
        if ok:
            with self._lock:
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[cid] = now + CACHE_TTL
        return ok

    def _remembered(self, user: str, password: str) -> bool:
        self._reload()
        cid = self._cache_id(user, password)
        with self._lock:
            expiry = self._cache.get(cid)
            return user in self._entries and expiry is not None and expiry > time.monotonic()

    async def verify(self, user: str, password: str) -> bool:
        """A remembered success at once; otherwise :meth:`check` (bcrypt) in a worker thread."""
        if self._remembered(user, password):
            return True
        return await asyncio.to_thread(self.check, user, password)
