"""``registry garbage-collect`` end to end, on the filesystem and on S3 (moto).

Content of every kind is pushed through our registry's HTTP API (gc_support.push_scenario), the
collector runs as the operator runs it (the CLI, on the registry's own config file), and then:
exactly the expected blobs are left in the storage; every surviving tag and digest pulls
completely through our registry; on the filesystem, the reference registry (distribution 2.8.2)
serves the survivors from the same root and its own ``garbage-collect --dry-run`` finds nothing
more to delete.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.factory import create_driver
from fixtures_registry import REFERENCE_BINARY, RunningRegistry, assert_pulls, make_image, push_image, sha256, start_or_fail
from gc_support import SCHEMA1_ON, V2, assert_survivors, blob_dirs, gc, push_scenario, reference_dry_run
from helpers import require_tool, run_cli


def _s3_blobs(params: dict) -> set[str]:
    async def listing() -> set[str]:
        driver = create_driver("s3", params)
        try:
            return {
                "sha256:" + info.path.split("/")[-2]
                async for page in driver.list_files("/docker/registry/v2/blobs")
                for info in page if info.path.endswith("/data")
            }
        finally:
            await driver.close()

    return asyncio.run(listing())


@pytest.fixture(params=["filesystem", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, RunningRegistry, dict | None]]:
    storage = None
    if request.param == "s3":
        from emulators import s3_params

        storage = {"s3": s3_params(request.getfixturevalue("moto_emulator"), rootdirectory="/gc")}
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "work", SCHEMA1_ON, storage=storage)
    yield request.param, reg, storage["s3"] if storage else None
    reg.stop()


@pytest.mark.parametrize("delete_untagged", [False, True], ids=["plain", "delete-untagged"])
def test_collect_keeps_exactly_what_is_referenced(backend, delete_untagged, tmp_path: Path) -> None:
    kind, reg, s3 = backend
    client = reg.client
    scenario = push_scenario(client)
    before = blob_dirs(reg.root) if kind == "filesystem" else _s3_blobs(s3)
    expected = scenario.surviving_blobs(delete_untagged)
    assert expected < before  # the scenario does hold garbage
    summary, proc = gc(reg.config_path, "--offline", *(["-m"] if delete_untagged else []))
    after = blob_dirs(reg.root) if kind == "filesystem" else _s3_blobs(s3)
    assert after == expected, (sorted(after - expected), sorted(expected - after))
    assert summary["blobs_deleted"] == len(before - after)
    assert summary["manifests_deleted"] == (len(scenario.untagged) if delete_untagged else 0)
    assert summary["mode"] == "offline"
    assert_survivors(client, scenario, delete_untagged)
    # the referrers of a kept manifest stay listed
    base = scenario.kept_always[0][2]
    listed = client.request("GET", f"/v2/gc/app/referrers/{base.digest}").json()["manifests"]
    assert [m["digest"] for m in listed] == [scenario.kept_always[1][2].digest]
    # a second run finds nothing more
    again, _ = gc(reg.config_path, "--offline", *(["-m"] if delete_untagged else []))
    assert again["blobs_deleted"] == 0 and again["manifests_deleted"] == 0 and again["links_deleted"] == 0, again
    if kind != "filesystem":
        return
    # no link is left pointing at a deleted blob, no index entry at a deleted manifest
    for link in (reg.root / V2 / "repositories").glob("**/_layers/sha256/*/link"):
        assert f"sha256:{link.parent.name}" in after, link
    require_tool(REFERENCE_BINARY, hint="the reference: `make apt-deps` installs docker-registry")
    reg.stop()
    ref = start_or_fail("reference", reg.root, tmp_path / "ref")
    try:
        assert_survivors(ref.client, scenario, delete_untagged, schema1=False)
        repo, tag, _, digest, _ = scenario.schema1
        resp = ref.client.get_manifest(repo, tag)
        assert resp.status == 200 and resp.header("Docker-Content-Digest") == digest, resp
        marked, blobs, manifests = reference_dry_run(REFERENCE_BINARY, ref.config_path)
        assert (blobs, manifests) == (0, 0), "the reference's own collector would delete more"
        assert marked > 0
    finally:
        ref.stop()


def test_dry_run_lists_what_would_go_and_writes_nothing(tmp_path: Path) -> None:
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "work", SCHEMA1_ON)
    try:
        scenario = push_scenario(reg.client)
        reg.stop()  # not even a heartbeat may change the tree under the comparison
        snapshot = _tree(reg.root)
        summary, proc = gc(reg.config_path, "--dry-run", "-m")
        assert _tree(reg.root) == snapshot, "a dry run changed the storage"
        assert summary["mode"] == "dry-run" and summary["run"] is None
        listed = [line for line in proc.stdout.splitlines() if line.startswith("eligible for deletion:")]
        assert len(listed) == summary["blobs_deleted"] + summary["manifests_deleted"] + \
            summary["links_deleted"] + summary["index_entries_deleted"] > 0
        for repo, image in scenario.untagged:
            assert f"eligible for deletion: manifest {repo}@{image.digest}" in listed
        for _, digest in scenario.orphans:
            assert f"eligible for deletion: blob {digest}" in listed
        # what the dry run announced is what a real run deletes
        real, _ = gc(reg.config_path, "--offline", "-m")
        for key in ("blobs_deleted", "manifests_deleted", "bytes_freed"):
            assert real[key] == summary[key], key
    finally:
        reg.stop()


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mtime_ns, st.st_size, p.read_bytes() if p.is_file() else b"")
    return out


def test_repo_delete_and_list(tmp_path: Path) -> None:
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "work")
    try:
        client = reg.client
        a, nested, keep = make_image("oci", label="rd-a"), make_image("oci", label="rd-nested"), make_image("oci", label="rd-keep")
        push_image(client, "rd/app", a, tag="v1")
        push_image(client, "rd/app/nested", nested, tag="v1")  # lives inside rd/app's directory
        push_image(client, "rd/keep", keep, tag="v1")
        loc = client.request("POST", "/v2/rd/app/blobs/uploads/").location_path()
        assert client.request("PATCH", loc, body=b"partial", headers={"Content-Type": "application/octet-stream"}).status == 202
        listing = run_cli("repo", "list", "--json", "--config", str(reg.config_path))
        assert listing.returncode == 0, listing.stderr
        repos = {r["name"]: r for r in json.loads(listing.stdout)["repositories"]}
        assert set(repos) == {"rd/app", "rd/app/nested", "rd/keep"}
        assert repos["rd/app"]["tags"] == 1 and repos["rd/app"]["manifests"] == 1 and repos["rd/app"]["uploads"] == 1
        assert repos["rd/app"]["size"] == sum(len(b) for b in a.blobs.values()) + len(a.manifest)
        table = run_cli("repo", "list", "--config", str(reg.config_path))
        assert "rd/keep" in table.stdout and "REPOSITORY" in table.stdout
        gone = run_cli("repo", "delete", "rd/app", "--config", str(reg.config_path))
        assert gone.returncode == 0, gone.stderr
        assert client.get_manifest("rd/app", "v1").status == 404
        assert client.request("GET", "/v2/rd/app/tags/list").status == 404
        assert client.request("GET", loc).status == 404  # its upload went too
        assert "rd/app" not in client.request("GET", "/v2/_catalog").json()["repositories"]
        assert_pulls(client, "rd/app/nested", nested, ref="v1")
        assert_pulls(client, "rd/keep", keep, ref="v1")
        # its blobs stay until the next collection, which reclaims them
        assert (reg.root / V2 / "blobs" / "sha256" / a.digest[7:9] / a.digest[7:] / "data").exists()
        summary, _ = gc(reg.config_path, "--offline")
        assert summary["blobs_deleted"] == len(a.blobs) + 1
        assert_pulls(client, "rd/keep", keep, ref="v1")
        missing = run_cli("repo", "delete", "rd/never", "--config", str(reg.config_path))
        assert missing.returncode == 1 and "rd/never" in missing.stderr
        bad = run_cli("repo", "delete", "../etc", "--config", str(reg.config_path))
        assert bad.returncode == 1 and "invalid repository name" in bad.stderr
    finally:
        reg.stop()


def test_repo_delete_and_retention_notify_like_api_deletes(tmp_path: Path) -> None:
    """``registry repo delete`` sends distribution's repository delete event and a tag that retention
    removes a tag delete event: queued in the storage's outbox by the command, delivered by the
    serving instance to a real HTTP receiver (h12's registry/events)."""
    import yaml

    from observe_support import Receiver, wait_for

    receiver = Receiver().start()
    extra = yaml.safe_dump({
        "notifications": {"endpoints": [{"name": "gc-events", "url": receiver.url, "timeout": "2s",
                                         "backoff": "100ms", "threshold": 3}]},
        "retention": {"rules": [{"repositories": "ev/keep", "tags": [{"pattern": "old*", "olderthan": "1d"}]}]},
    })  # fmt: skip
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "work", extra)
    try:
        push_image(reg.client, "ev/gone", make_image("oci", label="ev-gone"), tag="v1")
        keep = make_image("oci", label="ev-keep")
        push_image(reg.client, "ev/keep", keep, tag="old")
        push_image(reg.client, "ev/keep", keep, tag="new")
        link = reg.root / V2 / "repositories" / "ev" / "keep" / "_manifests" / "tags" / "old" / "current" / "link"
        os.utime(link, (link.stat().st_mtime - 2 * 86400,) * 2)
        assert run_cli("repo", "delete", "ev/gone", "--config", str(reg.config_path)).returncode == 0
        retention = run_cli("retention", "--json", str(reg.config_path))
        assert retention.returncode == 0, retention.stderr

        def deletes() -> list[tuple[str, str]]:
            return [(e["target"]["repository"], e["target"].get("tag", "")) for e in receiver.events()
                    if e["action"] == "delete"]

        wait_for(lambda: len(deletes()) >= 2, timeout=60, what="the delete events")
        assert sorted(deletes()) == [("ev/gone", ""), ("ev/keep", "old")], receiver.events()
        gone = next(e for e in receiver.events() if e["action"] == "delete" and e["target"]["repository"] == "ev/gone")
        assert "digest" not in gone["target"] or not gone["target"]["digest"], gone  # the whole repository
        assert_pulls(reg.client, "ev/keep", keep, ref="new")
    finally:
        reg.stop()
        receiver.close()


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("storage:\n  filesystem:\n    rootdirectory: /nonexistent/deeper/root\n  maintenance:\n"
                   "    gc:\n      grace: soon\n")
    proc = run_cli("garbage-collect", str(bad))
    assert proc.returncode == 1 and "storage.maintenance.gc.grace" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("garbage-collect")
    assert proc.returncode == 1 and "configuration" in proc.stderr
    proc = run_cli("garbage-collect", "--online", "--offline", str(bad))
    assert proc.returncode == 2  # argparse: not allowed together


