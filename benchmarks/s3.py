"""``python -m benchmarks.s3``: the registry on S3 against raw s3fs, same moto, one run.

Starts moto's server and our registry on the s3 driver (both on free loopback ports), then,
alternating on every repetition, pushes and pulls one blob (default 256 MiB):

- through the registry: ``POST``, one streamed ``PATCH`` with the whole blob, ``PUT ?digest=``
  (skopeo's way); pulled with ``GET`` served by the registry (redirects off) and, for
  reference, the 307 to a presigned URL followed to moto;
- raw: the same bytes written with s3fs (``pipe_file``: multipart) and read back (``cat_file``).

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
if str(ROOT / "tests") not in sys.path:  # the emulator start-up code lives with the test fixtures
    sys.path.insert(0, str(ROOT / "tests"))

from emulators import make_s3_bucket, s3_params, start_moto  # noqa: E402

from .servers import Monitor, Server, free_port  # noqa: E402

MiB = 1 << 20
PHASES: dict[str, list[float]] = {}


def parse_size(text: str) -> int:
    text = text.strip().lower()
    for unit, factor in (("gib", 1 << 30), ("mib", MiB), ("kib", 1 << 10)):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def start_registry(workdir: Path, params: dict[str, Any], redirect: bool) -> Server:
    port = free_port()
    name = "ours-redirect" if redirect else "ours"
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"s3": params, "delete": {"enabled": True}, "redirect": {"disable": not redirect},
                    "maintenance": {"uploadpurging": {"enabled": False}}},  # fmt: skip
        "http": {"addr": f"127.0.0.1:{port}", "secret": "benchmark-secret"},
    }
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    server = Server(name, [sys.executable, "-m", "registry", "serve", str(path)], workdir, port, workdir / f"{name}.log")
    server.start()
    return server


async def push_registry(http: aiohttp.ClientSession, base: str, repo: str, data: bytes, digest: str) -> None:
    r = await http.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status == 202, await r.text()
    location = r.headers["Location"]
    view = memoryview(data)

    async def body():  # type: ignore[no-untyped-def]
        for i in range(0, len(view), MiB):
            yield view[i : i + MiB]

    t0 = time.perf_counter()
    r = await http.patch(_abs(base, location), data=body(), headers={"Content-Type": "application/octet-stream"})
    assert r.status == 202, await r.text()
    t1 = time.perf_counter()
    r = await http.put(_abs(base, r.headers["Location"]) + f"&digest={digest}")
    assert r.status == 201, await r.text()
    PHASES.setdefault(f"{base} patch", []).append(t1 - t0)
    PHASES.setdefault(f"{base} put", []).append(time.perf_counter() - t1)


async def pull_registry(http: aiohttp.ClientSession, url: str, digest: str) -> None:
    h = hashlib.sha256()
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        async for chunk in r.content.iter_chunked(MiB):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == digest, "pulled bytes differ"


def _abs(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import s3fs

    size = parse_size(args.size)
    moto = start_moto()
    workdir = Path(tempfile.mkdtemp(prefix="registry-s3-bench-"))
    servers: list[Server] = []
    try:
        params = s3_params(moto, **dict(kv.split("=", 1) for kv in args.param))
        raw_bucket = make_s3_bucket(moto)
        direct = start_registry(workdir, params, redirect=False)
        redirecting = start_registry(workdir, {**params, "rootdirectory": "/redirecting"}, redirect=True)
        servers = [direct, redirecting]
        fs = s3fs.S3FileSystem(
            key=params["accesskey"], secret=params["secretkey"], endpoint_url=moto.endpoint,
            client_kwargs={"region_name": "us-east-1"}, asynchronous=True, skip_instance_cache=True,
            config_kwargs={"s3": {"addressing_style": "path"}},
        )  # fmt: skip
        await fs.set_session()
        times: dict[str, list[float]] = {k: [] for k in ("push", "raw_write", "pull", "raw_read", "pull_redirect")}
        monitor = Monitor(direct.process.pid)  # type: ignore[union-attr]
        monitor.__enter__()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as http:
            for rep in range(args.repeat):
                # new bytes each time: a blob the registry already has would skip the commit's copy
                data = os.urandom(size)
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                repo = f"bench/r{rep}"
                steps = [
                    ("push", lambda: push_registry(http, f"http://127.0.0.1:{direct.port}", repo, data, digest)),
                    ("raw_write", lambda: fs._pipe_file(f"{raw_bucket}/raw/{rep}", data)),
                    ("pull", lambda: pull_registry(http, f"http://127.0.0.1:{direct.port}/v2/{repo}/blobs/{digest}", digest)),
                    ("raw_read", lambda: _raw_read(fs, f"{raw_bucket}/raw/{rep}", digest)),
                ]  # fmt: skip
                if rep % 2:
                    steps = [steps[1], steps[0], steps[3], steps[2]]  # alternate who goes first
                for name, step in steps:
                    started = time.perf_counter()
                    await step()
                    times[name].append(time.perf_counter() - started)
                # the redirected pull: the registry answers 307, moto sends the bytes
                redirected = f"http://127.0.0.1:{redirecting.port}"
                await push_registry(http, redirected, repo, data, digest)
                started = time.perf_counter()
                await pull_registry(http, f"{redirected}/v2/{repo}/blobs/{digest}", digest)
                times["pull_redirect"].append(time.perf_counter() - started)
                await fs._rm_file(f"{raw_bucket}/raw/{rep}")
        monitor.__exit__(None, None, None)
        await fs._s3.close()
        medians = {k: statistics.median(v) for k, v in times.items()}
        return {
            "size": size,
            "repeat": args.repeat,
            "seconds": medians,
            "mib_per_s": {k: size / MiB / v for k, v in medians.items()},
            "ratio_push": medians["push"] / medians["raw_write"],
            "ratio_pull": medians["pull"] / medians["raw_read"],
            "ratio_pull_redirect": medians["pull_redirect"] / medians["raw_read"],
            "registry_peak_rss_mib": monitor.peak_rss / MiB,
            "push_phases": {k: statistics.median(v) for k, v in PHASES.items()},
        }
    finally:
        for server in servers:
            server.stop()
        moto.stop()


async def _raw_read(fs: Any, path: str, digest: str) -> None:
    got = await fs._cat_file(path)
    assert "sha256:" + hashlib.sha256(got).hexdigest() == digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MiB", help="blob size (default 256MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra storage.s3 key for the registry, e.g. multipartcopythresholdsize=5GiB")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop moto and the registries too
    result = asyncio.run(run(args))
    s, r = result["seconds"], result["mib_per_s"]
    print(f"blob {result['size'] / MiB:.0f} MiB, {result['repeat']} repetitions (medians), moto on loopback")
    for name in ("push", "raw_write", "pull", "raw_read", "pull_redirect"):
        print(f"  {name:14} {s[name]:8.2f} s  {r[name]:8.1f} MiB/s")
    print(f"  registry/raw: push {result['ratio_push']:.2f}x, pull {result['ratio_pull']:.2f}x, "
          f"pull via redirect {result['ratio_pull_redirect']:.2f}x; registry peak RSS "
          f"{result['registry_peak_rss_mib']:.0f} MiB")  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
