"""``python -m benchmarks.compare``: this registry against the reference, side by side, in one run.

Starts both registries (fresh directories, filesystem driver, free loopback ports), drives each with
the same client, alternating between them on every repetition, and prints a table and one JSON line
with each figure (median over repetitions), the ratio ours/reference, peak server RSS and CPU.

Figures (groups for ``--only``):

- ``push``: per size, POST+PUT, single POST ?digest=, 8 MiB PATCHes, and one whole-body PATCH with
  chunked transfer encoding in 32 KiB chunks (docker's way), each closed by PUT ?digest=;
- ``pull``: per size, with and without a client-side digest check; 4 concurrent pulls of one blob;
- ``small``: manifest PUT, manifest GET by tag, blob HEAD, tag list at N concurrent clients;
- ``concurrent``: 16 clients pushing 64 MiB each at once (docker's way), aggregate MB/s;
- ``catalog``: the whole ``/v2/_catalog`` of 10,000 repositories, in pages of 1,000 (``Link``);
- ``startup``: idle memory after start, and start-up time on empty storage and on storage holding
  the 10,000 repositories as the reference wrote them (no index of ours).

``--quick`` is a smoke-test mode.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .client import (
    Connection,
    Response,
    add_query,
    build_request,
    get_blob,
    path_of,
    run_small_requests,
)
from .servers import REFERENCE_BINARY, Monitor, Server, ensure_reference, start_servers

MiB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT_MANIFESTS = ", ".join(
    [OCI_MANIFEST, "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.v2+json"]
)
PUSH_TARGET, PULL_TARGET, PULL_4X_TARGET, SMALL_TARGET, FAST_TARGET = 2.0, 1.2, 1.6, 1.5, 2.5
CATALOG_TARGET = 2.0
RSS_LIMIT_MIB = 100
#: ours, idle after start (the issue's goal; the reference idles at ~22 MiB)
IDLE_RSS_LIMIT_MIB = 40.0
#: ours: start-up on full storage at most this many times the start-up on empty storage
STARTUP_GROWTH_LIMIT = 1.5
PUSH_MODES = ("monolithic", "single", "chunked", "whole")
GROUPS = ("push", "pull", "small", "concurrent", "catalog", "startup")


class BenchError(Exception):
    """A registry answered something a correct registry would not: the figure is not measured."""


def expect(response: Response, statuses: tuple[int, ...], what: str) -> Response:
    if response.status not in statuses:
        raise BenchError(f"{what}: HTTP {response.status} {response.body[:300]!r}")
    return response


# --- figures ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Figure:
    key: str
    label: str
    unit: str
    #: the goal: ours/reference at least this (a rate), or, with ``limit``, ours at most this
    target: float
    #: the goal is an upper bound on our own value (memory, seconds), not a ratio
    limit: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.limit:
            return {"label": self.label, "unit": self.unit, "limit": self.target}
        return {"label": self.label, "unit": self.unit, "target_ratio": self.target}

    def goal_text(self) -> str:
        return f"≤ {self.target:g}" if self.limit else f"≥ {self.target:.1f}"


@dataclasses.dataclass
class Sample:
    value: float
    wall: float
    peak_rss: int
    peak_process_rss: int
    server_cpu: float
    client_cpu: float
    note: str = ""


def size_label(size: int) -> str:
    if size % (1024 * MiB) == 0:
        return f"{size // (1024 * MiB)}GiB"
    if size % MiB == 0:
        return f"{size // MiB}MiB"
    return f"{size}B"


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1024, "M": MiB, "G": 1024 * MiB}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def figures_for(args: argparse.Namespace) -> list[Figure]:
    """Every figure this run measures, in table order (the smoke test checks the JSON against it)."""
    figures: list[Figure] = []
    labels = {
        "monolithic": "POST+PUT",
        "single": "POST ?digest=",
        "chunked": f"{size_label(args.chunk_size)} PATCHes",
        "whole": "one chunked PATCH",
    }
    if "push" in args.only:
        for size in args.sizes:
            s = size_label(size)
            figures += [Figure(f"push_{m}_{s}", f"push {s} {labels[m]}", "MB/s", PUSH_TARGET) for m in args.modes]
    if "pull" in args.only:
        for size in args.sizes:
            s = size_label(size)
            figures += [
                Figure(f"pull_{s}", f"pull {s}", "MB/s", PULL_TARGET),
                Figure(f"pull_verify_{s}", f"pull {s} + sha256 check", "MB/s", PULL_TARGET),
            ]
        s = size_label(max(args.sizes))
        figures.append(Figure(f"pull_4x_{s}", f"4 concurrent pulls {s}", "MB/s", PULL_4X_TARGET))
    if "small" in args.only:
        c = args.concurrency
        figures += [
            Figure("manifest_put", f"manifest PUT (c={c})", "req/s", SMALL_TARGET),
            Figure("manifest_get_tag", f"manifest GET by tag (c={c})", "req/s", FAST_TARGET),
            Figure("blob_head", f"blob HEAD (c={c})", "req/s", FAST_TARGET),
            Figure("tag_list", f"tag list, {args.tags} tags (c={c})", "req/s", SMALL_TARGET),
        ]
    if "concurrent" in args.only:
        figures.append(Figure(
            f"push_{args.push_clients}x_{size_label(args.push_each)}",
            f"{args.push_clients} concurrent pushes {size_label(args.push_each)}", "MB/s", PUSH_TARGET,
        ))
    if "catalog" in args.only:
        figures.append(Figure("catalog", f"catalog, {args.repos:,} repositories (pages of 1,000)",
                              "lists/s", CATALOG_TARGET))
    if "startup" in args.only:
        figures += [
            Figure("idle_rss", "idle RSS after start", "MiB", IDLE_RSS_LIMIT_MIB, limit=True),
            Figure("startup_empty", "start-up, empty storage", "s", 0, limit=True),
            Figure("startup_full", f"start-up, {args.repos:,} repositories stored", "s", 0, limit=True),
        ]
    return figures


# --- test data ----------------------------------------------------------------------------------


class Payload:
    """One random buffer, generated once; each push gets unique leading bytes and a digest taken
    before timing, so no registry can skip work for content it already holds."""

    def __init__(self, size: int, seed: int = 20261127) -> None:
        rng = random.Random(seed)
        self.data = bytearray(size)
        for offset in range(0, size, 64 * MiB):
            piece = min(64 * MiB, size - offset)
            self.data[offset : offset + piece] = rng.randbytes(piece)
        self.view = memoryview(self.data)
        self.serial = 0

    def fresh(self, size: int, offset: int = 0) -> tuple[memoryview, str]:
        self.serial += 1
        stamp = f"bench-{os.getpid()}-{self.serial}-{time.time_ns()}".encode().ljust(64, b".")
        self.data[offset : offset + len(stamp)] = stamp
        view = self.view[offset : offset + size]
        return view, "sha256:" + hashlib.sha256(view).hexdigest()

    def fresh_windows(self, n: int, size: int) -> list[tuple[memoryview, str]]:
        """``n`` disjoint blobs of ``size`` bytes, each with its own stamp (hashed on threads)."""
        stamps = []
        for i in range(n):
            self.serial += 1
            stamp = f"bench-{os.getpid()}-{self.serial}-{time.time_ns()}".encode().ljust(64, b".")
            self.data[i * size : i * size + len(stamp)] = stamp
            stamps.append(self.view[i * size : (i + 1) * size])
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            digests = list(pool.map(lambda v: "sha256:" + hashlib.sha256(v).hexdigest(), stamps))
        return list(zip(stamps, digests))


# --- one registry under test ----------------------------------------------------------------------


class Target:
    """One registry and everything the scenarios need to talk to it."""

    def __init__(self, server: Server, args: argparse.Namespace, payload: Payload) -> None:
        self.server = server
        self.args = args
        self.payload = payload
        self.conn = Connection(server.host, server.port)
        self.pull_blobs: dict[int, str] = {}
        self.layers: list[dict[str, Any]] = []
        self.config: dict[str, Any] = {}
        self.put_counter = 0

    @property
    def name(self) -> str:
        return self.server.name

    # pushes ---------------------------------------------------------------------------------------

    def push_monolithic(self, repo: str, view: memoryview, digest: str) -> str:
        location = self._start_upload(repo)
        self._put(location, digest, view)
        return ""

    def push_single(self, repo: str, view: memoryview, digest: str) -> str:
        """``POST ?digest=`` with the body. A registry that answers 202 (the reference) did not want
        the body (Expect: 100-continue keeps it from being sent); the client then PUTs it, as real
        clients do."""
        response = self.conn.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?digest={digest}",
            {"Content-Type": "application/octet-stream"},
            body=view,
            expect_continue=True,
        )
        expect(response, (201, 202), "POST ?digest=")
        if response.status == 201:
            return "201"
        self._put(response.header("location"), digest, view)
        return "202+PUT"

    def push_chunked(self, repo: str, view: memoryview, digest: str) -> str:
        location = self._start_upload(repo)
        chunk = self.args.chunk_size
        for offset in range(0, len(view), chunk):
            part = view[offset : offset + chunk]
            response = self.conn.request(
                "PATCH",
                path_of(location),
                {"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(part) - 1}"},
                body=part,
            )
            location = expect(response, (202,), "PATCH").header("location")
        self._put(location, digest, None)
        return ""

    def push_whole(self, repo: str, view: memoryview, digest: str, conn: Connection | None = None) -> str:
        """docker's way: POST, the whole blob in one PATCH of unknown length (chunked transfer
        encoding, one chunk per 32 KiB), then PUT ?digest= without a body."""
        conn = conn or self.conn
        location = self._start_upload(repo, conn)
        response = conn.request(
            "PATCH", path_of(location), {"Content-Type": "application/octet-stream"}, body=view,
            chunked=self.args.whole_chunk,
        )
        location = expect(response, (202,), "PATCH").header("location")
        self._put(location, digest, None, conn)
        return ""

    def push_concurrently(self, blobs: list[tuple[memoryview, str]]) -> str:
        """One client thread (own connection) per blob, all at once, each pushing docker's way."""
        errors: list[BaseException] = []

        def one(view: memoryview, digest: str) -> None:
            conn = Connection(self.server.host, self.server.port)
            try:
                self.push_whole("bench/concurrent", view, digest, conn)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=one, args=blob) for blob in blobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return ""

    def _start_upload(self, repo: str, conn: Connection | None = None) -> str:
        conn = conn or self.conn
        response = expect(conn.request("POST", f"/v2/{repo}/blobs/uploads/"), (202,), "POST upload")
        location = response.header("location")
        if not location:
            raise BenchError("POST upload: no Location")
        return location

    def _put(self, location: str, digest: str, body: memoryview | None, conn: Connection | None = None) -> None:
        target = add_query(path_of(location), f"digest={digest}")
        conn = conn or self.conn
        response = conn.request("PUT", target, {"Content-Type": "application/octet-stream"}, body=body)
        expect(response, (201,), "PUT upload")

    def check_blob(self, repo: str, digest: str, size: int) -> None:
        """Untimed: the pushed blob is there with the right size."""
        response = expect(self.conn.request("HEAD", f"/v2/{repo}/blobs/{digest}"), (200,), "HEAD pushed blob")
        if int(response.header("content-length", "-1")) != size:
            raise BenchError(f"HEAD pushed blob: Content-Length {response.header('content-length')} != {size}")

    def forget_blob(self, digest: str) -> None:
        """Untimed: drop a pushed blob's data so repetitions do not fill the disk; its dirty pages
        are then never written back, so no later figure pays for an earlier push's writeback."""
        shutil.rmtree(self.server.blob_dir(digest), ignore_errors=True)

    # pulls ----------------------------------------------------------------------------------------

    def prepare_pulls(self) -> None:
        for size in self.args.sizes:
            view, digest = self.payload.fresh(size)
            self.push_monolithic("bench/pull", view, digest)
            self.pull_blobs[size] = digest

    def pull(self, size: int, verify: bool, conn: Connection | None = None) -> None:
        digest = self.pull_blobs[size]
        response, got = get_blob(conn or self.conn, f"/v2/bench/pull/blobs/{digest}", verify)
        expect(response, (200,), "GET blob")
        if response.length != size:
            raise BenchError(f"GET blob: {response.length} bytes, expected {size}")
        if verify and f"sha256:{got}" != digest:
            raise BenchError("GET blob: digest mismatch")

    def pull_concurrently(self, size: int, n: int) -> None:
        conns = [Connection(self.server.host, self.server.port) for _ in range(n)]
        errors: list[BaseException] = []

        def one(conn: Connection) -> None:
            try:
                self.pull(size, False, conn)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(c,)) for c in conns]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for conn in conns:
            conn.close()
        if errors:
            raise errors[0]

    # small requests -------------------------------------------------------------------------------

    def manifest(self, n: int) -> bytes:
        layer = self.layers[n % len(self.layers)]
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.config,
            "layers": [layer],
            "annotations": {"org.example.bench.n": str(n)},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def prepare_small(self) -> None:
        """Blobs in both repositories, and ``--tags`` tags in bench/tags (pushed 16 at a time)."""
        rng = random.Random(7)
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
        layers = [rng.randbytes(1024) for _ in range(16)]
        for repo in ("bench/put", "bench/tags"):
            for blob in [config, *layers]:
                digest = "sha256:" + hashlib.sha256(blob).hexdigest()
                self.push_monolithic(repo, memoryview(blob), digest)
        self.config = _descriptor(OCI_CONFIG, config)
        self.layers = [_descriptor(OCI_LAYER, blob) for blob in layers]
        tags = self.args.tags
        result = run_small_requests(
            self.server.host, self.server.port, self.manifest_put_request("bench/tags", lambda n: f"t{n:05d}"),
            concurrency=self.args.concurrency, duration=3600, max_ops=tags,
        )
        if result.ops != tags:
            raise BenchError(f"creating {tags} tags: {result.ops} created, statuses {result.statuses}")
        listing = expect(self.conn.request("GET", "/v2/bench/tags/tags/list"), (200,), "tag list")
        found = len(json.loads(listing.body)["tags"])
        if found != tags:
            raise BenchError(f"tag list: {found} tags, expected {tags} (paginated without ?n=?)")
        got = expect(
            self.conn.request("GET", "/v2/bench/tags/manifests/t00001", {"Accept": ACCEPT_MANIFESTS}), (200,), "GET tag"
        )
        if got.body != self.manifest(1):
            raise BenchError("GET manifest by tag: body differs from the one pushed")

    def manifest_put_request(self, repo: str, tag: Callable[[int], str]) -> Callable[[int], Any]:
        authority = f"{self.server.host}:{self.server.port}"

        def make(n: int) -> tuple[bytes, bool, tuple[int, ...]]:
            body = self.manifest(n)
            head = build_request(
                "PUT", f"/v2/{repo}/manifests/{tag(n)}", authority, {"Content-Type": OCI_MANIFEST}, len(body)
            )
            return head + body, False, (201,)

        return make

    def small(self, kind: str) -> tuple[float, str]:
        authority = f"{self.server.host}:{self.server.port}"
        tags = self.args.tags
        if kind == "manifest_put":
            base = self.put_counter
            make = self.manifest_put_request("bench/put", lambda n: f"p{base + n:07d}")
        else:
            if kind == "manifest_get_tag":
                requests = [
                    build_request("GET", f"/v2/bench/tags/manifests/t{n:05d}", authority, {"Accept": ACCEPT_MANIFESTS})
                    for n in range(tags)
                ]
                is_head = False
            elif kind == "blob_head":
                requests = [
                    build_request("HEAD", f"/v2/bench/tags/blobs/{layer['digest']}", authority)
                    for layer in [self.config, *self.layers]
                ]
                is_head = True
            else:
                requests = [build_request("GET", "/v2/bench/tags/tags/list", authority)]
                is_head = False

            def make(n: int) -> tuple[bytes, bool, tuple[int, ...]]:
                return requests[n % len(requests)], is_head, (200,)

        result = run_small_requests(
            self.server.host, self.server.port, make, concurrency=self.args.concurrency, duration=self.args.duration
        )
        if kind == "manifest_put":
            self.put_counter += result.ops + result.errors + self.args.concurrency
        if result.errors:
            raise BenchError(f"{kind}: {result.errors} failed requests, statuses {result.statuses}")
        return result.ops / result.elapsed, f"{result.ops} requests"

    def catalog_listing(self) -> tuple[float, str]:
        """Whole catalogs per second: ``?n=1000`` pages, following ``Link`` to the end, for at
        least ``duration`` seconds (and at least once)."""
        t0 = time.perf_counter()
        lists = 0
        while True:
            names: list[str] = []
            target: str | None = "/v2/_catalog?n=1000"
            pages = 0
            while target:
                response = expect(self.conn.request("GET", target), (200,), "GET _catalog")
                names += json.loads(response.body)["repositories"]
                pages += 1
                link = response.header("link")
                target = path_of(link.split(";")[0].strip().strip("<>")) if link else None
            if len(names) < self.args.repos or len(set(names)) != len(names):
                raise BenchError(f"catalog: {len(names)} names ({len(set(names))} distinct) in {pages} pages, "
                                 f"expected at least {self.args.repos}")
            lists += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= self.args.duration:
                return lists / elapsed, f"{lists} listings of {len(names)} names, {pages} pages"


