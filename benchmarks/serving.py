"""``python -m benchmarks.serving``: what the connection guard costs, guarded vs plain, in one run.

Starts the same app twice (filesystem storage, uvloop, access log off), once served through
:class:`registry.server.connections.GuardedSite` (as ``registry serve`` does) and once through
aiohttp's plain ``TCPSite``, and alternates between them on every repetition: ``GET /v2/``, manifest
GET by tag and blob HEAD at ``--concurrency`` keep-alive clients. Reports requests per second and
the server's CPU per request (which load from other processes skews least); the goal is the
guarded server within 3% of the plain one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from .client import build_request, run_small_requests
from .servers import free_port

SERVE = r'''
import asyncio, logging, sys
from aiohttp import web
from registry.config import Config
from registry.app import create_app
from registry.eventloop import new_event_loop
from registry.server.connections import ConnectionGuard, GuardedSite, connection_limits

root, port, guarded = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "guarded"
logging.basicConfig(level=logging.WARNING)
config = Config.from_dict({"storage": {"filesystem": {"rootdirectory": root}}, "http": {"secret": "bench"},
                           "log": {"accesslog": {"disabled": True}}})

async def main():
    limits = connection_limits(config.http)
    args = dict(access_log=None, read_bufsize=1 << 20, keepalive_timeout=limits.idle)
    runner = web.AppRunner(create_app(config), handle_signals=False, **args)
    await runner.setup()
    if guarded:
        site = GuardedSite(runner, "127.0.0.1", port, guard=ConnectionGuard(limits), handler_args=args)
    else:
        site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    await asyncio.Event().wait()

with asyncio.Runner(loop_factory=new_event_loop) as r:
    r.run(main())
'''

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def start(kind: str, root: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(root), str(port), kind],
                            env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the {kind} server did not start")


def seed(port: int) -> tuple[str, str]:
    """One image: a config blob and a manifest tagged ``v1``; returns (blob digest, tag path)."""
    blob = b'{"architecture":"amd64","os":"linux"}'
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/bench/app/blobs/uploads/?digest={digest}", data=blob,
                                 method="POST", headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).read()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(blob)},
        "layers": []}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/bench/app/manifests/v1", data=manifest, method="PUT",
                                 headers={"Content-Type": MANIFEST})
    urllib.request.urlopen(req).read()
    return digest, "/v2/bench/app/manifests/v1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    servers = {kind: start(kind, work / kind) for kind in ("plain", "guarded")}
    try:
        digest = ""
        for _, port in servers.values():
            digest, tag = seed(port)
        figures = {
            "GET /v2/": ("GET", "/v2/", {}),
            "manifest GET by tag": ("GET", tag, {"Accept": MANIFEST}),
            "blob HEAD": ("HEAD", f"/v2/bench/app/blobs/{digest}", {}),
        }
        results: dict[str, dict[str, list[tuple[float, float]]]] = {f: {"plain": [], "guarded": []} for f in figures}
        for rep in range(args.reps):
            for figure, (method, target, headers) in figures.items():
                order = list(servers.items()) if rep % 2 == 0 else list(reversed(servers.items()))
                for kind, (proc, port) in order:
                    request = build_request(method, target, f"127.0.0.1:{port}", headers)
                    make = lambda i, request=request, method=method: (request, method == "HEAD", (200,))  # noqa: E731
                    cpu = psutil.Process(proc.pid)
                    before = sum(cpu.cpu_times()[:2])
                    result = run_small_requests("127.0.0.1", port, make, args.concurrency, args.duration)
                    used = sum(cpu.cpu_times()[:2]) - before
                    results[figure][kind].append((result.ops / result.elapsed, used * 1000 / max(result.ops, 1)))
        print(f"{'figure':24} {'plain req/s':>12} {'guarded':>9} {'plain CPU ms/req':>17} {'guarded':>9} {'CPU ratio':>10}")
        out = {}
        for figure, by in results.items():
            rate = {k: statistics.median(r for r, _ in v) for k, v in by.items()}
            cpu = {k: statistics.median(c for _, c in v) for k, v in by.items()}
            ratio = cpu["guarded"] / cpu["plain"]
            out[figure] = {"plain_rps": rate["plain"], "guarded_rps": rate["guarded"], "plain_cpu_ms": cpu["plain"],
                           "guarded_cpu_ms": cpu["guarded"], "cpu_ratio": ratio}
            print(f"{figure:24} {rate['plain']:12.0f} {rate['guarded']:9.0f} {cpu['plain']:17.3f} "
                  f"{cpu['guarded']:9.3f} {ratio:10.3f}")
        print(json.dumps(out))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
