"""Where an upstream's credentials come from: the configuration, or a credential helper.

A credential helper (distribution 3.x's ``proxy.exec``) is a program in Docker's
docker-credential-helpers protocol: run as ``<command> get`` with the server's host on stdin, it
prints ``{"Username": ..., "Secret": ...}``. Its answer is kept for ``lifetime`` (unset: for
the life of the process; 0: it runs for every request that needs credentials). Its output and
the secret are never logged; a failing helper is logged by its exit status, and the request then
goes without credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

log = logging.getLogger(__name__)

#: seconds a credential helper may take
HELPER_TIMEOUT = 30.0


class Credentials:
    """A fixed username and password (or none)."""

    def __init__(self, username: str = "", password: str = "") -> None:
        self._pair = (username, password) if username else None

    @property
    def configured(self) -> bool:
        return self._pair is not None

    async def get(self, host: str) -> tuple[str, str] | None:
        return self._pair


class HelperCredentials(Credentials):
    def __init__(self, command: str, lifetime: float | None) -> None:
        super().__init__()
        self.command = command
        self.lifetime = lifetime
        self._cached: dict[str, tuple[tuple[str, str] | None, float]] = {}
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return True

    async def get(self, host: str) -> tuple[str, str] | None:
        async with self._lock:
            cached = self._cached.get(host)
            if cached is not None and (self.lifetime is None or time.monotonic() < cached[1]):
                return cached[0]
            pair = await self._run(host)
            if pair is not None:
                self._cached[host] = (pair, time.monotonic() + (self.lifetime or 0.0))
            return pair

    async def _run(self, host: str) -> tuple[str, str] | None:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.command, "get", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            log.error("proxy: the credential helper %s cannot be run: %s", self.command, exc.strerror or exc)
            return None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(host.encode()), HELPER_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            log.error("proxy: the credential helper %s took longer than %gs", self.command, HELPER_TIMEOUT)
            return None
        if proc.returncode != 0:
            log.error("proxy: the credential helper %s failed for %s (exit status %s)", self.command, host,
                      proc.returncode)
            return None
        try:
            answer = json.loads(out)
            username, secret = answer["Username"], answer["Secret"]
        except (ValueError, KeyError, TypeError):
            log.error("proxy: the credential helper %s did not answer {\"Username\", \"Secret\"} for %s",
                      self.command, host)
            return None
        if not isinstance(username, str) or not isinstance(secret, str) or not username:
            log.error("proxy: the credential helper %s gave no username for %s", self.command, host)
            return None
        return username, secret
