"""``python -m benchmarks.swift``: the registry on Swift against the raw Swift client, same Swift, one run.

Starts a real OpenStack Swift all-in-one (tests/swift_aio.py: Debian's servers, tempauth) and our
registry on the swift driver, then, alternating who goes first on every repetition, pushes and
pulls one blob (default 256 MiB):

- through the registry: ``POST``, one streamed ``PATCH`` with the whole blob, ``PUT ?digest=``
  (skopeo's way); pulled with ``GET`` served by the registry (redirects off) and, for reference,
  the 307 to a TempURL followed to Swift;
- raw, with python-swiftclient (``put_object``/``get_object``, streamed): the same bytes as one
  object (``raw_write``), and as the registry stores them, segments of ``chunksize`` bytes and a
  Static Large Object manifest (``raw_write_slo``, the like-for-like figure for push); read back
  streamed (``raw_read``, of the SLO).

Prints each median, the ratios registry/raw, the registry's peak RSS, and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:  # the Swift start-up code lives with the test fixtures
    sys.path.insert(0, str(ROOT / "tests"))

from drivers.multipart import BufferReader  # noqa: E402
from emulators import swift_params  # noqa: E402
from swift_aio import KEY, USER, start_swift  # noqa: E402

from .s3 import PHASES, parse_size, pull_registry, push_registry  # noqa: E402
from .servers import Monitor, Server, free_port  # noqa: E402

MiB = 1 << 20


def start_registry(workdir: Path, params: dict[str, Any], redirect: bool) -> Server:
    port = free_port()
    name = "ours-redirect" if redirect else "ours"
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"swift": params, "delete": {"enabled": True}, "redirect": {"disable": not redirect},
                    "maintenance": {"uploadpurging": {"enabled": False}}},  # fmt: skip
        "http": {"addr": f"127.0.0.1:{port}", "secret": "benchmark-secret"},
    }
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    server = Server(name, [sys.executable, "-m", "registry", "serve", str(path)], workdir, port, workdir / f"{name}.log")
    server.start()
    return server


class RawClient:
    """python-swiftclient, the reference Swift client, used as an application would: streamed."""

    def __init__(self, auth_url: str, container: str, segment: int) -> None:
        import swiftclient.client

        self.conn = swiftclient.client.Connection(authurl=auth_url, user=USER, key=KEY, retries=0)
        self.container = container
        self.segment = segment
        self.conn.put_container(container)

    @staticmethod
    def _file(view: memoryview, start: int, end: int) -> Any:
        """A file over the bytes, no copy: swiftclient streams a file in chunks of its choice."""
        return BufferReader(view[start:end])

    def write(self, name: str, data: bytes) -> None:
        self.conn.put_object(self.container, name, contents=self._file(memoryview(data), 0, len(data)),
                             content_length=len(data), content_type="application/octet-stream")  # fmt: skip

    def write_slo(self, name: str, data: bytes) -> None:
        view, manifest = memoryview(data), []
        for n, start in enumerate(range(0, len(data), self.segment), 1):
            end = min(start + self.segment, len(data))
            seg = f"{name}-segments/{n:016d}"
            etag = self.conn.put_object(self.container, seg, contents=self._file(view, start, end),
                                        content_length=end - start, content_type="application/octet-stream")  # fmt: skip
            manifest.append({"path": f"/{self.container}/{seg}", "etag": etag, "size_bytes": end - start})
        self.conn.put_object(self.container, name, contents=json.dumps(manifest),
                             query_string="multipart-manifest=put", content_type="application/octet-stream")  # fmt: skip

    def read(self, name: str, digest: str) -> None:
        h = hashlib.sha256()
        _, body = self.conn.get_object(self.container, name, resp_chunk_size=MiB)
        for chunk in body:
            h.update(chunk)
        assert "sha256:" + h.hexdigest() == digest, "raw read differs"

    def delete(self, name: str) -> None:
        self.conn.delete_object(self.container, name, query_string="multipart-manifest=delete")

    def close(self) -> None:
        self.conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    size = parse_size(args.size)
    workdir = Path(tempfile.mkdtemp(prefix="registry-swift-bench-"))
    swift = start_swift(workdir, timeout=180)
    servers: list[Server] = []
    try:
        params = swift_params(swift, chunksize=args.chunksize, **dict(kv.split("=", 1) for kv in args.param))
        chunk = parse_size(str(params["chunksize"]))
        direct = start_registry(workdir, params, redirect=False)
        redirecting = start_registry(workdir, {**params, "prefix": "/redirecting"}, redirect=True)
        servers = [direct, redirecting]
        raw = await asyncio.to_thread(RawClient, swift.auth_url, "raw-" + os.urandom(4).hex(), chunk)
        times: dict[str, list[float]] = {k: [] for k in ("push", "raw_write", "raw_write_slo", "pull", "raw_read",
                                                          "pull_redirect")}  # fmt: skip
        monitor = Monitor(direct.process.pid)  # type: ignore[union-attr]
        monitor.__enter__()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as http:
            for server in servers:  # the first request authenticates and settles the container
                warm = os.urandom(1024)
                await push_registry(http, f"http://127.0.0.1:{server.port}", "warm/up", warm,
                                    "sha256:" + hashlib.sha256(warm).hexdigest())  # fmt: skip
            PHASES.clear()
            for rep in range(args.repeat):
                data = os.urandom(size)  # new bytes each time: a stored blob would skip the commit
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                repo = f"bench/r{rep}"
                base = f"http://127.0.0.1:{direct.port}"
                steps = [
                    ("push", lambda: push_registry(http, base, repo, data, digest)),
                    ("raw_write", lambda: asyncio.to_thread(raw.write, f"plain-{rep}", data)),
                    ("raw_write_slo", lambda: asyncio.to_thread(raw.write_slo, f"slo-{rep}", data)),
                    ("pull", lambda: pull_registry(http, f"{base}/v2/{repo}/blobs/{digest}", digest)),
                    ("raw_read", lambda: asyncio.to_thread(raw.read, f"slo-{rep}", digest)),
                ]
                if rep % 2:
                    steps = [steps[1], steps[2], steps[0], steps[4], steps[3]]  # alternate who goes first
                for name, step in steps:
                    started = time.perf_counter()
                    await step()
                    times[name].append(time.perf_counter() - started)
                redirected = f"http://127.0.0.1:{redirecting.port}"
                await push_registry(http, redirected, repo, data, digest)
                started = time.perf_counter()
                await pull_registry(http, f"{redirected}/v2/{repo}/blobs/{digest}", digest)
                times["pull_redirect"].append(time.perf_counter() - started)
                for name in (f"plain-{rep}", f"slo-{rep}"):
                    await asyncio.to_thread(raw.delete, name)
                del data
        monitor.__exit__(None, None, None)
        raw.close()
        medians = {k: statistics.median(v) for k, v in times.items()}
        return {
            "size": size,
            "repeat": args.repeat,
            "chunksize": chunk,
            "seconds": medians,
            "mib_per_s": {k: size / MiB / v for k, v in medians.items()},
            "ratio_push": medians["push"] / medians["raw_write_slo"],
            "ratio_push_vs_single_put": medians["push"] / medians["raw_write"],
            "ratio_pull": medians["pull"] / medians["raw_read"],
            "ratio_pull_redirect": medians["pull_redirect"] / medians["raw_read"],
            "registry_peak_rss_mib": monitor.peak_rss / MiB,
            "push_phases": {k.rsplit(" ", 1)[-1]: statistics.median(v) for k, v in PHASES.items()
                            if k.startswith(f"http://127.0.0.1:{direct.port} ")},  # fmt: skip
        }
    finally:
        for server in servers:
            server.stop()
        swift.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MiB", help="blob size (default 256MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--chunksize", default="20MiB", help="storage.swift.chunksize (segment size), default 20MiB")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra storage.swift key for the registry")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop Swift and the registries too
    result = asyncio.run(run(args))
    s, r = result["seconds"], result["mib_per_s"]
    print(f"blob {result['size'] / MiB:.0f} MiB, segments {result['chunksize'] / MiB:.0f} MiB, "
          f"{result['repeat']} repetitions (medians), Swift all-in-one on loopback")  # fmt: skip
    for name in ("push", "raw_write_slo", "raw_write", "pull", "raw_read", "pull_redirect"):
        print(f"  {name:14} {s[name]:8.2f} s  {r[name]:8.1f} MiB/s")
    print(f"  registry/raw: push {result['ratio_push']:.2f}x (vs one PUT {result['ratio_push_vs_single_put']:.2f}x), "
          f"pull {result['ratio_pull']:.2f}x, pull via TempURL redirect {result['ratio_pull_redirect']:.2f}x; "
          f"registry peak RSS {result['registry_peak_rss_mib']:.0f} MiB")  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
