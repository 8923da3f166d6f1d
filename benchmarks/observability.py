"""``python -m benchmarks.observability``: what metrics and JSON logs cost, on vs off, in one run.

Starts two of our registries on fresh directories of the same disk, the same config except:

- ``off``: the benchmark's usual config (no debug server, ``log.formatter: text``);
- ``on``:  Prometheus metrics on ``http.debug.addr`` (scraped every ``--scrape-interval`` seconds
  while measuring, as Prometheus would), ``log.formatter: json`` with ``log.fields``.

Both keep the access log off by default (it is its own switch, ``log.accesslog.disabled``, and
costs the same line in either format); ``--access-log`` turns it on for both, so the pair then
compares text access lines without metrics against JSON access lines with metrics. The runs
alternate between the two on every repetition (medians reported); figures: manifest GET by tag at
``--concurrency`` clients and a push (POST + PUT) of ``--size``. The goal: ``on`` within 3% of
``off`` (ratio >= 0.97), and the server CPU per request or per MB, which load from other
processes skews least (medians of the per-repetition values). ``--same`` runs two identical
``off`` registries: the difference it shows is this machine's noise floor; ``--on metrics`` or
``--on json`` turns on one of the two.

``--instructions`` adds the figure that load from other processes cannot move: CPU instructions
per manifest GET of each server, counted by valgrind's callgrind (Debian package ``valgrind``).
Both servers run under it with counting off; it is switched on only around ``--instr-ops``
GETs at ``--concurrency`` clients per server (start-up, tag pushes and warm-up are not counted).
Callgrind counts user space only; the system calls of a GET are the same in both variants.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .client import build_request, run_small_requests
from .compare import ACCEPT_MANIFESTS, Payload, Runner, Target, machine, parse_size, size_label, timed_transfer
from .servers import Server, free_port, registry_config

GOAL = 0.97


def observed_config(root: Path, port: int, debug_port: int | None, access_log: bool,
                    parts: frozenset[str] = frozenset({"metrics", "json"})) -> dict[str, Any]:
    config = registry_config(root, port, reference=False)
    config["log"]["accesslog"] = {"disabled": not access_log}
    if debug_port is not None:
        config["http"]["debug"] = {"addr": f"127.0.0.1:{debug_port}",
                                   "prometheus": {"enabled": "metrics" in parts}}
        if "json" in parts:
            config["log"].update(formatter="json", fields={"service": "registry", "environment": "bench"})
    return config


class Scraper:
    """Scrapes ``/metrics`` every ``interval`` seconds while a figure runs (as Prometheus would)."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    resp.read()
                self.scrapes += 1
            except OSError:
                pass

    def __enter__(self) -> "Scraper":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="256MiB", help="push size (default 256MiB)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per variant (default 5; medians)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per manifest GET repetition")
    parser.add_argument("--tags", type=int, default=200, help="tags the GETs cycle through (default 200)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--access-log", action="store_true", help="access log on in both variants")
    parser.add_argument("--scrape-interval", type=float, default=15.0,
                        help="seconds between scrapes of the on variant (default 15, a common Prometheus setting)")
    parser.add_argument("--only", default="get,push", help="figures: get,push (default both)")
    parser.add_argument("--same", action="store_true",
                        help="both variants off (an A/A run: the noise floor of this machine)")
    parser.add_argument("--on", default="metrics,json",
                        help="what the on variant turns on: metrics, json (default both; to see each one's share)")
    parser.add_argument("--instructions", action="store_true",
                        help="also count CPU instructions per manifest GET under callgrind (needs valgrind)")
    parser.add_argument("--instructions-only", action="store_true", help="only the instruction figure")
    parser.add_argument("--instr-ops", type=int, default=2000, help="GETs counted per server and repetition (default 2000)")
    parser.add_argument("--instr-reps", type=int, default=2, help="instruction repetitions per server (default 2)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    args.size = parse_size(args.size)
    args.figures = {part.strip() for part in args.only.split(",") if part.strip()}
    # what compare.Target and compare.Runner read
    args.sizes, args.chunk_size, args.py_spy, args.only = [args.size], 8 << 20, None, {"push", "small"}
    args.verbose = False
    return args


def _variants(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """(name, on?) of the two servers."""
    return [("off", False), ("on", not args.same)]


def _write_config(args: argparse.Namespace, directory: Path, on: bool, debug_port: int) -> tuple[Path, Path, int]:
    root = directory / "data"
    root.mkdir(parents=True)
    port = free_port()
    config_path = directory / "config.yml"
    config_path.write_text(yaml.safe_dump(observed_config(root, port, debug_port if on else None, args.access_log,
                                                          frozenset(p.strip() for p in args.on.split(",")))))
    return root, config_path, port


def _callgrind_total(dump: Path) -> int:
    text = dump.read_text(errors="replace")
    match = re.search(r"^totals: (\d+)", text, re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(match.group(1))


def _await_dump(directory: Path, before: set[Path], name: str, timeout: float = 180.0) -> int:
    """The instruction total of the dump callgrind writes after ``callgrind_control -d`` (it is
    written while we look: read once it holds its totals line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for dump in set(directory.glob("callgrind.out.*")) - before:
            try:
                return _callgrind_total(dump)
            except RuntimeError:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"{name}: callgrind wrote no complete dump in {timeout:.0f} s")


def count_instructions(args: argparse.Namespace, parent: Path) -> dict[str, Any]:
    """Instructions per manifest GET of each variant under callgrind (see the module docstring)."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    servers: list[Server] = []
    per_request: dict[str, list[float]] = {}
    try:
        for name, on in _variants(args):
            directory = parent / f"instr-{name}"
            root, config_path, port = _write_config(args, directory, on, free_port())
            command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                       f"--callgrind-out-file={directory / 'callgrind.out'}",
                       sys.executable, "-m", "registry", "serve", str(config_path)]
            server = Server(name, command, root, port, directory / "server.log")
            server.start(timeout=600)
            servers.append(server)
        targets = [Target(s, args, Payload(1 << 20)) for s in servers]
        for target in targets:
            target.prepare_small()

        def get(server: Server, ops: int) -> int:
            authority = f"{server.host}:{server.port}"
            requests = [build_request("GET", f"/v2/bench/tags/manifests/t{n:05d}", authority,
                                      {"Accept": ACCEPT_MANIFESTS}) for n in range(args.tags)]
            result = run_small_requests(server.host, server.port, lambda n: (requests[n % len(requests)], False, (200,)),
                                        concurrency=args.concurrency, duration=1e9, max_ops=ops)
            if result.errors:
                raise RuntimeError(f"{server.name}: {result.errors} failed GETs")
            return result.ops

        for server in servers:
            get(server, 300)  # warm: caches, lazily built routes, first-call paths
        for rep in range(args.instr_reps):
            for server in servers:
                assert server.process is not None
                pid = str(server.process.pid)
                directory = server.log_path.parent
                before = set(directory.glob("callgrind.out.*"))
                subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
                ops = get(server, args.instr_ops)
                subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
                subprocess.run(["callgrind_control", "-d", f"rep{rep}", pid], check=True, capture_output=True)
                total = _await_dump(directory, before, server.name)
                if total <= 0:
                    raise RuntimeError(f"{server.name}: callgrind counted no instructions")
                per_request.setdefault(server.name, []).append(total / ops)
                print(f"instructions {server.name} rep {rep}: {total / ops / 1000:.1f}k per GET", file=sys.stderr)
    finally:
        for server in servers:
            server.stop()
    off, on = (min(per_request[name]) for name, _ in _variants(args))
    return {"unit": "instructions/GET", "off": round(off), "on": round(on),
            "off_samples": [round(x) for x in per_request["off"]], "on_samples": [round(x) for x in per_request["on"]],
            "cost_pct": round(100 * (on / off - 1), 2), "ops_per_rep": args.instr_ops, "met": on / off <= 2 - GOAL}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.instructions_only:
        parent = Path(tempfile.mkdtemp(prefix="registry-obs-bench-", dir=args.workdir))
        try:
            entry = count_instructions(args, parent)
        finally:
            shutil.rmtree(parent, ignore_errors=True)
        print(f"manifest GET instructions: off {entry['off']:,} on {entry['on']:,} ({entry['cost_pct']:+.2f}%, "
              f"{'ok' if entry['met'] else 'MISS'})")
        line = json.dumps({"machine": machine(), "figures": {"manifest_get_instructions": entry}},
                          separators=(",", ":"))
        if args.json:
            args.json.write_text(line + "\n")
        print(line)
        return 0
    parent = Path(tempfile.mkdtemp(prefix="registry-obs-bench-", dir=args.workdir))
    payload = Payload(args.size)
    servers: list[Server] = []
    debug_port = free_port()
    try:
        for name, on in _variants(args):
            root, config_path, port = _write_config(args, parent / name, on, debug_port)
            server = Server(name, [sys.executable, "-m", "registry", "serve", str(config_path)], root, port,
                            parent / name / "server.log")
            server.start()
            servers.append(server)
        targets = [Target(s, args, payload) for s in servers]
        for target in targets:
            target.prepare_small()
        runner = Runner(targets, args)
        load_before = os.getloadavg()
        scraper = Scraper(f"http://127.0.0.1:{debug_port}/metrics", args.scrape_interval)
        with scraper:
            if "get" in args.figures:
                print("manifest GET by tag", file=sys.stderr)
                runner.figure("manifest_get_tag", lambda t: None, lambda t, _s: lambda: t.small("manifest_get_tag"))

            def prepare(target: Target) -> tuple[str, int, str]:
                os.sync()
                view, digest = payload.fresh(args.size)
                target.push_view = view  # type: ignore[attr-defined]
                return "bench/push", args.size, digest

            def run(target: Target, state: tuple[str, int, str]) -> Any:
                repo, size, digest = state
                return timed_transfer(size, lambda: target.push_monolithic(repo, target.push_view, digest))  # type: ignore[attr-defined]

            def after(target: Target, state: tuple[str, int, str]) -> None:
                target.check_blob(state[0], state[2], state[1])
                target.forget_blob(state[2])

            if "push" in args.figures:
                print(f"push {size_label(args.size)}", file=sys.stderr)
                runner.figure(f"push_{size_label(args.size)}", prepare, run, after)
        load_after = os.getloadavg()
        log_lines = sum(1 for _ in open(servers[1].log_path, errors="replace"))
        for server in servers:
            server.stop()
        instructions = count_instructions(args, parent) if args.instructions else None
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(parent, ignore_errors=True)
    figures: dict[str, Any] = {}
    for key, unit in (("manifest_get_tag", "req/s"), (f"push_{size_label(args.size)}", "MB/s")):
        if key not in runner.samples and key not in runner.errors.get("on", {}):
            continue
        entry: dict[str, Any] = {"unit": unit}
        for name in ("off", "on"):
            samples = runner.samples.get(key, {}).get(name, [])
            if not samples:
                entry[f"{name}_error"] = runner.errors.get(name, {}).get(key, "not measured")
                continue
            entry[name] = round(statistics.median(s.value for s in samples), 1)
            entry[f"{name}_samples"] = [round(s.value, 1) for s in samples]
            entry[f"{name}_server_cpu_s"] = [round(s.server_cpu, 3) for s in samples]
            entry[f"{name}_cpu_ms_per_unit"] = round(
                statistics.median(1000 * s.server_cpu / max(s.value * s.wall, 1e-9) for s in samples), 4)
            # the total over all repetitions: psutil's CPU times move in 10 ms steps
            entry[f"{name}_cpu_ms_per_unit_total"] = round(
                1000 * sum(s.server_cpu for s in samples) / max(sum(s.value * s.wall for s in samples), 1e-9), 4)
        if "on" in entry and "off" in entry:
            entry["ratio"] = round(entry["on"] / entry["off"], 3)
            # medians of the per-repetition CPU per unit: one repetition disturbed by another process
            # moves a total, not a median
            entry["cpu_cost_pct"] = round(100 * (entry["on_cpu_ms_per_unit"] / entry["off_cpu_ms_per_unit"] - 1), 1)
            entry["met"] = entry["ratio"] >= GOAL
        figures[key] = entry
    if instructions is not None:
        figures["manifest_get_instructions"] = instructions
    result = {
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "params": {"size": size_label(args.size), "reps": args.reps, "duration_s": args.duration,
                   "concurrency": args.concurrency, "access_log": args.access_log, "tags": args.tags,
                   "scrape_interval_s": args.scrape_interval, "scrapes": scraper.scrapes, "same": args.same, "on": args.on,
                   "on_log_lines": log_lines},
        "figures": figures,
    }
    print(f"{'figure':26} {'unit':6} {'off':>10} {'on':>10} {'ratio':>6} {'goal':>6}  CPU/unit off -> on (cost)")
    for key, e in figures.items():
        if key == "manifest_get_instructions":
            print(f"{key:26} {'k':6} {e['off'] / 1000:>10,.1f} {e['on'] / 1000:>10,.1f} "
                  f"{e['on'] / e['off']:>6.3f} {'ok' if e['met'] else 'MISS':>6}  ({e['cost_pct']:+.2f}% instructions)")
            continue
        if "ratio" not in e:
            print(f"{key:26} failed: {e}")
            continue
        print(f"{key:26} {e['unit']:6} {e['off']:>10,.1f} {e['on']:>10,.1f} {e['ratio']:>6.3f} "
              f"{'ok' if e['met'] else 'MISS':>6}  {e['off_cpu_ms_per_unit']:.4g} -> {e['on_cpu_ms_per_unit']:.4g} ms "
              f"({e['cpu_cost_pct']:+.1f}%)")
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    line = json.dumps(result, separators=(",", ":"))
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
