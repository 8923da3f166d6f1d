"""``python -m benchmarks.scale``: three instances against one, behind the same haproxy; and the
Redis blob descriptor cache on S3 against none. One run, both comparisons.

1. Scale-out: three registry instances share one Redis and one storage (``--storage fs``: one
   directory, the default; ``s3``: one moto bucket); one haproxy (Debian's) has two frontends,
   round robin over all three and over the first alone. Alternating on every repetition:
   aggregate push MB/s of ``--clients`` clients (each ``POST``, one streamed ``PATCH`` with the
   whole blob, ``PUT ?digest=``), and manifest ``GET`` req/s at ``--concurrency`` connections.
2. Cache: two instances on one moto bucket and one Redis, one with
   ``storage.cache.blobdescriptor: redis`` and one without; manifest ``GET`` by tag and blob
   ``HEAD`` req/s, alternating.

The machine may be shared: the 1-minute load average is printed before and after each phase
and is part of the JSON line. Requires redis-server and haproxy (``make test-deps``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:  # emulator and haproxy start-up code lives with the fixtures
    sys.path.insert(0, str(ROOT / "tests"))

from emulators import make_s3_bucket, s3_params, start_moto  # noqa: E402

from .client import run_small_requests  # noqa: E402
from .servers import Server, free_port  # noqa: E402

MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REDIS_SERVER = "/usr/bin/redis-server"
HAPROXY = "/usr/sbin/haproxy"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def start_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_tcp(port, proc)
    return proc, port


def start_haproxy(workdir: Path, frontends: dict[int, list[int]]) -> subprocess.Popen:
    """One haproxy, one round-robin frontend per entry: port -> backend ports."""
    text = ("global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n"
            "    timeout client 300s\n    timeout server 300s\n")
    for i, (port, backends) in enumerate(frontends.items()):
        text += f"frontend fe{i}\n    bind 127.0.0.1:{port}\n    default_backend be{i}\n"
        text += f"backend be{i}\n    balance roundrobin\n"
        text += "".join(f"    server s{j} 127.0.0.1:{b}\n" for j, b in enumerate(backends))
    config = workdir / "haproxy.cfg"
    config.write_text(text)
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for port in frontends:
        _wait_tcp(port, proc)
    return proc


def _wait_tcp(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_instance(workdir: Path, name: str, storage: dict[str, Any], redis_port: int, cache: bool) -> Server:
    port = free_port()
    storage = {**storage, "delete": {"enabled": True}, "redirect": {"disable": True},
               "maintenance": {"uploadpurging": {"enabled": False}}}
    if cache:
        storage["cache"] = {"blobdescriptor": "redis"}
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": storage,
        "http": {"addr": f"127.0.0.1:{port}", "secret": "benchmark-secret"},
        "redis": {"addr": f"127.0.0.1:{redis_port}"},
    }
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    server = Server(name, [sys.executable, "-m", "registry", "serve", str(path)], workdir, port, workdir / f"{name}.log")
    server.start()
    return server


async def push_one(http: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> None:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = await http.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status == 202, await r.text()
    location = r.headers["Location"]
    view = memoryview(data)

    async def body():  # type: ignore[no-untyped-def]
        for i in range(0, len(view), MiB):
            yield view[i : i + MiB]

    r = await http.patch(_abs(base, location), data=body(), headers={"Content-Type": "application/octet-stream"})
    assert r.status == 202, await r.text()
    location = r.headers["Location"]
    sep = "&" if "?" in location else "?"
    r = await http.put(_abs(base, location) + f"{sep}digest={digest}")
    assert r.status == 201, await r.text()


def _abs(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


async def aggregate_push(base: str, clients: int, size: int, round_: int) -> float:
    """MB/s of ``clients`` pushing one ``size`` blob each at once (fresh bytes every round)."""
    blobs = [os.urandom(64) + bytes(size - 64) for _ in range(clients)]
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(push_one(http, base, f"bench/push{i}-{round_}", data) for i, data in enumerate(blobs)))
        elapsed = time.perf_counter() - t0
    return clients * size / MiB / elapsed


async def push_image(base: str, repo: str) -> tuple[str, str]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": repo}).encode()
    layer = os.urandom(4096)
    async with aiohttp.ClientSession() as http:
        for blob in (config, layer):
            d = "sha256:" + hashlib.sha256(blob).hexdigest()
            r = await http.post(f"{base}/v2/{repo}/blobs/uploads/?digest={d}", data=blob)
            assert r.status == 201, await r.text()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
        }).encode()
        r = await http.put(f"{base}/v2/{repo}/manifests/latest", data=manifest, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201, await r.text()
    return "sha256:" + hashlib.sha256(layer).hexdigest(), r.headers["Docker-Content-Digest"]


def rate(port: int, path: str, method: str, concurrency: int, duration: float) -> float:
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {OCI_MANIFEST}\r\n\r\n").encode()
    result = run_small_requests("127.0.0.1", port, lambda n: (request, method == "HEAD", (200,)),
                                concurrency=concurrency, duration=duration)
    if result.errors:
        raise RuntimeError(f"{result.errors} failed requests ({result.statuses})")
    return result.ops / result.elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    for binary in (REDIS_SERVER, HAPROXY):
        if not Path(binary).exists():
            raise SystemExit(f"{binary} is missing: run `make test-deps` (Debian's redis-server and haproxy)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    procs: list[Any] = []
    servers: list[Server] = []
    moto = None
    out: dict[str, Any] = {"load_start": load(), "cpus": os.cpu_count()}
    try:
        redis_proc, redis_port = start_redis(workdir)
        procs.append(redis_proc)
        moto = start_moto()
        # --- 1: three instances against one, one balancer --------------------------------------
        if args.storage == "s3":
            storage: dict[str, Any] = {"s3": s3_params(moto, bucket=make_s3_bucket(moto))}
        else:
            (workdir / "root").mkdir()
            storage = {"filesystem": {"rootdirectory": str(workdir / "root")}}
        three = [start_instance(workdir, f"scale{i}", storage, redis_port, cache=True) for i in range(3)]
        servers += three
        lb3, lb1 = free_port(), free_port()
        procs.append(start_haproxy(workdir, {lb3: [s.port for s in three], lb1: [three[0].port]}))
        asyncio.run(push_image(f"http://127.0.0.1:{lb3}", "bench/app"))
        push = {"three": [], "one": []}
        gets = {"three": [], "one": []}
        print(f"scale-out ({args.storage}): load {load()} before", flush=True)
        for rep in range(args.repeat):
            for name, port in (("three", lb3), ("one", lb1)) if rep % 2 == 0 else (("one", lb1), ("three", lb3)):
                push[name].append(asyncio.run(aggregate_push(f"http://127.0.0.1:{port}", args.clients, args.size,
                                                             rep * 2 + (name == "one"))))
                gets[name].append(rate(port, "/v2/bench/app/manifests/latest", "GET", args.concurrency, args.duration))
                print(f"  rep {rep} {name}: push {push[name][-1]:.1f} MB/s, manifest GET {gets[name][-1]:.0f} req/s"
                      f" (load {load()})", flush=True)
        out["load_after_scale"] = load()
        for name in ("three", "one"):
            out[f"push_mbps_{name}"] = round(statistics.median(push[name]), 1)
            out[f"manifest_get_rps_{name}"] = round(statistics.median(gets[name]), 1)
        out["ratio_push_three_vs_one"] = round(out["push_mbps_three"] / out["push_mbps_one"], 2)
        out["ratio_manifest_get_three_vs_one"] = round(out["manifest_get_rps_three"] / out["manifest_get_rps_one"], 2)
        for s in three:
            s.stop()
        servers = []
        # --- 2: the Redis cache on S3 against none ----------------------------------------------
        s3 = {"s3": s3_params(moto, bucket=make_s3_bucket(moto))}
        cached = start_instance(workdir, "cached", s3, redis_port, cache=True)
        plain = start_instance(workdir, "plain", s3, redis_port, cache=False)
        servers += [cached, plain]
        layer, _ = asyncio.run(push_image(f"http://127.0.0.1:{plain.port}", "bench/cache"))
        results: dict[str, list[float]] = {k: [] for k in ("get_cache", "get_plain", "head_cache", "head_plain")}
        print(f"cache on S3: load {load()} before", flush=True)
        for rep in range(args.repeat):
            order = (("cache", cached), ("plain", plain)) if rep % 2 == 0 else (("plain", plain), ("cache", cached))
            for name, server in order:
                results[f"get_{name}"].append(rate(server.port, "/v2/bench/cache/manifests/latest", "GET",
                                                   args.cache_concurrency, args.duration))
                results[f"head_{name}"].append(rate(server.port, f"/v2/bench/cache/blobs/{layer}", "HEAD",
                                                    args.cache_concurrency, args.duration))
                print(f"  rep {rep} {name}: manifest GET {results[f'get_{name}'][-1]:.0f} req/s, blob HEAD "
                      f"{results[f'head_{name}'][-1]:.0f} req/s (load {load()})", flush=True)
        for key, values in results.items():
            out[f"{key}_rps"] = round(statistics.median(values), 1)
        out["ratio_manifest_get_cache_vs_none"] = round(out["get_cache_rps"] / out["get_plain_rps"], 2)
        out["ratio_blob_head_cache_vs_none"] = round(out["head_cache_rps"] / out["head_plain_rps"], 2)
        out["load_end"] = load()
    finally:
        for s in servers:
            s.stop()
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if moto is not None:
            moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", choices=("fs", "s3"), default="fs", help="storage of the scale-out part")
    parser.add_argument("--clients", type=int, default=16, help="concurrent pushing clients")
    parser.add_argument("--size", type=lambda t: int(float(t.lower().removesuffix("mib")) * MiB), default=16 * MiB,
                        help="bytes each client pushes per repetition (e.g. 16MiB)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections for manifest GET req/s")
    parser.add_argument("--cache-concurrency", type=int, default=16, help="connections for the cache comparison")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per req/s measurement")
    parser.add_argument("--repeat", type=int, default=3, help="alternating repetitions (medians reported)")
    args = parser.parse_args(argv)
    out = run(args)
    print(f"three instances / one, same haproxy: push {out['ratio_push_three_vs_one']}x "
          f"({out['push_mbps_three']} vs {out['push_mbps_one']} MB/s, {args.clients} clients), manifest GET "
          f"{out['ratio_manifest_get_three_vs_one']}x ({out['manifest_get_rps_three']} vs "
          f"{out['manifest_get_rps_one']} req/s, c={args.concurrency})")
    print(f"Redis cache / none, on S3: manifest GET {out['ratio_manifest_get_cache_vs_none']}x "
          f"({out['get_cache_rps']} vs {out['get_plain_rps']} req/s), blob HEAD {out['ratio_blob_head_cache_vs_none']}x "
          f"({out['head_cache_rps']} vs {out['head_plain_rps']} req/s)")
    print(f"load average (1 min): {out['load_start']} at start, {out['load_after_scale']} after the scale-out part, "
          f"{out['load_end']} at the end, on {out['cpus']} CPUs")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