def _generated_root(tmp_path: Path, **rules: object) -> tuple[Path, Path]:
    """A small root in distribution's layout (benchmarks/gc.py's generator, every manifest tagged
    v0..v5 in team0/app0) and a config file for it with ``rules`` added."""
    import yaml

    from benchmarks.gc import config_for, generate

    root = tmp_path / "root"
    generate(root, repos=1, manifests=6, layers=60, untagged=0.0, orphans=0.0)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({**config_for(root), **rules}))
    return root, config


def test_collector_applies_retention_and_reclaims_in_the_same_run(tmp_path: Path) -> None:
    import time

    retention = {"rules": [{"repositories": "team0/*", "tags": [{"pattern": "v*", "keep": 2}],
                            "untagged": {"olderthan": "1d"}}]}
    root, config = _generated_root(tmp_path, retention=retention)
    manifests = root / V2 / "repositories" / "team0" / "app0" / "_manifests"
    now = time.time()
    targets = {}
    for i in range(6):  # v5 moved last, v0 first; every manifest pushed 10 days ago
        link = manifests / "tags" / f"v{i}" / "current" / "link"
        targets[f"v{i}"] = link.read_text()
        os.utime(link, (now - (10 - i) * 86400,) * 2)
        revision = manifests / "revisions" / "sha256" / targets[f"v{i}"][7:] / "link"
        os.utime(revision, (now - 10 * 86400,) * 2)
    kept = {"v4", "v5"}
    expected = set()
    for tag in kept:
        d = targets[tag]
        body = json.loads((root / V2 / "blobs" / "sha256" / d[7:9] / d[7:] / "data").read_bytes())
        expected |= {d, body["config"]["digest"], *(layer["digest"] for layer in body["layers"])}
    before = blob_dirs(root)
    summary, _ = gc(config, "--offline")  # no -m: only retention's untagged rule removes manifests
    assert summary["tags_deleted"] == 4 and summary["manifests_deleted"] == 4, summary
    assert sorted(p.name for p in (manifests / "tags").iterdir()) == sorted(kept)
    assert blob_dirs(root) == expected, "the manifests retention untagged were not reclaimed by the same run"
    assert summary["blobs_deleted"] == len(before - expected)
    no_retention, _ = gc(config, "--offline", "--no-retention")
    assert no_retention["tags_deleted"] == 0 and no_retention["blobs_deleted"] == 0


