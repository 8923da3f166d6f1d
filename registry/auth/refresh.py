"""Refresh tokens: opaque, bound to account, client_id and service, revocable, kept on disk.

Only a SHA-256 of each token is stored, so the file never holds a usable token. The file is
shared by worker processes and the operator CLI: every change takes an exclusive ``flock``,
re-reads, modifies and atomically replaces it; readers reload when it changed. Refresh tokens
are not rotated on use: Docker keeps the identity token from ``docker login`` for good, so a
rotated-away token would lock it out. Revocation is explicit (CLI) and immediate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_PER_ACCOUNT = 100
TOKEN_PREFIX = "rt1_"


class RefreshStoreError(ValueError):
    """The store file cannot be read or is not ours (the message names the file)."""


@dataclasses.dataclass
class RefreshRecord:
    account: str
    client_id: str
    service: str
    created: float
    expires: float
    revoked: bool = False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class RefreshStore:
    """The refresh-token file; blocking methods (call them in a worker thread from handlers)."""

    def __init__(self, path: str | Path, lifetime: float) -> None:
        self.path = Path(path)
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._records: dict[str, RefreshRecord] = {}
        self._stamp: tuple[int, int, int] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._load()
                yield
                self._save()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            records = {str(k): RefreshRecord(**v) for k, v in data.get("tokens", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise RefreshStoreError(f"refresh-token store {self.path} is unreadable: {exc}") from None
        self._records, self._stamp = records, stamp

    def _save(self) -> None:
        now = time.time()
        self._records = {k: r for k, r in self._records.items() if r.expires > now}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"tokens": {k: dataclasses.asdict(r) for k, r in self._records.items()}}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        st = os.stat(self.path)
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def issue(self, account: str, client_id: str, service: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with self._exclusive():
            mine = sorted((r.created, k) for k, r in self._records.items() if r.account == account)
            for _, key in mine[: max(0, len(mine) - MAX_PER_ACCOUNT + 1)]:
                del self._records[key]
            self._records[_digest(token)] = RefreshRecord(account, client_id, service, now, now + self.lifetime)
        return token

    def lookup(self, token: str) -> RefreshRecord | None:
        """The live record of ``token`` (not revoked, not expired), else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        with self._lock:
            try:
                self._load()
            except RefreshStoreError as exc:
                log.error("%s; refusing refresh tokens until it is fixed", exc)
                return None
            record = self._records.get(_digest(token))
        if record is None or record.revoked or record.expires <= time.time():
            return None
        return record

    def revoke(self, token: str | None = None, account: str | None = None) -> int:
        """Revoke one token, or every token of ``account``; the number revoked."""
        count = 0
        with self._exclusive():
            for key, record in self._records.items():
                hit = (token is not None and key == _digest(token)) or (account is not None and record.account == account)
                if hit and not record.revoked:
                    record.revoked = True
                    count += 1
        return count

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            self._load()
            return [dict(dataclasses.asdict(r), id=k[:12]) for k, r in self._records.items()]


class SharedRefreshStore:
    """Refresh tokens in :mod:`registry.state` (Redis): every instance issues, accepts and
    revokes the same tokens, and a revocation is seen by all at once. Same rules as
    :class:`RefreshStore` (hashes only, at most :data:`MAX_PER_ACCOUNT` per account, no rotation);
    async. While the state is unavailable, issuing and accepting refresh tokens fail with
    :class:`registry.state.StateUnavailable` (a revoked token is never accepted by mistake)."""

    asynchronous = True
    KIND = "refresh"

    def __init__(self, state: Any, lifetime: float) -> None:
        self.state = state
        self.lifetime = lifetime

    @staticmethod
    def _encode(record: RefreshRecord) -> bytes:
        return json.dumps(dataclasses.asdict(record)).encode()

    @staticmethod
    def _decode(raw: bytes) -> RefreshRecord | None:
        try:
            return RefreshRecord(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    async def issue(self, account: str, client_id: str, service: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        mine = await self.state.record_group(self.KIND, account)
        if len(mine) >= MAX_PER_ACCOUNT:
            oldest = sorted(mine, key=lambda k: getattr(self._decode(mine[k]), "created", 0.0))
            for key in oldest[: len(mine) - MAX_PER_ACCOUNT + 1]:
                await self.state.record_delete(self.KIND, key, account)
        record = RefreshRecord(account, client_id, service, now, now + self.lifetime)
        await self.state.record_put(self.KIND, _digest(token), self._encode(record), self.lifetime, account)
        return token

    async def lookup(self, token: str) -> RefreshRecord | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        raw = await self.state.record_get(self.KIND, _digest(token))
        record = self._decode(raw) if raw is not None else None
        if record is None or record.revoked or record.expires <= time.time():
            return None
        return record

    async def _revoke_key(self, key: str, raw: bytes) -> bool:
        record = self._decode(raw)
        if record is None or record.revoked:
            return False
        record.revoked = True
        remaining = max(record.expires - time.time(), 1.0)
        await self.state.record_put(self.KIND, key, self._encode(record), remaining, record.account)
        return True

    async def revoke(self, token: str | None = None, account: str | None = None) -> int:
        count = 0
        if token is not None:
            key = _digest(token)
            raw = await self.state.record_get(self.KIND, key)
            if raw is not None and await self._revoke_key(key, raw):
                count += 1
        if account is not None:
            for key, raw in (await self.state.record_group(self.KIND, account)).items():
                count += await self._revoke_key(key, raw)
        return count

    async def list(self) -> list[dict[str, Any]]:
        out = []
        for key, raw in (await self.state.record_all(self.KIND)).items():
            record = self._decode(raw)
            if record is not None:
                out.append(dict(dataclasses.asdict(record), id=key[:12]))
        return out
