"""Online collection beside serving registries, crashes of the collector, the lease and the schedule.

- Two registry processes serve one storage root while ``registry garbage-collect --online`` runs
  with a grace of one second, round after round; pushers reuse the layers the collector would
  otherwise delete -- by uploading them again, by mounting them, by HEAD only (some found before
  the collector starts and named in a manifest while it sweeps) -- on both instances. Every
  pushed image must pull completely afterwards, and the garbage nobody touched must be gone.
- ``kill -9`` of the collector mid-sweep: a second collector is refused while the dead one's lease
  lives, then finishes the work; nothing referenced is gone.
- The background schedule: two instances with ``storage.maintenance.gc.enabled``; garbage is
  reclaimed, images stay whole.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path


from fixtures_registry import OCI_MANIFEST, Client, Image, assert_pulls, make_image, push_image, sha256, start_or_fail
from gc_support import V2, gc
from helpers import ROOT, free_port, registry_cmd, run_cli

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ROUNDS = 3
#: the registries' and the collector's grace: short, so that what is older is fair game; it bounds the
#: time between a push's HEAD before a collection and its manifest PUT during it (start-up included)
GRACE_SECONDS = 30
ONLINE = {"gc": {"grace": f"{GRACE_SECONDS}s", "leasettl": "3s"}}
#: a tiny grace where no pre-run HEAD is involved
GRACE = {"gc": {"grace": "1s", "leasettl": "3s"}}


def _layer(label: str) -> bytes:
    return random.Random(label).randbytes(3000)


def _image(layers: dict[str, bytes], label: str) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "label": label}).encode()
    body = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": len(data)} for d, data in layers.items()],
    }  # fmt: skip
    return Image(json.dumps(body).encode(), OCI_MANIFEST, {sha256(config): config, **layers})


def _upload(client: Client, repo: str, digest: str, data: bytes) -> None:
    resp = client.push_blob(repo, data, digest)
    assert resp.status == 201, resp


def _put(client: Client, repo: str, tag: str, image: Image) -> None:
    config = next(d for d in image.blobs if d == json.loads(image.manifest)["config"]["digest"])
    _upload(client, repo, config, image.blobs[config])
    resp = client.put_manifest(repo, tag, image.manifest, image.media_type)
    assert resp.status == 201, resp


class Pushers:
    """Threads that push images reusing ``old`` layers until stopped; each records what it pushed."""

    def __init__(self, clients: list[Client], src: str, old: dict[str, bytes], label: str) -> None:
        self.clients, self.src, self.old, self.label = clients, src, old, label
        self.stop = threading.Event()
        self.pushed: list[tuple[str, str, Image]] = []
        self.errors: list[BaseException] = []
        self.heads: list[tuple[Client, dict[str, bytes], float]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def head_now(self, found: dict[str, bytes], n: int) -> None:
        """HEAD-only pushes whose HEAD happens now, before the collector starts (their PUTs later)."""
        for i in range(n):
            client = self.clients[i % 2]
            layers = dict(sorted(found.items())[2 * i : 2 * i + 2])
            for d in layers:
                assert client.request("HEAD", f"/v2/{self.src}/blobs/{d}").status == 200
            self.heads.append((client, layers, time.monotonic()))

    def start(self) -> None:
        for mode in ("upload", "mount", "head"):
            t = threading.Thread(target=self._run, args=(mode,), daemon=True)
            t.start()
            self._threads.append(t)

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=120)
        if self.errors:
            raise self.errors[0]

    def _run(self, mode: str) -> None:
        try:
            rnd = random.Random(f"{self.label}-{mode}")
            k = 0
            while not self.stop.is_set():
                k += 1
                client = self.clients[k % 2]
                layers = dict(rnd.sample(sorted(self.old.items()), 2))
                repo = self.src if mode == "head" else f"{self.src}-{mode}"
                for d, data in layers.items():
                    if mode == "upload":
                        _upload(client, repo, d, data)
                    elif mode == "mount":
                        resp = client.request("POST", f"/v2/{repo}/blobs/uploads/", query={"mount": d, "from": self.src})
                        if resp.status == 202:  # gone from src: the client uploads it
                            resp = client.request("PUT", resp.location_path(), query={"digest": d}, body=data,
                                                  headers={"Content-Type": "application/octet-stream"})
                        assert resp.status == 201, resp
                    elif client.request("HEAD", f"/v2/{repo}/blobs/{d}").status != 200:
                        _upload(client, repo, d, data)  # collected before anybody used it: push it
                self._push_named(client, repo, layers, f"{mode}-{k}")
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(exc)
            self.stop.set()

    def name_found(self) -> int:
        """PUT the manifests of the :meth:`head_now` pushes (after the run: their blobs' batches were
        all decided); each must succeed when its HEAD was less than the grace ago."""
        named = 0
        for i, (client, layers, found) in enumerate(self.heads):
            tag = f"early-{i}"
            image = _image(layers, f"{self.label}-{tag}")
            config = json.loads(image.manifest)["config"]["digest"]
            _upload(client, self.src, config, image.blobs[config])
            resp = client.put_manifest(self.src, tag, image.manifest, image.media_type)
            gap = time.monotonic() - found
            if gap >= GRACE_SECONDS:  # beyond the guarantee on a very slow machine: may or may not work
                continue
            assert resp.status == 201, (gap, resp)
            self.pushed.append((self.src, tag, image))
            named += 1
        return named

    def _push_named(self, client: Client, repo: str, layers: dict[str, bytes], tag: str) -> None:
        image = _image(layers, f"{self.label}-{tag}")
        _put(client, repo, tag, image)
        with self._lock:
            self.pushed.append((repo, tag, image))


def _collector(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.Popen(registry_cmd("garbage-collect", *args, "--json", str(config)), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_pushes_reusing_old_layers_survive_online_collection(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = start_or_fail("ours", root, tmp_path / "work", maintenance=ONLINE, name="a")
    b = start_or_fail("ours", root, tmp_path / "work", maintenance=ONLINE, name="b")
    try:
        clients = [a.client, b.client]
        rounds = []
        for rnd in range(ROUNDS):  # every round's material first: one wait makes it all older than the grace
            src = f"online/r{rnd}"
            old = {sha256(x): x for x in (_layer(f"r{rnd}-old{i}") for i in range(16))}
            #: found with HEAD before the run only (no other push touches them)
            found = {sha256(x): x for x in (_layer(f"r{rnd}-found{i}") for i in range(8))}
            garbage = {sha256(x): x for x in (_layer(f"r{rnd}-garbage{i}") for i in range(4))}
            for d, data in {**old, **found, **garbage}.items():
                _upload(b.client, src, d, data)
            # enough other garbage that the sweep takes a while, the old layers spread over its batches
            junk = {sha256(p.read_bytes()): b"" for p in _orphans(root, src, 2500, f"r{rnd}")}
            # a manifest keeps it all until its round starts (earlier rounds must not collect it)
            keeper = _image({**old, **found, **garbage, **junk}, f"r{rnd}-keeper")
            _put(a.client, src, "keeper", keeper)
            rounds.append((src, old, found, list(garbage.values()), keeper))
        time.sleep(GRACE_SECONDS + 0.5)
        everything: list[tuple[str, str, Image]] = []
        reclaimed = early = 0
        for rnd, (src, old, found, garbage, keeper) in enumerate(rounds):
            # now unreferenced: linked in src, old, no manifest names them
            assert a.client.request("DELETE", f"/v2/{src}/manifests/{keeper.digest}").status == 202
            pushers = Pushers(clients, src, old, f"r{rnd}")
            pushers.head_now(found, 4)  # found before the collection starts, named in manifests during its sweep
            collector = _collector(a.config_path, "--online")
            sweeping = threading.Event()
            errors: list[str] = []

            def watch() -> None:  # the phase before the sweep ends: start pushing
                for line in collector.stderr:
                    errors.append(line)
                    if line.startswith("reading manifests") and "done" in line:
                        sweeping.set()
                sweeping.set()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            assert sweeping.wait(timeout=180), "".join(errors)[-3000:]
            pushers.start()
            try:
                collector.wait(timeout=240)
            finally:
                pushers.join()
                watcher.join(timeout=30)
            early += pushers.name_found()  # the manifests of the HEADs made before the run, now
            assert collector.returncode == 0, "".join(errors)[-3000:]
            summary = json.loads(collector.stdout.read().strip().splitlines()[-1])
            assert summary["mode"] == "online"
            for g in garbage:  # nobody used these: the same run reclaimed them, pushes or not
                assert a.client.request("HEAD", f"/v2/{src}/blobs/{sha256(g)}").status == 404
            reclaimed += summary["blobs_deleted"]
            assert pushers.pushed, "no push ran while the collector did"
            everything += pushers.pushed
        assert reclaimed >= ROUNDS * 2500
        assert early > 0, "no push found its blobs before a run and named them within the grace: too slow a machine"
        for repo, tag, image in everything:
            assert_pulls(clients[len(tag) % 2], repo, image, ref=tag)
    finally:
        b.stop()
        a.stop()


def _orphans(root: Path, repo: str, n: int, label: str = "") -> list[Path]:
    """Blobs linked into ``repo`` that no manifest references, written straight into the layout (test
    data: the collector cannot tell them from uploads whose manifest never came)."""
    out = []
    base = root / V2
    for i in range(n):
        data = f"orphan {label} {i}".encode()
        hexpart = sha256(data)[7:]
        blob = base / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "repositories" / repo / "_layers" / "sha256" / hexpart / "link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(f"sha256:{hexpart}")
        out.append(blob)
    return out


def test_collector_killed_mid_sweep_then_a_rerun_finishes(tmp_path: Path) -> None:
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "work", maintenance=GRACE)
    try:
        images = [make_image("oci", label=f"kill-{i}") for i in range(3)]
        for i, image in enumerate(images):
            push_image(reg.client, "kill/app", image, tag=f"v{i}")
        orphans = _orphans(reg.root, "kill/junk", 3000)
        watch = orphans[::25]
        collector = _collector(reg.config_path, "--offline", "-q")
        deadline = time.monotonic() + 120
        while all(p.exists() for p in watch):
            assert collector.poll() is None, collector.communicate()
            assert time.monotonic() < deadline, "the sweep did not start"
            time.sleep(0.005)
        collector.send_signal(signal.SIGKILL)
        collector.wait(timeout=30)
        left = sum(p.exists() for p in orphans)
        assert 0 < left < len(orphans), left  # killed in the middle of the sweep
        refused = run_cli("garbage-collect", "--offline", str(reg.config_path))
        assert refused.returncode == 1 and "another garbage collection is running" in refused.stderr, refused.stderr
        deadline = time.monotonic() + 60  # the dead collector's lease expires (leasettl 3s + skew)
        while True:
            proc = run_cli("garbage-collect", "--offline", "--json", str(reg.config_path))
            if proc.returncode == 0:
                break
            assert "another garbage collection is running" in proc.stderr, proc.stderr
            assert time.monotonic() < deadline
            time.sleep(1)
        assert "taking over the expired lease" in proc.stderr
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["blobs_deleted"] == left
        assert not any(p.exists() for p in orphans)
        assert not (reg.root / V2 / "repositories" / "kill" / "junk").exists()  # its links went too
        for i, image in enumerate(images):
            assert_pulls(reg.client, "kill/app", image, ref=f"v{i}")
        assert not (reg.root / V2 / "_lifecycle" / "gc" / "lease").exists()
    finally:
        reg.stop()


def test_background_schedule_collects_with_two_instances(tmp_path: Path) -> None:
    schedule = {"gc": {"enabled": True, "interval": "2s", "grace": "1s", "leasettl": "3s"}}
    root = tmp_path / "root"
    debug = {name: free_port() for name in ("a", "b")}  # each instance's metrics (h12's registry/observe)

    def metrics_of(name: str) -> str:
        return f"debug:\n  addr: 127.0.0.1:{debug[name]}\n  prometheus:\n    enabled: true\n    path: /metrics\n"

    a = start_or_fail("ours", root, tmp_path / "work", maintenance=schedule, name="a", http_extra=metrics_of("a"))
    b = start_or_fail("ours", root, tmp_path / "work", maintenance=schedule, name="b", http_extra=metrics_of("b"))
    try:
        image = make_image("oci", label="scheduled")
        push_image(a.client, "sched/app", image, tag="v1")
        junk = b"scheduled collection garbage" * 10
        _upload(b.client, "sched/app", sha256(junk), junk)
        data = root / V2 / "blobs" / "sha256" / sha256(junk)[7:9] / sha256(junk)[7:] / "data"
        deadline = time.monotonic() + 90
        while data.exists():  # (not HEAD: a HEAD is a push's check, and keeps the blob for the grace)
            assert time.monotonic() < deadline, "the scheduled collection never reclaimed the garbage"
            time.sleep(0.5)
        assert a.client.request("HEAD", f"/v2/sched/app/blobs/{sha256(junk)}").status == 404
        # the last run's record (a later run of the other instance, which found nothing, may have
        # replaced the one that deleted the garbage: the metrics below say who freed what)
        record = json.loads((root / V2 / "_lifecycle" / "gc" / "last").read_text())
        assert record["mode"] == "online" and "finished" in record
        # the instance that collected counts the run and the bytes it freed (the garbage included)
        runs = freed = 0.0
        for name in ("a", "b"):
            samples = _scrape(debug[name])
            runs += samples.get(("registry_gc_runs_total", (("outcome", "completed"),)), 0.0)
            freed += samples.get(("registry_gc_freed_bytes_total", ()), 0.0)
            assert not any(k[0] == "registry_gc_runs_total" and k[1] == (("outcome", "failed"),) for k in samples)
        assert runs >= 1 and freed >= len(junk), (runs, freed)
        for client in (a.client, b.client):
            assert_pulls(client, "sched/app", image, ref="v1")
        for reg in (a, b):
            assert "Traceback" not in reg.log_tail(20000), reg.log_tail()
    finally:
        b.stop()
        a.stop()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an instance's ``/metrics`` (prometheus-client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_instances_make_the_collector_online_by_default(tmp_path: Path) -> None:
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "work", maintenance=GRACE)
    try:
        push_image(reg.client, "auto/app", make_image("oci", label="auto"), tag="v1")
        beats = tmp_path / "root" / V2 / "_lifecycle" / "instances"
        deadline = time.monotonic() + 30  # an empty storage gets its first heartbeat within seconds
        while not (beats.exists() and any(beats.iterdir())):
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.2)
        summary, proc = gc(reg.config_path)
        assert summary["mode"] == "online", proc.stderr
        assert "serve this storage: collecting online" in proc.stderr
    finally:
        reg.stop()
    summary, proc = gc(reg.config_path)  # stopped: its heartbeat is gone, so offline
    assert summary["mode"] == "offline", proc.stderr
