"""``python -m benchmarks.proxy``: the pull-through cache against direct pulls, in one run.

Servers on free loopback ports, fresh directories, filesystem driver: the **upstream** (the
reference registry, distribution 2.8.2), the **cache** (ours, ``proxy.upstreams`` mirroring the
upstream), a **local** registry (ours, no proxy), and for each ``--link-rates`` value a **link**
(benchmarks/shaper.py: a TCP forwarder in front of the upstream whose answers share that many
bytes per second, as a network link to a remote registry does). The cache mirrors the upstream
twice: ``up/`` over loopback and ``link<N>/`` through each link.

Each repetition pushes fresh images (untimed) to the upstream and to the local registry, then
measures, alternating which goes first:

- **cold** vs **direct**, per path (loopback, each link): a fresh image (manifest by tag, then
  its blobs ``--parallel`` at a time, as docker and containerd pull) through the cache while it
  is not cached (the cache fetches and streams to the client at once), and the same image
  pulled directly from the upstream over the same path;
- **warm** vs **local**: the loopback image again through the cache (from its storage), and
  the same image from the local registry (4 alternating pairs per repetition).

Goals: cold >= 0.9 x direct, warm >= 0.95 x local (throughput, medians). Over loopback the
upstream serves with zero-copy ``sendfile`` from Go while the cache must receive, spool, hash
and store every byte in Python, so that ratio measures the cache's CPU; over a link it measures
what a user of a remote upstream sees. The machine is shared: the load average before and after
is in the result, with the cache's peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from .client import Connection, add_query, get_blob, path_of
from .compare import MiB, Payload, parse_size, size_label
from .servers import Monitor, Server, ensure_reference, free_port, registry_config

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = f"{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"
GOALS = {"cold_vs_upstream": 0.9, "warm_vs_local": 0.95}
#: warm/local pairs per repetition
WARM_TURNS = 4


class BenchError(Exception):
    pass


def _server(parent: Path, name: str, command_for: Any, config: dict[str, Any], env: dict[str, str]) -> Server:
    root = Path(config["storage"]["filesystem"]["rootdirectory"])
    root.mkdir(parents=True)
    path = parent / name / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return Server(name, command_for(path), root, int(config["http"]["addr"].rsplit(":", 1)[1]),
                  parent / name / "server.log", env)


def start(workdir: Path | None, reference: str, link_rates: list[int]) -> tuple[dict[str, Server], Path]:
    parent = Path(tempfile.mkdtemp(prefix="registry-proxy-bench-", dir=workdir))
    ours = lambda path: [sys.executable, "-m", "registry", "serve", str(path)]  # noqa: E731
    upstream_config = registry_config(parent / "upstream" / "data", free_port(), True)
    servers = {"upstream": _server(parent, "upstream", lambda p: [reference, "serve", str(p)], upstream_config, {})}
    upstreams = [{"prefix": "up", "remoteurl": f"http://127.0.0.1:{servers['upstream'].port}", "ttl": "1h"}]
    for rate in link_rates:
        name = f"link{rate // MiB}"
        port = free_port()
        (parent / name).mkdir()
        servers[name] = Server(name, [sys.executable, "-m", "benchmarks.shaper", "--listen", str(port), "--target",
                                      f"127.0.0.1:{servers['upstream'].port}", "--rate", str(rate)],
                               parent / name, port, parent / name / "server.log", {})
        upstreams.append({"prefix": name, "remoteurl": f"http://127.0.0.1:{port}", "ttl": "1h",
                          "ns": [f"{name}.bench.example"]})
    cache_config = registry_config(parent / "cache" / "data", free_port(), False)
    cache_config["proxy"] = {"upstreams": upstreams}
    servers["cache"] = _server(parent, "cache", ours, cache_config, {})
    servers["local"] = _server(parent, "local", ours, registry_config(parent / "local" / "data", free_port(), False), {})
    try:
        for server in servers.values():
            server.start()
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers, parent


class Image:
    """A fresh image: one config and ``sizes`` layers of new random-looking bytes."""

    def __init__(self, payload: Payload, sizes: list[int], serial: int) -> None:
        self.layers: list[tuple[bytes, str]] = []
        for size in sizes:
            view, digest = payload.fresh(size)
            self.layers.append((bytes(view), digest))
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"},
                                  "serial": serial}).encode()
        self.config_digest = "sha256:" + hashlib.sha256(self.config).hexdigest()
        body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": self.config_digest, "size": len(self.config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": len(b)} for b, d in self.layers]}
        self.manifest = json.dumps(body).encode()

    @property
    def size(self) -> int:
        return len(self.config) + len(self.manifest) + sum(len(b) for b, _ in self.layers)

    def blobs(self) -> list[tuple[str, int]]:
        return [(self.config_digest, len(self.config))] + [(d, len(b)) for b, d in self.layers]


def push(server: Server, repo: str, tag: str, image: Image) -> None:
    conn = Connection(server.host, server.port)
    try:
        for data, digest in [(image.config, image.config_digest), *image.layers]:
            start = conn.request("POST", f"/v2/{repo}/blobs/uploads/")
            if start.status != 202:
                raise BenchError(f"{server.name}: POST upload {start.status}")
            target = add_query(path_of(start.header("location")), f"digest={digest}")
            done = conn.request("PUT", target, {"Content-Type": "application/octet-stream"}, body=memoryview(data))
            if done.status != 201:
                raise BenchError(f"{server.name}: PUT blob {done.status} {done.body[:200]!r}")
        put = conn.request("PUT", f"/v2/{repo}/manifests/{tag}", {"Content-Type": OCI_MANIFEST}, body=image.manifest)
        if put.status != 201:
            raise BenchError(f"{server.name}: PUT manifest {put.status} {put.body[:200]!r}")
    finally:
        conn.close()


def pull(server: Server, repo: str, tag: str, image: Image, parallel: int) -> float:
    """Seconds to pull ``image``: its manifest by tag, then its blobs ``parallel`` at a time."""
    conns = [Connection(server.host, server.port) for _ in range(parallel)]
    errors: list[BaseException] = []
    started = time.perf_counter()
    try:
        answer = conns[0].request("GET", f"/v2/{repo}/manifests/{tag}", {"Accept": ACCEPT})
        if answer.status != 200 or answer.body != image.manifest:
            raise BenchError(f"{server.name}: GET manifest {answer.status} {answer.body[:200]!r}")
        queue = sorted(image.blobs(), key=lambda b: -b[1])
        lock = threading.Lock()

        def worker(conn: Connection) -> None:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    digest, size = queue.pop(0)
                try:
                    response, _ = get_blob(conn, f"/v2/{repo}/blobs/{digest}", False)
                    if response.status != 200 or response.length != size:
                        raise BenchError(f"{server.name}: GET blob {response.status}, {response.length} of {size}")
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in conns:
            c.close()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def settle(cache: Server, repo: str, image: Image, timeout: float = 120) -> None:
    """Untimed: wait until the cache serves every blob from its storage (its fetches committed)."""
    conn = Connection(cache.host, cache.port)
    deadline = time.monotonic() + timeout
    try:
        for digest, _size in image.blobs():
            while conn.request("HEAD", f"/v2/{repo}/blobs/{digest}").header("x-cache-status") != "HIT":
                if time.monotonic() > deadline:
                    raise BenchError(f"the cache did not store {digest} within {timeout}s")
                time.sleep(0.05)
    finally:
        conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    reference = ensure_reference()
    servers, parent = start(args.workdir, reference, args.link_rates)
    load_before = os.getloadavg()
    payload = Payload(max(args.layers))
    paths = [("loopback", "up", servers["upstream"])] + [
        (f"link {r // MiB} MiB/s", f"link{r // MiB}", servers[f"link{r // MiB}"]) for r in args.link_rates]
    times: dict[str, list[float]] = {}
    peak_rss = 0
    serial = 0
    try:
        for rep in range(args.reps):
            first = rep % 2 == 0
            with Monitor(servers["cache"].process.pid) as monitor:  # type: ignore[union-attr]
                warm_image = None
                for label, prefix, direct in paths:
                    serial += 1
                    image, tag = Image(payload, args.layers, serial), f"r{serial}"
                    push(servers["upstream"], "bench/app", tag, image)
                    for what in (["cold", "direct"] if first else ["direct", "cold"]):
                        if what == "cold":
                            seconds = pull(servers["cache"], f"{prefix}/bench/app", tag, image, args.parallel)
                            settle(servers["cache"], f"{prefix}/bench/app", image)
                        else:
                            seconds = pull(direct, "bench/app", tag, image, args.parallel)
                        times.setdefault(f"{label}: {what}", []).append(seconds)
                    if prefix == "up":
                        warm_image, warm_tag = image, tag
                assert warm_image is not None
                push(servers["local"], "bench/app", warm_tag, warm_image)
                for turn in range(WARM_TURNS):  # fast pulls: several pairs per repetition steady the median
                    for what in (["warm", "local"] if (first + turn) % 2 == 0 else ["local", "warm"]):
                        server, repo = (servers["cache"], "up/bench/app") if what == "warm" else \
                            (servers["local"], "bench/app")
                        times.setdefault(what, []).append(pull(server, repo, warm_tag, warm_image, args.parallel))
            peak_rss = max(peak_rss, monitor.peak_rss)
            total = sum(args.layers)
            print(f"rep {rep + 1}/{args.reps}: " + ", ".join(
                f"{k} {total / MiB / v[-1]:.0f} MiB/s" for k, v in times.items()), file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
        if args.keep:
            print(f"kept {parent}", file=sys.stderr)
        else:  # gigabytes of images: never left behind
            shutil.rmtree(parent, ignore_errors=True)
    load_after = os.getloadavg()
    total = sum(args.layers)
    rates = {k: round(total / MiB / statistics.median(v), 1) for k, v in times.items()}
    ratios = {f"{label}: cold vs direct": round(rates[f"{label}: cold"] / rates[f"{label}: direct"], 3)
              for label, _, _ in paths}
    ratios["warm vs local"] = round(rates["warm"] / rates["local"], 3)
    return {
        "image": {"layers": [size_label(s) for s in args.layers], "parallel": args.parallel, "reps": args.reps},
        "mib_per_s": rates,
        "ratios": ratios,
        "goals": GOALS,
        "cache_peak_rss_mib": round(peak_rss / MiB, 1),
        "load": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after],
                 "nproc": os.cpu_count()},
        "workdir": str(parent) if args.keep else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="256MiB,64MiB,16MiB,1MiB",
                   help="layer sizes of the image, comma-separated (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=3, help="blobs pulled at once, as docker does (default 3)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--link-rates", default="100MiB",
                   help="rates of the simulated links to the upstream, comma-separated; '' for none "
                        "(default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke test: small image, 2 repetitions")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--workdir", type=Path, default=None, help="parent of the servers' directories")
    p.add_argument("--keep", action="store_true", help="keep the servers' directories (removed by default)")
    args = p.parse_args(argv)
    if args.quick:
        args.layers, args.reps = "4MiB,1MiB", 2
    args.layers = [parse_size(s) for s in args.layers.split(",") if s.strip()]
    args.link_rates = [parse_size(s) for s in args.link_rates.split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    for key, ratio in result["ratios"].items():
        goal = GOALS["warm_vs_local"] if key.startswith("warm") else GOALS["cold_vs_upstream"]
        print(f"{key}: {ratio}x (goal {goal}x)")
    for key, rate in result["mib_per_s"].items():
        print(f"  {key}: {rate} MiB/s")
    print(f"cache peak RSS {result['cache_peak_rss_mib']} MiB; load average {result['load']['before']} before, "
          f"{result['load']['after']} after, {result['load']['nproc']} CPUs")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
