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
from helpers import run_cli


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
    if not os.path.exists(REFERENCE_BINARY):
        pytest.skip("the reference registry (Debian docker-registry) is not installed")
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
