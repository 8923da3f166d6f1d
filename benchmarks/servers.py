"""Start the two registries on equal terms and watch their memory and CPU.

Both get a fresh empty directory on the same filesystem, the filesystem driver, a free loopback
port, access logging off, and the same distribution-style config file (ours reads that format).
The reference keeps its packaged default of an in-memory blob-descriptor cache: we compare against
the reference as it ships, not a slowed-down one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

REFERENCE_BINARY = "/usr/bin/docker-registry"
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_reference(binary: str = REFERENCE_BINARY) -> str:
    """The reference registry's binary; installs the Debian package when it is missing."""
    if os.path.exists(binary):
        return binary
    found = shutil.which("docker-registry")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("benchmark: installing the reference registry (apt-get install docker-registry)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-registry"], check=True, env=env
    )
    return shutil.which("docker-registry") or binary


def registry_config(root: Path, port: int, reference: bool, workers: int | None = None) -> dict[str, Any]:
    """The config both registries read; only ``http.workers`` (ours, optional) differs."""
    storage: dict[str, Any] = {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}}
    if reference:
        storage["cache"] = {"blobdescriptor": "inmemory"}  # the packaged default config
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "benchmark-secret"}
    if workers and not reference:
        http["workers"] = workers
    return {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": storage,
        "http": http,
    }


@dataclass
class Server:
    """One running registry: its process, port and storage root."""

    name: str
    command: list[str]
    root: Path
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    #: the configuration file the command reads
    config_path: Path | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self, timeout: float = 30.0, poll: float = 0.1) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/v2/"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(poll)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def blob_dir(self, digest: str) -> Path:
        algorithm, hexpart = digest.split(":", 1)
        return self.root / "docker/registry/v2/blobs" / algorithm / hexpart[:2] / hexpart


def start_servers(
    workdir: Path | None,
    reference_binary: str,
    ours_workers: int | None,
    ours_env: dict[str, str],
    names: tuple[str, ...] = ("reference", "ours"),
) -> tuple[list[Server], Path]:
    """Start the reference and ours in fresh directories under one temporary parent."""
    parent = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=workdir))
    servers = []
    for name, reference in (("reference", True), ("ours", False)):
        if name not in names:
            continue
        root = parent / name / "data"
        root.mkdir(parents=True)
        port = free_port()
        config_path = parent / name / "config.yml"
        config_path.write_text(yaml.safe_dump(registry_config(root, port, reference, ours_workers)))
        if reference:
            command = [reference_binary, "serve", str(config_path)]
            env: dict[str, str] = {}
        else:
            command = [sys.executable, "-m", "registry", "serve", str(config_path)]
            env = ours_env
        servers.append(Server(name, command, root, port, parent / name / "server.log", env, config_path=config_path))
    try:
        for server in servers:
            server.start()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers, parent


class Monitor:
    """Polls a server's process tree: peak RSS while running, CPU seconds used between start and stop.

    A worker that ends between two polls is skipped, but an error reading the server process
    itself (or any other error in the polling thread) is raised when the block ends: a figure
    never rests on a poller that stopped."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        #: the largest single process seen (with several workers the tree's sum counts each once)
        self.peak_process_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0 = 0.0
        self.cpu_seconds = 0.0
        self.samples = 0
        self.error: BaseException | None = None

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return [self.root]

    def cpu(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def rss(self, procs: list[psutil.Process]) -> int:
        total = 0
        for proc in procs:
            try:
                one = proc.memory_info().rss
            except psutil.Error:
                if proc.pid == self.root.pid:
                    raise  # the server itself: no figure without it
                continue
            total += one
            self.peak_process_rss = max(self.peak_process_rss, one)
        return total

    def _run(self) -> None:
        try:
            procs = self._tree()
            refreshed = time.monotonic()
            while not self._stop.is_set():
                self.peak_rss = max(self.peak_rss, self.rss(procs))
                self.samples += 1
                if time.monotonic() - refreshed > 0.5:  # workers may come and go; children() is costly
                    procs, refreshed = self._tree(), time.monotonic()
                self._stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - raised by __exit__
            self.error = exc

    def __enter__(self) -> "Monitor":
        self._cpu0 = self.cpu()
        self.peak_rss = self.rss(self._tree())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.cpu_seconds = self.cpu() - self._cpu0
        if exc and exc[0] is not None:
            return  # the block's own failure is the one to report
        if self.error is not None:
            raise RuntimeError(f"polling process {self.root.pid} failed after {self.samples} samples: "
                               f"{self.error!r}") from self.error
        self.peak_rss = max(self.peak_rss, self.rss(self._tree()))  # a last sample: never none
        self.samples += 1
