"""Health checks (distribution's ``health:`` section) and the one gate they drive.

Each configured check runs periodically in every process (the first run at start). A check
fails after ``threshold`` consecutive failures and passes again at its first success. While any
check fails, :func:`gate_middleware` answers API requests with 503 UNAVAILABLE (as distribution
does); ``/debug/health`` (debug server) and ``/readyz`` (API port) list the failing checks;
``/livez`` answers 200 while the process serves at all. Neither of the last two needs auth.

The storage driver check asks the driver contract: ``list("/")`` (distribution stats the root)
and, unless ``write: false`` or the registry is read-only, writes and deletes a small file under
``_health/`` (registry/store/paths.py) -- a disk that is full or read-only fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from drivers.base import PathNotFound, StorageDriver

from ..errors import ErrorCode, RegistryError
from ..store import paths
from .config import CheckConfig
from .metrics import METRICS

log = logging.getLogger(__name__)

CheckFn = Callable[[], Awaitable[None]]
#: seconds the storage check may take before it counts as failed (at least its interval)
STORAGE_TIMEOUT = 10.0


class Check:
    def __init__(self, name: str, fn: CheckFn, interval: float, threshold: int = 1, timeout: float = 0.0) -> None:
        self.name = name
        self.fn = fn
        self.interval = interval
        self.threshold = max(1, threshold)
        self.timeout = timeout or interval
        self.failures = 0
        self.error: str | None = None
        self.checked_at: float | None = None

    @property
    def failing(self) -> bool:
        return self.error is not None

    async def run_once(self) -> None:
        try:
            await asyncio.wait_for(self.fn(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
            message = _describe(exc, self.timeout)
            self.failures += 1
            if self.failures >= self.threshold:
                if self.error is None:
                    log.error("health check %s failing: %s", self.name, message)
                self.error = message
        else:
            if self.error is not None:
                log.warning("health check %s passes again", self.name)
            self.failures = 0
            self.error = None
        self.checked_at = time.time()
        METRICS.health_status.set((self.name,), 0 if self.error else 1)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {timeout:g}s"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class Health:
    """The checks of this process and whether any fails (read by the gate on every request)."""

    def __init__(self, checks: list[Check] | None = None) -> None:
        self.checks = list(checks or [])
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def failing(self) -> dict[str, str]:
        return {c.name: c.error for c in self.checks if c.error is not None}

    @property
    def healthy(self) -> bool:
        return not any(c.error is not None for c in self.checks)

    async def start(self) -> None:
        await asyncio.gather(*(c.run_once() for c in self.checks))  # known before the first request
        self._tasks = [asyncio.create_task(self._loop(c)) for c in self.checks]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _loop(self, check: Check) -> None:
        while True:
            await asyncio.sleep(check.interval)
            await check.run_once()

    def status_body(self) -> dict[str, str]:
        """distribution's ``/debug/health`` body: the failing checks and their errors."""
        return self.failing


# --------------------------------------------------------------------------- the checks


def build_checks(configs: list[CheckConfig], driver: StorageDriver, *, driver_name: str,
                 readonly: bool = False) -> list[Check]:
    checks = []
    for c in configs:
        if c.kind == "storagedriver":
            # a slow answer is not a failure until STORAGE_TIMEOUT (object stores retry on their own)
            checks.append(Check(f"storagedriver_{driver_name}", storage_check(driver, c.write and not readonly),
                                c.interval, c.threshold, max(c.interval, STORAGE_TIMEOUT)))
        elif c.kind == "file":
            checks.append(Check(c.name, file_check(c.target), c.interval, c.threshold))
        elif c.kind == "http":
            checks.append(Check(c.name, http_check(c.target, c.statuscode, c.headers, c.timeout or c.interval),
                                c.interval, c.threshold, c.timeout))
        elif c.kind == "tcp":
            checks.append(Check(c.name, tcp_check(c.target), c.interval, c.threshold, c.timeout))
    return checks


def storage_check(driver: StorageDriver, write: bool) -> CheckFn:
    probe = paths.health_probe(f"probe-{os.getpid()}-{os.urandom(4).hex()}")

    async def check() -> None:
        try:
            await driver.list("/")
        except PathNotFound:
            pass  # the backend answered; an empty bucket has no root entries
        if write:
            await driver.put_content(probe, b"ok")
            with contextlib.suppress(PathNotFound):
                await driver.delete(probe)

    return check


def file_check(path: str) -> CheckFn:
    """Fails while ``path`` exists (distribution: a file takes the registry out of rotation)."""

    async def check() -> None:
        if os.path.exists(path):
            raise RuntimeError(f"file exists: {path}")

    return check


def http_check(uri: str, status: int, headers: dict[str, list[str]], timeout: float) -> CheckFn:
    """A ``HEAD`` of ``uri`` must answer ``status``."""
    import aiohttp
    from multidict import CIMultiDict

    send: CIMultiDict[str] = CIMultiDict()
    for name, values in headers.items():
        for value in values:
            send.add(name, value)

    async def check() -> None:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            async with session.head(uri, headers=send, allow_redirects=False) as resp:
                if resp.status != status:
                    raise RuntimeError(f"downstream service returned unexpected status: {resp.status}")

    return check


def tcp_check(addr: str) -> CheckFn:
    host, _, port = addr.rpartition(":")

    async def check() -> None:
        _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    return check


# --------------------------------------------------------------------------- HTTP


def gate_middleware(health: Health, prefix: str = "/") -> Any:
    """While a check fails, every API request (``/v2/...``) is 503 UNAVAILABLE."""
    api_root = prefix.rstrip("/") + "/v2"

    @web.middleware
    async def health_gate(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
        if not health.healthy and (request.path == api_root or request.path.startswith(api_root + "/")):
            raise RegistryError(ErrorCode.UNAVAILABLE, "health check failed: please see /debug/health",
                                detail=health.failing, headers={"Retry-After": "10"})
        return await handler(request)

    return health_gate


def status_response(health: Health) -> web.Response:
    failing = health.status_body()
    return web.json_response(failing, status=503 if failing else 200)


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
