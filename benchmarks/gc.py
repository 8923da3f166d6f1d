"""``python -m benchmarks.gc``: our garbage collector against distribution 2.8.2's, on copies of one root.

Generates a storage root in distribution's layout (default: 40 repositories, 1,200 image manifests
of which a fifth are untagged, 10,000 layer blobs shared across repositories, 1,200 configs, and a
tenth of the blobs uploaded but never referenced), then for each mode -- plain (only unreferenced
blobs go) and ``-m`` (untagged manifests too) -- copies it once per collector and times, alternating
who goes first on every repetition:

- the reference: ``docker-registry garbage-collect [-m] config.yml``;
- ours offline: ``registry garbage-collect --offline [-m] -q config.yml``;
- ours online: ``registry garbage-collect --online --grace 0s [-m] -q config.yml`` (with a
  grace of 0 the same blobs go as offline); no registry instance is live on the copy, so the
  collector skips its barrier wait;
- ours online beside a live instance (``online_live``): the same, on a copy holding a fresh
  instance heartbeat, so the figure includes the fixed wait of
  ``registry.lifecycle.barrier.BARRIER_WAIT`` seconds that lets serving instances see the lease;
- the floor (``benchmarks/gc_floor.py``): not a collector but the least a Python process does to
  delete the same files (listings, manifest reads and deletes only; no config, lease or checks),
  so its ratio bounds what any collector in Python can reach on this machine.

Each figure is the wall time of the whole process (start-up included), median over repetitions;
the 1-minute load average is recorded at the start and after each mode (a shared machine's other
work slows both collectors, not necessarily alike).
After every run the surviving blobs and manifest revisions of each copy are compared with the
reference's: a figure counts only when both deleted exactly the same blobs and manifests.

The root is written with plain file writes (no fsync): it is test data in the shared layout, not a
measurement. Index manifests and referrers are left out on purpose: 2.8.2's ``-m`` deletes the
untagged children of a tagged index and every untagged referrer (ours keeps them), so on such a
root the two would rightly delete different things.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from registry.store import paths

from .servers import REPO_ROOT, ensure_reference

V2 = Path("docker/registry/v2")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
#: who runs on a copy of the root, in this order (reversed every other repetition)
COLLECTORS = ("reference", "offline", "online", "online_live", "floor")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(root: Path, data: bytes) -> str:
    d = _digest(data)
    hexpart = d.split(":")[1]
    target = root / V2 / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
    if not target.exists():
        _write(target, data)
    return d


def _link(root: Path, repo: str, *parts: str, digest: str) -> None:
    _write(root / V2 / "repositories" / repo / Path(*parts) / "link", digest.encode())


def generate(root: Path, *, repos: int, manifests: int, layers: int, untagged: float, orphans: float,
             seed: int = 7) -> dict[str, int]:
    """Write the root; returns counts of what it holds."""
    rnd = random.Random(seed)
    names = [f"team{i % 7}/app{i}" for i in range(repos)]
    layer_data = [rnd.randbytes(rnd.randint(64, 2048)) for _ in range(layers)]
    layer_digests = [_blob(root, d) for d in layer_data]
    layer_sizes = [len(d) for d in layer_data]
    n_orphans = int(layers * orphans)
    referenced_pool = list(range(n_orphans, layers))
    rnd.shuffle(referenced_pool)
    per_manifest = max(1, -(-len(referenced_pool) // max(manifests, 1)))  # every pool layer used at least once
    counts = {"manifests": 0, "tagged": 0, "untagged": 0, "blobs": layers, "orphans": n_orphans}
    for i in range(manifests):
        repo = names[i % repos]
        own = referenced_pool[i * per_manifest : (i + 1) * per_manifest]
        shared = rnd.sample(referenced_pool, rnd.randint(1, 4))  # layers other images use too
        chosen = list(dict.fromkeys(own + shared))
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode()
        config_digest = _blob(root, config)
        counts["blobs"] += 1
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digests[j], "size": layer_sizes[j]} for j in chosen],
        }, indent=2).encode()  # fmt: skip
        md = _blob(root, body)
        hexpart = md.split(":")[1]
        _link(root, repo, "_manifests", "revisions", "sha256", hexpart, digest=md)
        for d in [config_digest, *(layer_digests[j] for j in chosen)]:
            _link(root, repo, "_layers", "sha256", d.split(":")[1], digest=d)
        counts["manifests"] += 1
        if rnd.random() >= untagged:
            tag = f"v{i}"
            _link(root, repo, "_manifests", "tags", tag, "current", digest=md)
            _link(root, repo, "_manifests", "tags", tag, "index", "sha256", hexpart, digest=md)
            counts["tagged"] += 1
        else:
            counts["untagged"] += 1
    for j in range(n_orphans):  # uploaded, linked, never referenced
        d = layer_digests[j]
        _link(root, names[j % repos], "_layers", "sha256", d.split(":")[1], digest=d)
    return counts


def config_for(root: Path) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}, "gc": {"grace": "0s"}}},
        "http": {"addr": "127.0.0.1:0", "secret": "benchmark-secret"},
    }  # fmt: skip


def survivors(root: Path) -> tuple[frozenset[str], frozenset[str]]:
    """Blob digests with data, and (repository, manifest) revisions, left in a root."""
    blobs = root / V2 / "blobs" / "sha256"
    data = frozenset(p.parent.name for p in blobs.glob("*/*/data"))
    repos = root / V2 / "repositories"
    revisions = frozenset(
        (str(p.parent.parent.parent.parent.parent.relative_to(repos)), p.parent.name)
        for p in repos.glob("**/_manifests/revisions/sha256/*/link")
    )
    return data, revisions


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    return time.perf_counter() - started, proc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gc", description=__doc__.split("\n\n")[0])
    p.add_argument("--repos", type=int, default=40)
    p.add_argument("--manifests", type=int, default=1200)
    p.add_argument("--layers", type=int, default=10000)
    p.add_argument("--untagged", type=float, default=0.2, help="share of manifests without a tag")
    p.add_argument("--orphans", type=float, default=0.1, help="share of layers no manifest references")
    p.add_argument("--repetitions", type=int, default=3)
    p.add_argument("--modes", default="plain,untagged", help="plain, untagged (-m), or both")
    p.add_argument("--workdir", type=Path, help="where to put the roots (default: a temporary directory)")
    p.add_argument("--json", type=Path, help="write the result here too")
    args = p.parse_args(argv)
    reference = ensure_reference()
    work = Path(tempfile.mkdtemp(prefix="gc-bench-", dir=args.workdir))
    try:
        source = work / "source"
        t0 = time.perf_counter()
        counts = generate(source, repos=args.repos, manifests=args.manifests, layers=args.layers,
                          untagged=args.untagged, orphans=args.orphans)
        print(f"generated {counts} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        # our modules byte-compiled first, as an installed package has them (with PYTHONDONTWRITEBYTECODE
        # set, as on this machine, every run would otherwise compile each module again at start)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO_ROOT / "registry"), str(REPO_ROOT / "drivers")],
                       capture_output=True, check=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        result: dict[str, Any] = {"counts": counts, "reference": _version(reference), "figures": {},
                                  "cpus": os.cpu_count(), "loadavg_start": list(os.getloadavg())}
        for mode in [m for m in args.modes.split(",") if m]:
            flag = ["-m"] if mode == "untagged" else []
            times: dict[str, list[float]] = {who: [] for who in COLLECTORS}
            deleted: dict[str, Any] = {}
            for rep in range(args.repetitions):
                order = list(COLLECTORS)
                if rep % 2:
                    order.reverse()
                outcome: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
                for who in order:
                    root = work / f"{mode}-{who}-{rep}"
                    subprocess.run(["cp", "-a", str(source), str(root)], check=True)
                    if who == "online_live":  # as a serving registry's heartbeat: the collector waits for it
                        _write(root / paths.instance_heartbeat("benchmark-live").lstrip("/"), b"{}")
                    cfg = work / f"{mode}-{who}-{rep}.yml"
                    cfg.write_text(yaml.safe_dump(config_for(root)))
                    if who == "reference":
                        cmd = [reference, "garbage-collect", *flag, str(cfg)]
                    elif who == "floor":
                        cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "gc_floor.py"), str(root), *flag]
                    else:
                        extra = ["--offline"] if who == "offline" else ["--online", "--grace", "0s"]
                        cmd = [sys.executable, "-m", "registry", "garbage-collect", *extra, *flag, "-q", "--json",
                               str(cfg)]
                    subprocess.run(["sync"], check=False)
                    elapsed, proc = run_timed(cmd, env)
                    if proc.returncode != 0:
                        raise SystemExit(f"{who} failed ({proc.returncode}): {proc.stderr[-2000:]}")
                    times[who].append(elapsed)
                    outcome[who] = survivors(root)
                    shutil.rmtree(root)
                before = survivors(source)
                for who in COLLECTORS[1:]:
                    if outcome[who] != outcome["reference"]:
                        ref_b, ref_r = outcome["reference"]
                        b, r = outcome[who]
                        raise SystemExit(
                            f"{mode}: {who} left a different result than the reference: blobs only ours "
                            f"{len(b - ref_b)}, only reference {len(ref_b - b)}; revisions only ours {len(r - ref_r)}, "
                            f"only reference {len(ref_r - r)}"
                        )
                deleted = {"blobs": len(before[0] - outcome["reference"][0]),
                           "manifests": len(before[1] - outcome["reference"][1])}
            med = {k: statistics.median(v) for k, v in times.items()}
            result["figures"][mode] = {
                "deleted": deleted, "seconds": med, "all_seconds": times, "loadavg_end": list(os.getloadavg()),
                "ratio_offline": med["reference"] / med["offline"], "ratio_online": med["reference"] / med["online"],
                "ratio_online_live": med["reference"] / med["online_live"],
                "ratio_floor": med["reference"] / med["floor"],
            }  # fmt: skip
            print(f"{mode:>9}: deleted {deleted}; reference {med['reference']:.2f}s, ours offline {med['offline']:.2f}s "
                  f"({med['reference'] / med['offline']:.2f}x), ours online {med['online']:.2f}s "
                  f"({med['reference'] / med['online']:.2f}x), beside a live instance {med['online_live']:.2f}s "
                  f"({med['reference'] / med['online_live']:.2f}x), the floor {med['floor']:.2f}s "
                  f"({med['reference'] / med['floor']:.2f}x); load average {os.getloadavg()[0]:.2f} on "
                  f"{os.cpu_count()} CPUs", file=sys.stderr)
        line = json.dumps(result, sort_keys=True)
        if args.json:
            args.json.write_text(line)
        print(line)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
