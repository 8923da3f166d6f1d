"""Fixtures for scale-out: Debian's redis-server and haproxy as plain processes on free loopback
ports, and three registry instances on one moto bucket behind haproxy (round robin).

Registered as a pytest plugin from tests/conftest.py. Every process is session-scoped (started
once, on first use) and stopped at the end; a test that restarts Redis or kills an instance
brings it back before it ends. Install: ``make test`` (APT_PACKAGES has redis-server and haproxy).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures_registry import Client, RunningRegistry, start_or_fail
from helpers import free_port, missing, stop_process, wait_http

REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY = "/usr/sbin/haproxy"
#: lease ttl of the scale-out instances: a killed holder's lease is gone within this
LEASE_TTL = "3s"


def _missing(what: str) -> None:
    missing(f"{what} is not installed: run `make test-deps`")


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


@dataclasses.dataclass
class RedisServer:
    """redis-server on 127.0.0.1:port, no persistence (a restart starts empty, as after a crash
    of a cache-only Redis), its data directory under ``workdir``."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.workdir / "redis.log"
        out = log.open("ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes", "--daemonize", "no"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        _wait_port(self.port, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def cli(self, *args: str) -> str:
        """One command through a raw RESP exchange (no redis-cli needed)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            parts = [f"*{len(args)}\r\n".encode()] + [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args]
            s.sendall(b"".join(parts))
            return s.recv(65536).decode(errors="replace")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        _missing("redis-server (Debian package)")
    workdir = Path(tempfile.mkdtemp(prefix="redis-"))
    server = RedisServer(free_port(), workdir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@dataclasses.dataclass
class Haproxy:
    """haproxy in front of ``backends`` (host:port), round robin, one request per connection
    choice (``http-server-close``), on 127.0.0.1:port."""

    port: int
    config: Path
    proc: subprocess.Popen

    @property
    def client(self) -> Client:
        return Client("127.0.0.1", self.port, timeout=180)  # a loaded machine makes moto slow

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def haproxy_config(port: int, backends: list[str], name: str = "registry") -> str:
    servers = "\n".join(f"    server r{i} {b} check inter 500ms fall 2 rise 1" for i, b in enumerate(backends))
    return f"""global
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    option http-server-close
    option redispatch
    retries 2
frontend fe
    bind 127.0.0.1:{port}
    default_backend {name}
backend {name}
    balance roundrobin
    option httpchk GET /v2/
    http-check expect status 200
{servers}
"""


def start_haproxy(workdir: Path, backends: list[str], port: int | None = None) -> Haproxy:
    if not Path(HAPROXY).exists():
        _missing("haproxy (Debian package)")
    port = port or free_port()
    config = workdir / f"haproxy-{port}.cfg"
    config.write_text(haproxy_config(port, backends))
    log = workdir / f"haproxy-{port}.log"
    out = log.open("ab")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    out.close()
    _wait_port(port, proc, log)
    return Haproxy(port, config, proc)


@dataclasses.dataclass
class ScaleOut:
    """Three registry instances on one S3 bucket with one Redis, behind haproxy."""

    instances: list[RunningRegistry]
    lb: Haproxy
    redis: RedisServer
    workdir: Path
    storage: dict
    extra_config: str

    @property
    def client(self) -> Client:
        return self.lb.client

    def direct(self, i: int) -> Client:
        return self.instances[i].client

    def kill(self, i: int) -> None:
        """kill -9 of instance ``i`` (no clean-up of any kind runs)."""
        proc = self.instances[i].proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, i: int) -> None:
        """Start instance ``i`` again on its own port (haproxy sees it back within a second)."""
        old = self.instances[i]
        if old.proc.poll() is None:
            old.stop()
        self.instances[i] = start_instance(self.workdir / f"instance-{i}", self.storage, self.extra_config,
                                           port=old.port)


def scale_config(redis: RedisServer, tokenserver: dict | None = None) -> str:
    import yaml

    raw: dict = {
        "redis": {"addr": redis.addr, "dialtimeout": "500ms", "readtimeout": "2s", "writetimeout": "2s"},
        "state": {"leasettl": LEASE_TTL, "lockwait": "20s"},
    }
    if tokenserver:
        raw["tokenserver"] = tokenserver
    return yaml.safe_dump(raw, sort_keys=False)


def start_instance(workdir: Path, storage: dict, extra_config: str, port: int | None = None,
                   http_extra: str = "") -> RunningRegistry:
    """One of our registries on ``storage`` with the shared-state config ``extra_config``."""
    import fixtures_registry

    if port is not None:  # the same port again (haproxy's backend list names it)
        original = fixtures_registry.free_port
        fixtures_registry.free_port = lambda: port  # type: ignore[assignment]
        try:
            return start_or_fail("ours", Path("/nonexistent"), workdir, extra_config, http_extra, storage)
        finally:
            fixtures_registry.free_port = original  # type: ignore[assignment]
    return start_or_fail("ours", Path("/nonexistent"), workdir, extra_config, http_extra, storage)


@pytest.fixture(scope="session")
def scale_out(moto_emulator, redis_server: RedisServer) -> Iterator[ScaleOut]:  # type: ignore[no-untyped-def]
    """Three instances on one moto bucket, sharing ``redis_server``, behind haproxy (round robin);
    the blob descriptor cache on (in Redis)."""
    from emulators import make_s3_bucket, s3_params

    from auth_support import make_pki, make_users, tokenserver_block

    workdir = Path(tempfile.mkdtemp(prefix="scale-out-"))
    bucket = make_s3_bucket(moto_emulator)
    params = s3_params(moto_emulator, bucket=bucket)
    storage = {"s3": params, "redirect": {"disable": True}, "cache": {"blobdescriptor": "redis"}}
    # the token server too (the API itself stays open): its failed-login limits and refresh
    # tokens are what the instances share through Redis
    make_users(workdir / "htpasswd")
    tokenserver = tokenserver_block(workdir, make_pki(workdir / "pki"), ratelimit={"failures": 4, "window": "1m"})
    extra = scale_config(redis_server, tokenserver)
    instances = [start_instance(workdir / f"instance-{i}", storage, extra) for i in range(3)]
    lb = start_haproxy(workdir, [r.hostport for r in instances])
    for _ in range(3):  # every backend answers through the balancer before a test starts
        wait_http(f"{lb.url}/v2/", timeout=20)
    out = ScaleOut(instances, lb, redis_server, workdir, storage, extra)
    yield out
    lb.stop()
    for r in out.instances:
        r.stop()
    shutil.rmtree(workdir, ignore_errors=True)
