"""A real full disk: our registry process on a small tmpfs (mounted here; root only).

Each case fills the disk with a file of its own, makes a request fail for want of space and checks
what the issue measured from outside: a clean 507 STORAGE_FULL in the OCI envelope, one log line
and no traceback, no temporary file or upload session left behind, no deleted file held open by
the process (its space must come back at once), then that the same request succeeds once there
is room again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures_registry import Client, RunningRegistry, make_image, push_image, sha256, start_or_fail
from helpers import missing

MiB = 1 << 20
SIZE = 24 * MiB


def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs of a chosen size"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount(8) is not installed"
    return None


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if reason := _can_mount():
        missing(f"disk-full test: {reason}")
    mountpoint = tmp_path_factory.mktemp("small-disk")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        missing(f"disk-full test: cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture(scope="module")
def registry(small_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    root = small_disk / "root"
    root.mkdir()
    reg = start_or_fail("ours", root, tmp_path_factory.mktemp("disk-full-ours"))
    yield reg
    reg.stop()


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def filled(disk: Path, leave: int) -> Iterator[None]:
    """Fill ``disk`` until only ``leave`` bytes are free (0: until a write fails), then free it."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        block = b"\0" * (64 << 10)
        try:
            while free(disk) > leave + len(block):
                f.write(block)
                f.flush()
            if leave == 0:
                while True:
                    f.write(block)
                    f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    try:
        yield
    finally:
        filler.unlink()


def log_since(reg: RunningRegistry, mark: int) -> str:
    return reg.log_path.read_text(errors="replace")[mark:]


def log_mark(reg: RunningRegistry) -> int:
    return len(reg.log_path.read_text(errors="replace"))


def assert_storage_full(resp, reg: RunningRegistry, mark: int) -> None:
    assert resp.status == 507, resp
    assert resp.error_codes() == ["STORAGE_FULL"], resp
    body = resp.json()
    assert "space" in body["errors"][0]["message"]  # type: ignore[index]
    log = log_since(reg, mark)
    lines = [line for line in log.splitlines() if "STORAGE_FULL" in line]
    assert len(lines) == 1, log
    assert "No space left on device" in lines[0]
    assert "Traceback" not in log, log


def assert_clean(reg: RunningRegistry) -> None:
    """No temporary file, no upload session, and no deleted file the process still holds open."""
    root = reg.root
    leftovers = [str(p) for p in root.rglob("*") if "~" in p.name]
    assert leftovers == [], leftovers
    sessions = [str(p) for p in root.rglob("_uploads/*")]
    assert sessions == [], sessions
    held = []
    for fd in Path(f"/proc/{reg.proc.pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(root)) and target.endswith("(deleted)"):
                held.append(target)
    assert held == [], f"the registry holds deleted files open: {held}"


def test_monolithic_push_on_a_full_disk(registry, small_disk):
    client = registry.client
    data = os.urandom(6 * MiB)
    digest = sha256(data)
    with filled(small_disk, leave=2 * MiB):
        before = free(small_disk)
        mark = log_mark(registry)
        resp = client.request("POST", "/v2/full/mono/blobs/uploads/", query={"digest": digest}, body=data)
        assert_storage_full(resp, registry, mark)
        assert_clean(registry)
        assert free(small_disk) >= before - 64 * 1024, "the failed upload's space did not come back"
        assert client.request("HEAD", f"/v2/full/mono/blobs/{digest}").status == 404
    resp = client.request("POST", "/v2/full/mono/blobs/uploads/", query={"digest": digest}, body=data)
    assert resp.status == 201, resp
    assert client.request("GET", f"/v2/full/mono/blobs/{digest}").body == data
    assert_clean(registry)


def test_chunked_upload_resumes_after_the_disk_had_room_again(registry, small_disk):
    client = registry.client
    data = os.urandom(8 * MiB)
    digest = sha256(data)
    start = client.request("POST", "/v2/full/chunked/blobs/uploads/")
    assert start.status == 202
    first = client.request("PATCH", start.location_path(), body=data[: 2 * MiB])
    assert first.status == 202, first
    with filled(small_disk, leave=1 * MiB):
        mark = log_mark(registry)
        resp = client.request("PATCH", first.location_path(), body=data[2 * MiB:],
                              headers={"Content-Range": f"{2 * MiB}-{len(data) - 1}"})
        assert_storage_full(resp, registry, mark)
        status = client.request("GET", first.location_path())
        assert status.status == 204, status
    have = int((status.header("Range") or "0-0").split("-")[1]) + 1
    assert 2 * MiB <= have < len(data)
    rest = client.request("PATCH", status.location_path(), body=data[have:],
                          headers={"Content-Range": f"{have}-{len(data) - 1}"})
    assert rest.status == 202, rest
    done = client.request("PUT", rest.location_path(), query={"digest": digest})
    assert done.status == 201, done
    assert client.request("GET", f"/v2/full/chunked/blobs/{digest}").body == data
    assert_clean(registry)


def test_manifest_put_and_upload_start_on_a_full_disk(registry, small_disk):
    client: Client = registry.client
    image = make_image(label="full-disk", n_layers=1)
    for digest, data in image.blobs.items():
        assert client.push_blob("full/manifest", data, digest).status == 201
    with filled(small_disk, leave=0):
        mark = log_mark(registry)
        resp = client.put_manifest("full/manifest", "v1", image.manifest, image.media_type)
        assert_storage_full(resp, registry, mark)
        tags = client.request("GET", "/v2/full/manifest/tags/list")
        assert tags.status in (200, 404)
        if tags.status == 200:
            for tag in tags.json()["tags"]:  # type: ignore[index]
                assert client.get_manifest("full/manifest", tag).status == 200
        mark = log_mark(registry)
        resp = client.request("POST", "/v2/full/manifest/blobs/uploads/")
        assert_storage_full(resp, registry, mark)
        assert_clean(registry)
    push_image(client, "full/manifest", image, "v1")
    resp = client.get_manifest("full/manifest", "v1")
    assert resp.status == 200 and resp.body == image.manifest
    assert_clean(registry)