def catalog_repo(i: int) -> str:
    """The ``i``-th repository of the catalog figure: 100 namespaces of 100 repositories."""
    return f"cat{i // 100:03d}/r{i:05d}"


def prepare_catalog(targets: list[Target], args: argparse.Namespace) -> None:
    """``args.repos`` repositories, each holding one manifest (a config, no layers), created through
    the first registry's API (ours when it runs: its catalog index is written as pushes write it),
    then copied into the other registries' storage (the layout is the same)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"},
                         "bench": "catalog"}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    for target in targets:
        target.push_monolithic("bench/catalog", memoryview(config), config_digest)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _descriptor(OCI_CONFIG, config),
                       "layers": []}, separators=(",", ":")).encode()
    manifest_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    source = sorted(targets, key=lambda t: t.name != "ours")[0]
    server = source.server
    authority = f"{server.host}:{server.port}"

    def mount(n: int) -> tuple[bytes, bool, tuple[int, ...]]:
        target = f"/v2/{catalog_repo(n)}/blobs/uploads/?mount={config_digest}&from=bench/catalog"
        return build_request("POST", target, authority, length=0), False, (201,)

    def put(n: int) -> tuple[bytes, bool, tuple[int, ...]]:
        head = build_request("PUT", f"/v2/{catalog_repo(n)}/manifests/latest", authority,
                             {"Content-Type": OCI_MANIFEST}, len(body))
        return head + body, False, (201,)

    for what, make in (("mounts", mount), ("manifests", put)):
        result = run_small_requests(server.host, server.port, make, concurrency=args.concurrency, duration=7200,
                                    max_ops=args.repos)
        if result.ops != args.repos:
            raise BenchError(f"catalog set-up: {result.ops} of {args.repos} {what}, statuses {result.statuses}")
    repositories = Path("docker/registry/v2/repositories")
    tops = sorted({catalog_repo(i).split("/")[0] for i in range(args.repos)})
    for target in targets:
        if target is source:
            continue
        for top in tops:
            shutil.copytree(server.root / repositories / top, target.server.root / repositories / top,
                            dirs_exist_ok=True)
        shutil.copytree(server.blob_dir(manifest_digest), target.server.blob_dir(manifest_digest), dirs_exist_ok=True)


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}


# --- running and measuring -----------------------------------------------------------------------


@contextlib.contextmanager
def py_spy(pid: int, path: Path | None) -> Iterator[None]:
    """Record our server with py-spy (collapsed stacks) while the block runs, when asked to."""
    if path is None:
        yield
        return
    binary = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if binary is None:
        raise SystemExit("--py-spy needs py-spy: pip install py-spy")
    proc = subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", "250",
         "--output", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(target: Target, run: Callable[[], tuple[float, str]], profile: Path | None) -> Sample:
    """Run one timed step under the RSS/CPU monitor; ``run`` returns (rate, note)."""
    assert target.server.process is not None
    with py_spy(target.server.process.pid, profile), Monitor(target.server.process.pid) as monitor:
        cpu0, t0 = time.process_time(), time.perf_counter()
        value, note = run()
        wall = time.perf_counter() - t0
        client_cpu = time.process_time() - cpu0
    return Sample(value, wall, monitor.peak_rss, monitor.peak_process_rss, monitor.cpu_seconds, client_cpu, note)


def timed_transfer(nbytes: int, fn: Callable[[], str]) -> Callable[[], tuple[float, str]]:
    def run() -> tuple[float, str]:
        t0 = time.perf_counter()
        note = fn() or ""
        return nbytes / (time.perf_counter() - t0) / 1e6, note

    return run


class Runner:
    """Alternates the registries on every repetition and keeps every sample."""

    def __init__(self, targets: list[Target], args: argparse.Namespace) -> None:
        self.targets = targets
        self.args = args
        self.samples: dict[str, dict[str, list[Sample]]] = {}
        self.errors: dict[str, dict[str, str]] = {}

    def profile_path(self, target: Target, key: str, rep: int) -> Path | None:
        if self.args.py_spy is None or target.name != "ours" or rep != 0:
            return None
        self.args.py_spy.mkdir(parents=True, exist_ok=True)
        return self.args.py_spy / f"{key}.txt"

    def figure(
        self,
        key: str,
        prepare: Callable[[Target], Any],
        run: Callable[[Target, Any], Callable[[], tuple[float, str]]],
        after: Callable[[Target, Any], None] | None = None,
    ) -> None:
        """Measure one figure ``reps`` times per registry, alternating which one goes first."""
        for rep in range(self.args.reps):
            order = self.targets if rep % 2 == 0 else self.targets[::-1]
            for target in order:
                if key in self.errors.get(target.name, {}):
                    continue
                try:
                    state = prepare(target)
                    sample = measure(target, run(target, state), self.profile_path(target, key, rep))
                    if after is not None:
                        after(target, state)
                except Exception as exc:  # noqa: BLE001 - one failed figure must not end the run
                    self.errors.setdefault(target.name, {})[key] = f"{type(exc).__name__}: {exc}"
                    target.conn.close()
                    print(f"  {target.name:9} {key}: FAILED {exc}", file=sys.stderr)
                    continue
                self.record(key, target.name, sample)

    def record(self, key: str, name: str, sample: Sample) -> None:
        self.samples.setdefault(key, {}).setdefault(name, []).append(sample)
        if self.args.verbose:
            print(f"  {name:9} {key}: {sample.value:,.3g} ({sample.note})", file=sys.stderr)

    def fail(self, target: Target, key: str, exc: BaseException) -> None:
        self.errors.setdefault(target.name, {})[key] = f"{type(exc).__name__}: {exc}"
        target.conn.close()
        print(f"  {target.name:9} {key}: FAILED {exc}", file=sys.stderr)


def run_all(targets: list[Target], args: argparse.Namespace, payload: Payload) -> Runner:
    runner = Runner(targets, args)

    def sync_after_push(target: Target, state: tuple[str, int, str]) -> None:
        repo, size, digest = state
        target.check_blob(repo, digest, size)
        target.forget_blob(digest)

    if "push" in args.only:
        for size in args.sizes:
            s = size_label(size)
            for mode in args.modes:

                def prepare(target: Target, size: int = size) -> tuple[str, int, str]:
                    os.sync()
                    view, digest = payload.fresh(size)
                    target.push_view = view  # type: ignore[attr-defined]
                    return "bench/push", size, digest

                def run(target: Target, state: tuple[str, int, str], mode: str = mode) -> Callable[[], tuple[float, str]]:
                    repo, size, digest = state
                    push = getattr(target, f"push_{mode}")
                    return timed_transfer(size, lambda: push(repo, target.push_view, digest))  # type: ignore[attr-defined]

                print(f"push {mode} {s}", file=sys.stderr)
                runner.figure(f"push_{mode}_{s}", prepare, run, sync_after_push)

    if "pull" in args.only:
        for target in targets:
            try:
                target.prepare_pulls()
            except Exception as exc:  # noqa: BLE001
                for size in args.sizes:
                    for key in (f"pull_{size_label(size)}", f"pull_verify_{size_label(size)}"):
                        runner.errors.setdefault(target.name, {})[key] = f"set-up: {exc}"
                runner.errors.setdefault(target.name, {})[f"pull_4x_{size_label(max(args.sizes))}"] = f"set-up: {exc}"
                target.conn.close()
        os.sync()
        for size in args.sizes:
            for verify in (False, True):
                key = f"pull_{'verify_' if verify else ''}{size_label(size)}"
                print(f"pull {key}", file=sys.stderr)
                runner.figure(
                    key,
                    lambda target: None,
                    lambda target, _state, size=size, verify=verify: timed_transfer(
                        size, lambda: target.pull(size, verify) or ""
                    ),
                )
        big = max(args.sizes)
        print(f"pull 4x {size_label(big)}", file=sys.stderr)
        runner.figure(
            f"pull_4x_{size_label(big)}",
            lambda target: None,
            lambda target, _state: timed_transfer(4 * big, lambda: target.pull_concurrently(big, 4) or ""),
        )

    if "small" in args.only:
        kinds = ("manifest_put", "manifest_get_tag", "blob_head", "tag_list")
        for target in targets:
            try:
                target.prepare_small()
            except Exception as exc:  # noqa: BLE001
                for kind in kinds:
                    runner.errors.setdefault(target.name, {})[kind] = f"set-up: {exc}"
                target.conn.close()
        for kind in kinds:
            print(f"small {kind}", file=sys.stderr)
            runner.figure(kind, lambda target: None, lambda target, _state, kind=kind: lambda: target.small(kind))

    if "concurrent" in args.only:
        n, each = args.push_clients, args.push_each
        key = f"push_{n}x_{size_label(each)}"
        print(f"push {n} x {size_label(each)} at once", file=sys.stderr)

        def prepare_many(target: Target) -> list[tuple[memoryview, str]]:
            os.sync()
            return payload.fresh_windows(n, each)

        def after_many(target: Target, blobs: list[tuple[memoryview, str]]) -> None:
            for view, digest in blobs:
                target.check_blob("bench/concurrent", digest, len(view))
                target.forget_blob(digest)

        runner.figure(
            key, prepare_many,
            lambda target, blobs: timed_transfer(n * each, lambda: target.push_concurrently(blobs)),
            after_many,
        )

    if "catalog" in args.only or "startup" in args.only:
        print(f"catalog: creating {args.repos:,} repositories", file=sys.stderr)
        try:
            prepare_catalog(targets, args)
        except Exception as exc:  # noqa: BLE001
            for target in targets:
                runner.errors.setdefault(target.name, {})["catalog"] = f"set-up: {exc}"
                runner.errors.setdefault(target.name, {})["startup_full"] = f"set-up: {exc}"
            print(f"  catalog set-up FAILED: {exc}", file=sys.stderr)
    if "catalog" in args.only:
        print("catalog listing", file=sys.stderr)
        runner.figure("catalog", lambda target: None, lambda target, _state: target.catalog_listing)

    if "startup" in args.only:
        print("start-up and idle memory", file=sys.stderr)
        measure_startup(targets, args, runner)
    return runner


def _start_timed(server: Server) -> float:
    """Start ``server`` and return the seconds until it first answered ``GET /v2/`` with 200."""
    t0 = time.perf_counter()
    server.start(poll=0.01)
    return time.perf_counter() - t0


def measure_startup(targets: list[Target], args: argparse.Namespace, runner: Runner) -> None:
    """Start-up time (spawn to the first 200 on ``/v2/``) on empty storage, with the idle RSS a
    second after it; then on the run's storage (the catalog repositories included) without our
    indexes, as the reference would have left it. Alternating, ``reps`` times each."""
    for rep in range(args.reps):
        order = targets if rep % 2 == 0 else targets[::-1]
        for target in order:
            server = target.server
            target.conn.close()
            server.stop()
            empty = server.root.parent / f"empty-{rep}"
            shutil.rmtree(empty, ignore_errors=True)
            empty.mkdir()
            probe = dataclasses.replace(server, root=empty, process=None,
                                        command=[c.replace(str(server.config_path), str(server.config_path) + ".empty")
                                                 for c in server.command])
            config_text = server.config_path.read_text().replace(str(server.root), str(empty))
            Path(str(server.config_path) + ".empty").write_text(config_text)
            try:
                seconds = _start_timed(probe)
                Connection(probe.host, probe.port).request("GET", "/v2/")
                time.sleep(1.0)
                assert probe.process is not None
                monitor = Monitor(probe.process.pid)
                rss_tree = monitor.rss(monitor._tree())
                runner.record("startup_empty", target.name, Sample(seconds, seconds, rss_tree, monitor.peak_process_rss, 0, 0))
                runner.record("idle_rss", target.name, Sample(rss_tree / MiB, 1.0, rss_tree, monitor.peak_process_rss, 0, 0))
            except Exception as exc:  # noqa: BLE001
                runner.fail(target, "startup_empty", exc)
                runner.fail(target, "idle_rss", exc)
            finally:
                probe.stop()
                shutil.rmtree(empty, ignore_errors=True)
            if "startup_full" in runner.errors.get(target.name, {}):
                server.start()
                continue
            # the run's storage as the reference leaves it: none of our index directories
            shutil.rmtree(server.root / "docker/registry/v2/repositories/_catalog", ignore_errors=True)
            try:
                seconds = _start_timed(server)
                assert server.process is not None
                monitor = Monitor(server.process.pid)
                rss_tree = monitor.rss(monitor._tree())
                runner.record("startup_full", target.name, Sample(seconds, seconds, rss_tree, monitor.peak_process_rss, 0, 0))
            except Exception as exc:  # noqa: BLE001
                runner.fail(target, "startup_full", exc)
                server.start()


# --- report -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 1024**3, 1)
    except Exception:  # noqa: BLE001
        mem_gib = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _shown(value: float) -> float:
    """A measured value as reported: one decimal, but three significant digits below 10 (a
    start-up of 0.04 s must not read as 0)."""
    return round(value, 1) if abs(value) >= 10 else float(f"{value:.3g}")


def summarize(runner: Runner, figures: list[Figure]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fig in figures:
        entry = fig.to_json()
        for name in ("reference", "ours"):
            samples = runner.samples.get(fig.key, {}).get(name, [])
            short = "ref" if name == "reference" else "ours"
            if samples:
                entry[short] = _shown(statistics.median(s.value for s in samples))
                entry[f"{short}_samples"] = [_shown(s.value) for s in samples]
                entry[f"{short}_peak_rss_mib"] = round(max(s.peak_rss for s in samples) / MiB, 1)
                entry[f"{short}_peak_process_rss_mib"] = round(max(s.peak_process_rss for s in samples) / MiB, 1)
                entry[f"{short}_server_cpu_pct"] = round(
                    statistics.median(100 * s.server_cpu / s.wall for s in samples), 0
                )
                entry[f"{short}_client_cpu_pct"] = round(
                    statistics.median(100 * s.client_cpu / s.wall for s in samples), 0
                )
                # CPU per MB or per request: the efficiency figure that load from other processes skews least
                entry[f"{short}_server_cpu_ms_per_unit"] = round(
                    statistics.median(1000 * s.server_cpu / max(s.value * s.wall, 1e-9) for s in samples), 3
                )
                notes = sorted({s.note for s in samples if s.note})
                if notes:
                    entry[f"{short}_note"] = "; ".join(notes)
            else:
                entry[short] = None
                entry[f"{short}_error"] = runner.errors.get(name, {}).get(fig.key, "not measured")
        ref, ours = entry.get("ref"), entry.get("ours")
        entry["ratio"] = round(ours / ref, 2) if ref and ours is not None else None
        if fig.key == "startup_full":  # independent of what is stored: against our own empty start
            empty = out.get("startup_empty", {}).get("ours")
            entry["ours_growth"] = round(ours / empty, 2) if ours is not None and empty else None
            entry["met"] = entry["ours_growth"] is not None and entry["ours_growth"] <= STARTUP_GROWTH_LIMIT
        elif fig.limit:
            entry["met"] = None if not fig.target else ours is not None and ours <= fig.target
        else:
            entry["met"] = entry["ratio"] is not None and entry["ratio"] >= fig.target
        out[fig.key] = entry
    return out


def goal_cell(fig: Figure, entry: dict[str, Any]) -> tuple[str, str]:
    """(goal, verdict) for the tables."""
    if fig.key == "startup_full":
        growth = entry.get("ours_growth")
        return f"≤ {STARTUP_GROWTH_LIMIT:g}× empty", ("-" if growth is None else f"{growth:.2f}×") + (
            " ok" if entry["met"] else " MISS")
    if entry["met"] is None:
        return "-", ""
    return fig.goal_text(), "ok" if entry["met"] else "MISS"


def goals(summary: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    """The memory goal: ours under 100 MiB RSS while pushing the largest blob, flat with size.
    Judged on the whole process tree (with ``--workers N`` that sums N processes; the largest
    single process is reported too)."""

    def per_size(field: str) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for size in sizes:
            keys = (f"push_{m}_{size_label(size)}" for m in ("monolithic", "single", "chunked"))
            rss = [summary[k][field] for k in keys if k in summary and summary[k].get(field) is not None]
            out[size_label(size)] = max(rss) if rss else None
        return out

    tree = per_size("ours_peak_rss_mib")
    values = [v for v in tree.values() if v is not None]
    largest = tree.get(size_label(max(sizes))) if sizes else None
    return {
        "ours_push_peak_rss_mib": tree,
        "ours_push_peak_process_rss_mib": per_size("ours_peak_process_rss_mib"),
        "rss_under_limit": largest is not None and largest < RSS_LIMIT_MIB,
        "rss_flat": len(values) == len(tree) and bool(values) and max(values) - min(values) < 16,
    }


def markdown(result: dict[str, Any], figures: list[Figure], argv: list[str] | None) -> str:
    """The run as Markdown: machine, command, the table (for benchmarks/RESULTS.md)."""
    m = result["machine"]
    command = " ".join(["python -m benchmarks.compare", *(sys.argv[1:] if argv is None else argv)])
    out = [
        f"Run {m['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; reference: {result['reference']}. Load average (1, 5, 15 min) "
        f"before {m.get('load_before')}, after {m.get('load_after')}.",
        "",
        f"Command: `{command}`",
        "",
        "| figure | unit | reference | ours | ratio | goal | peak RSS MiB ref / ours | server CPU % ref / ours "
        "| server CPU ms per MB or request ref / ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fig in figures:
        e = result["figures"][fig.key]
        ratio = "-" if e["ratio"] is None else f"{e['ratio']:.2f}"
        goal_text, verdict = goal_cell(fig, e)
        goal = f"{goal_text} {verdict.replace('MISS', '**missed**')}".strip()
        out.append(
            f"| {fig.label} | {fig.unit} | {_num(e['ref'])} | {_num(e['ours'])} | {ratio} | {goal} "
            f"| {_num(e.get('ref_peak_rss_mib'))} / {_num(e.get('ours_peak_rss_mib'))} "
            f"| {_num(e.get('ref_server_cpu_pct'))} / {_num(e.get('ours_server_cpu_pct'))} "
            f"| {_ms(e.get('ref_server_cpu_ms_per_unit'))} / {_ms(e.get('ours_server_cpu_ms_per_unit'))} |"
        )
    g = result.get("goals") or {}
    if g:
        out += ["", f"Ours, peak RSS while pushing (MiB, whole process tree): {g['ours_push_peak_rss_mib']}; "
                f"goal < {RSS_LIMIT_MIB} MiB: {'met' if g['rss_under_limit'] else 'missed'}, "
                f"flat with size: {'yes' if g['rss_flat'] else 'no'}."]
    return "\n".join(out) + "\n"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def print_table(summary: dict[str, Any], figures: list[Figure], out: Any = sys.stdout) -> None:
    header = (
        f"{'figure':44} {'unit':7} {'reference':>10} {'ours':>10} {'ratio':>6} {'goal':>14} {'':>10}  "
        f"{'RSS MiB ref/ours':>16}  {'srv CPU% ref/ours':>17}  {'cli CPU% ref/ours':>17}  "
        f"{'srv CPU ms/MB or /req':>21}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)

    num = _num

    for fig in figures:
        e = summary[fig.key]
        ratio = "-" if e["ratio"] is None else f"{e['ratio']:.2f}"
        goal_text, mark = goal_cell(fig, e)
        rss = f"{num(e.get('ref_peak_rss_mib'))}/{num(e.get('ours_peak_rss_mib'))}"
        srv = f"{num(e.get('ref_server_cpu_pct'))}/{num(e.get('ours_server_cpu_pct'))}"
        cli = f"{num(e.get('ref_client_cpu_pct'))}/{num(e.get('ours_client_cpu_pct'))}"
        per = f"{_ms(e.get('ref_server_cpu_ms_per_unit'))}/{_ms(e.get('ours_server_cpu_ms_per_unit'))}"
        print(
            f"{fig.label:44} {fig.unit:7} {num(e['ref']):>10} {num(e['ours']):>10} {ratio:>6} "
            f"{goal_text:>14} {mark:>10}  {rss:>16}  {srv:>17}  {cli:>17}  {per:>21}",
            file=out,
        )
    for fig in figures:
        e = summary[fig.key]
        for short in ("ref", "ours"):
            if f"{short}_error" in e:
                print(f"  {fig.key} ({short}): {e[f'{short}_error']}", file=out)


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke-test mode: 16+32 MiB, 1 rep, 0.3 s, 50 tags, 4 x 4 MiB at once, 200 repositories")
    parser.add_argument("--sizes", help="blob sizes, comma-separated (default 256MiB,1GiB)")
    parser.add_argument("--reps", type=int, help="repetitions per registry (default 3; median reported)")
    parser.add_argument("--duration", type=float, help="seconds per small-request repetition (default 3)")
    parser.add_argument("--tags", type=int, help="tags in the tag-list repository (default 1000)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients for small requests (default 16)")
    parser.add_argument("--chunk-size", default="8MiB", help="PATCH size for chunked pushes (default 8MiB)")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"figure groups (default all): {','.join(GROUPS)}")
    parser.add_argument("--modes", default=",".join(PUSH_MODES),
                        help=f"push modes of the push group (default all): {','.join(PUSH_MODES)}")
    parser.add_argument("--whole-chunk", default="32KiB",
                        help="chunk size of the whole-body PATCH (chunked transfer; default 32KiB, as docker)")
    parser.add_argument("--push-clients", type=int, help="clients of the concurrent pushes (default 16)")
    parser.add_argument("--push-each", help="blob size of each concurrent push (default 64MiB)")
    parser.add_argument("--repos", type=int, help="repositories of the catalog figure (default 10000)")
    parser.add_argument("--workers", type=int, help="our http.workers (default: the config default)")
    parser.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for our server (e.g. REGISTRY_NO_UVLOOP=1); repeatable")
    parser.add_argument("--registries", default="reference,ours", help="which to run (default both)")
    parser.add_argument("--reference", default=REFERENCE_BINARY, help="reference registry binary")
    parser.add_argument("--workdir", type=Path, help="parent for the registries' directories (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the registries' directories and logs")
    parser.add_argument("--json", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--markdown", type=Path, help="also write the machine, command and table as Markdown")
    parser.add_argument("--py-spy", type=Path, help="record our server with py-spy per figure into this dir")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every sample")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = [parse_size(s) for s in (args.sizes or ("16MiB,32MiB" if quick else "256MiB,1GiB")).split(",")]
    args.reps = args.reps or (1 if quick else 3)
    args.duration = args.duration or (0.3 if quick else 3.0)
    args.tags = args.tags or (50 if quick else 1000)
    args.chunk_size = parse_size(args.chunk_size)
    args.whole_chunk = parse_size(args.whole_chunk)
    args.push_clients = args.push_clients or (4 if quick else 16)
    args.push_each = parse_size(args.push_each or ("4MiB" if quick else "64MiB"))
    args.repos = args.repos or (200 if quick else 10_000)
    args.only = {part.strip() for part in args.only.split(",") if part.strip()}
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = (args.only - set(GROUPS)) | (set(args.modes) - set(PUSH_MODES))
    if unknown:
        parser.error(f"unknown group or mode: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = figures_for(args)
    reference = ensure_reference(args.reference)
    version = subprocess.run([reference, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"generating {size_label(max(args.sizes))} of test data", file=sys.stderr)
    load = os.getloadavg()
    payload = Payload(max(max(args.sizes), args.push_clients * args.push_each if "concurrent" in args.only else 0))
    names = tuple(n.strip() for n in args.registries.split(","))
    ours_env = dict(item.split("=", 1) for item in args.ours_env)
    servers, parent = start_servers(args.workdir, reference, args.workers, ours_env, names)
    try:
        for server in servers:
            assert server.process is not None
            print(f"{server.name}: pid {server.process.pid}, port {server.port}, root {server.root}", file=sys.stderr)
        targets = [Target(server, args, payload) for server in servers]
        runner = run_all(targets, args, payload)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {parent}", file=sys.stderr)
        else:
            shutil.rmtree(parent, ignore_errors=True)
    summary = summarize(runner, figures)
    result = {
        "machine": {**machine(), "load_before": [round(x, 1) for x in load],
                    "load_after": [round(x, 1) for x in os.getloadavg()]},
        "reference": version,
        "params": {
            "sizes": [size_label(s) for s in args.sizes],
            "reps": args.reps,
            "duration_s": args.duration,
            "tags": args.tags,
            "concurrency": args.concurrency,
            "chunk": size_label(args.chunk_size),
            "modes": args.modes,
            "whole_chunk": size_label(args.whole_chunk),
            "push_clients": args.push_clients,
            "push_each": size_label(args.push_each),
            "repos": args.repos,
            "workers": args.workers,
            "ours_env": args.ours_env,
        },
        "figures": summary,
        "goals": goals(summary, args.sizes) if "push" in args.only else {},
    }
    print()
    print_table(summary, figures)
    if result["goals"]:
        g = result["goals"]
        print(
            f"ours peak RSS while pushing (MiB, process tree): {g['ours_push_peak_rss_mib']}; largest process: "
            f"{g['ours_push_peak_process_rss_mib']} (goal < {RSS_LIMIT_MIB} MiB, flat with size)"
        )
    if args.markdown:
        args.markdown.write_text(markdown(result, figures, argv))
    line = json.dumps(result, separators=(",", ":"))
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
