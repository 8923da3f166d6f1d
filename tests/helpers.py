"""Small utilities shared by tests: free ports, waiting for a server, running the CLI, sampling a
process's memory, requiring a tool."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """True under CI (``.ci/run`` exports CI=true): there ``make test`` installs every tool and
    dependency a test needs, so a missing one is a failure, never a quiet skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    """A test cannot run here for want of a tool, a package or a capability ``make test`` provides:
    skip it on a developer's machine, fail it under CI (the one place every such skip is a bug)."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: a missing requirement fails the run)", pytrace=False)
    pytest.skip(reason)


def find_tool(tool: str) -> str | None:
    """The path of ``tool``: a name on PATH (or in /usr/sbin, /sbin) or an absolute path; None if absent."""
    if os.path.isabs(tool):
        return tool if os.access(tool, os.X_OK) else None
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/local/sbin")


def require_tool(*tools: str, hint: str = "`make test-deps` installs it") -> list[str]:
    """The paths of ``tools`` (names or absolute paths); :func:`missing` when any is absent."""
    found = [find_tool(t) for t in tools]
    absent = [t for t, path in zip(tools, found) if path is None]
    if absent:
        missing(f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed: {hint}")
    return [path for path in found if path is not None]


def require_module(name: str) -> ModuleType:
    """``importlib.import_module(name)``; :func:`missing` when it cannot be imported (the test
    extra of pyproject.toml, installed by ``make test``, holds every module the tests import)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"the Python module {name} cannot be imported ({exc}): `make test-deps` installs it")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers any HTTP status; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {out!r}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server the tests started, killing it when it ignores SIGTERM."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def registry_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "registry", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    full_env.update(env or {})
    return subprocess.run(registry_cmd(*args), capture_output=True, text=True, env=full_env,
                          cwd=cwd or ROOT, timeout=timeout)


class RssSampler:
    """Samples a process's resident memory (RSS) every ``interval`` seconds in a thread while a
    ``with`` block runs; ``peak`` and ``baseline`` are what a memory bound is asserted on.

    Loud by design, so a bound never passes without measuring: an error while sampling (the
    process gone, psutil failing) fails the block when it ends, and so does a block that took too
    few samples (fewer than ``min_samples``, or than one per ``slack`` intervals of its duration:
    a starved or dead sampler)."""

    def __init__(self, pid: int, interval: float = 0.01, *, min_samples: int = 3, slack: int = 20) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval, self.min_samples, self.slack = interval, min_samples, slack
        self.baseline = self.peak = self.process.memory_info().rss
        self.samples = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.process.memory_info().rss)
                self.samples += 1
                self._stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - kept and raised by __exit__
            self.error = exc

    def __enter__(self) -> "RssSampler":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is not None:
            return  # the block's own failure is the one to report
        self.check(time.monotonic() - self._started)

    def check(self, elapsed: float) -> None:
        """Raise AssertionError unless sampling went without error and often enough for ``elapsed``."""
        if self.error is not None:
            raise AssertionError(f"sampling the memory of process {self.process.pid} failed after "
                                 f"{self.samples} samples: {self.error!r}") from self.error
        wanted = max(self.min_samples, int(elapsed / self.interval / self.slack))
        assert self.samples >= wanted, (
            f"only {self.samples} memory samples in {elapsed:.1f}s (wanted at least {wanted}): the sampler "
            "did not measure")