def test_progress_is_a_bar_on_a_terminal_lines_otherwise_and_nothing_with_quiet(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import subprocess
    import termios
    import threading

    from helpers import ROOT, registry_cmd

    _, config = _generated_root(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    # a real terminal on stderr: tqdm draws a bar per phase
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a size
    screen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal's other side closed
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = subprocess.Popen(registry_cmd("garbage-collect", "--dry-run", str(config)), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    assert proc.returncode == 0, screen[-2000:]
    text = bytes(screen).decode(errors="replace")
    assert "scanning storage" in text and "reading manifests" in text and "items" in text, text[-2000:]
    assert "\r" in text and "100%" in text, text[-2000:]  # a bar redrawn in place, to its end
    assert "would delete" in out  # the summary stays on stdout
    # no terminal: one line per phase (and every few seconds), the summary on stdout
    lines = run_cli("garbage-collect", "--dry-run", str(config), timeout=120)
    assert lines.returncode == 0, lines.stderr
    assert "\r" not in lines.stderr and "scanning storage:" in lines.stderr and " done in " in lines.stderr
    # --quiet: no progress, no list; the summary only
    quiet = run_cli("garbage-collect", "--dry-run", "-q", str(config), timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "eligible for deletion" not in quiet.stdout and "garbage collection (dry-run)" in quiet.stdout


async def test_on_s3_the_collector_lists_by_prefix_and_deletes_in_batches(moto_emulator) -> None:
    """Two prefix listings for the whole scan and one bulk delete (S3 DeleteObjects, see
    test_cloud_drivers) per part of a batch, never a request per blob: counted by the registry's
    own storage metrics (registry/observe MeteredDriver) around the real S3 driver on moto."""
    from emulators import s3_params
    from registry.lifecycle import GCOptions, collect
    from registry.observe.metrics import METRICS
    from registry.observe.storage import MeteredDriver
    from registry.reference import parse_digest
    from registry.store import Store, paths

    driver = MeteredDriver(create_driver("s3", s3_params(moto_emulator, rootdirectory="/gc-batches")))
    n = 250
    try:
        async def orphan(i: int) -> None:
            data = f"an s3 blob no manifest names {i}".encode()
            d = parse_digest(sha256(data))
            await driver.put_content(paths.blob_data(d), data)
            await driver.put_content(paths.layer_link(f"gc/batches{i % 5}", d), str(d).encode())

        await asyncio.gather(*(orphan(i) for i in range(n)))

        def calls(action: str) -> int:
            series = METRICS.storage_seconds.values.get((driver.name, action))
            return sum(series[:-1]) if series else 0

        actions = ("delete", "delete_files", "list", "list_files", "walk", "stat", "get_content")
        before = {a: calls(a) for a in actions}
        summary = await collect(Store(driver, secret="gc-batches"), GCOptions(batch=100))
        made = {a: calls(a) - before[a] for a in actions}
        assert summary.blobs_deleted == n and summary.repositories == 5, summary
        # two prefix listings of one page each (the meter times every page fetch and the end of each)
        assert made["list_files"] == 4 and made["list"] + made["walk"] <= 4, made
        assert 3 <= made["delete_files"] <= 3 * 2 + 2, made  # 3 batches: data first, then the links
        assert made["delete"] <= 4 and made["stat"] == 0, made  # the lease and the run's directory only
        left = [i.path async for page in driver.list_files("/docker/registry/v2/blobs") for i in page]
        assert left == [], left[:5]
    finally:
        await driver.close()
