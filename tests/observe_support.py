"""Helpers for the observability and notification tests: our registry as a process with a config
of the test's choosing, a scrape parsed with prometheus-client's own parser, and a real HTTP
receiver for notifications (aiohttp, on its own thread and loop, which can go down and come back).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fixtures_registry import Client
from helpers import ROOT, free_port, stop_process, wait_http


def registry_config(root: Path, port: int, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "observe-test-secret-0123456789"},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict) and name != "storage":
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    return config


@dataclass
class Server:
    """Our registry as a process; ``restart`` keeps config, port and storage."""

    config: dict[str, Any]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def port(self) -> int:
        return int(self.config["http"]["addr"].rsplit(":", 1)[1])

    @property
    def client(self) -> Client:
        return Client("127.0.0.1", self.port)

    @property
    def debug_url(self) -> str:
        return f"http://{self.config['http']['debug']['addr']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"registry-{self.starts}.log"

    def start(self) -> "Server":
        import os

        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "OTEL_"))}
        env.update(self.env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", str(path)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            wait_http(f"http://127.0.0.1:{self.port}/v2/", timeout=30, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"registry did not start:\n{self.log_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        """kill -9: no shutdown hook runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("registry-*.log")))

    def log_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if line.strip()]


def start_server(tmp_path: Path, **sections: Any) -> Server:
    port = free_port()
    env = sections.pop("env", {})
    root = sections.pop("root", tmp_path / "root")
    return Server(registry_config(root, port, **sections), tmp_path / "server", env).start()


def debug_section(**extra: Any) -> dict[str, Any]:
    return {"debug": {"addr": f"127.0.0.1:{free_port()}", "prometheus": {"enabled": True, "path": "/metrics"}},
            **extra}


# --------------------------------------------------------------------------- metrics


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}, parsed by prometheus-client."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(server.debug_url + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- notification receiver


class Receiver:
    """A real HTTP endpoint for notifications: records every POST (headers, body, events)."""

    def __init__(self, port: int | None = None, status: Callable[[dict[str, Any]], int] | None = None) -> None:
        self.port = port or free_port()
        self.status = status or (lambda posted: 200)
        self.posts: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: Any = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        posted = {"headers": dict(request.headers), "body": body, "events": []}
        try:
            parsed = json.loads(body)
            posted["events"] = parsed.get("events", []) if isinstance(parsed, dict) else parsed
        except ValueError:
            pass
        status = self.status(posted)
        if 200 <= status < 400:
            with self.lock:
                self.posts.append(posted)
        return web.Response(status=status)

    async def _head(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(status=self.status({"headers": dict(request.headers), "body": b"", "events": []}))

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/events", self._handle)
        app.router.add_route("HEAD", "/events", self._head)  # a health check's probe
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> "Receiver":
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for p in self.posts for e in p["events"]]
