"""kill -9 at chosen points of a blob commit and of a tag PUT, then a restart and the client's retry.

The registry process is started with ``PYREGISTRY_TEST_CRASH`` (drivers/crashpoints.py: test-only,
inert unless set), which makes it SIGKILL itself at the named point: no clean-up of any kind runs,
exactly as a kill -9 from outside at that instant. A second process, started normally on the same
root, then gets the very request the client would retry: it must succeed, and the tree must be
consistent (every listed tag resolves, nothing half visible, no session left).
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures_registry import Client, RunningRegistry, make_image, sha256, start_or_fail

MiB = 1 << 20


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def restarts(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``restarts.crashing(point)`` starts a registry that dies at ``point``; ``restarts.normal()``
    one that does not; both on ``root``."""
    started: list[RunningRegistry] = []

    class Restarts:
        def crashing(self, point: str) -> RunningRegistry:
            monkeypatch.setenv("PYREGISTRY_TEST_CRASH", point)
            try:
                return self._start()
            finally:
                monkeypatch.delenv("PYREGISTRY_TEST_CRASH")

        def normal(self) -> RunningRegistry:
            return self._start()

        def _start(self) -> RunningRegistry:
            reg = start_or_fail("ours", root, tmp_path / f"run-{len(started)}")
            started.append(reg)
            return reg

    yield Restarts()
    for reg in started:
        reg.stop()


def died(reg: RunningRegistry) -> bool:
    try:
        return reg.proc.wait(timeout=10) == -9
    except Exception:  # noqa: BLE001
        return False


def send_expecting_death(client: Client, reg: RunningRegistry, method: str, path: str, **kwargs: object) -> None:
    """The request during which the process kills itself: the client sees the connection drop."""
    try:
        resp = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    except (ConnectionError, http.client.HTTPException, OSError):
        resp = None
    assert resp is None, f"the crash point was not reached: {resp}"
    assert died(reg), "the registry did not die by SIGKILL"


def sessions(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("_uploads/*")]


#: (crash point, whether the closing PUT carries the last chunk): every step of a commit once
COMMIT_CASES = [
    ("upload.commit.before_move", False),
    ("upload.commit.after_move", False),  # the case: data moved, no link yet
    ("upload.commit.after_move", True),
    ("upload.commit.after_link", False),
    ("fs.put.before_rename@/_layers/", True),  # inside the link write
    ("fs.put.after@/hashstates/sha256/{size}", True),  # the final state saved, data not yet moved
]


@pytest.mark.parametrize("point,with_body", COMMIT_CASES,
                         ids=[f"{p.split('@')[0]}{'-' + p.split('@')[1].strip('/').split('/')[0] if '@' in p else ''}"
                              f"-{'last-chunk' if b else 'empty'}" for p, b in COMMIT_CASES])
def test_kill_during_commit_then_retry(restarts, root, point, with_body):
    data = os.urandom(3 * MiB + 12345)
    digest = sha256(data)
    first = restarts.crashing(point.format(size=len(data)))
    client = first.client
    start = client.request("POST", "/v2/crash/commit/blobs/uploads/")
    assert start.status == 202, start
    cut = 2 * MiB if with_body else len(data)
    patched = client.request("PATCH", start.location_path(), body=data[:cut],
                             headers={"Content-Type": "application/octet-stream"})
    assert patched.status == 202, patched
    put_path = patched.location_path()
    body = data[cut:] if with_body else None
    send_expecting_death(client, first, "PUT", put_path, query={"digest": digest}, body=body)

    second = restarts.normal().client
    assert second.request("HEAD", f"/v2/crash/commit/blobs/{digest}").status in (200, 404)
    retry = second.request("PUT", put_path, query={"digest": digest}, body=body)  # the client's retry, as it was
    assert retry.status == 201, retry
    assert retry.header("Docker-Content-Digest") == digest
    got = second.request("GET", f"/v2/crash/commit/blobs/{digest}")
    assert got.status == 200 and got.body == data
    assert sessions(root) == []


#: (crash point, whether the tag already points at another manifest)
TAG_CASES = [
    ("fs.put.before_rename@/_tagsbydigest/", False),
    ("fs.put.after@/revisions/", False),
    ("fs.put.before_rename@/current/link", False),  # the case: only a temporary link file
    ("fs.put.after@/current/link", False),
    ("fs.put.before_rename@/index/", False),
    ("fs.put.before_rename@/current/link", True),
    ("fs.put.after@/current/link", True),
]


@pytest.mark.parametrize("point,retag", TAG_CASES,
                         ids=[f"{p.replace('@', '-').replace('/', '_').strip('_')}-{'moved' if r else 'new'}"
                              for p, r in TAG_CASES])
def test_kill_during_tag_put_then_retry(restarts, root, point, retag):
    image = make_image(label="crash-tag", n_layers=1)
    old = make_image(label="crash-old", n_layers=1)
    if retag:  # the old tag goes in through a process that does not crash on tag writes
        setup = restarts.normal()
        for digest, data in old.blobs.items():
            assert setup.client.push_blob("crash/tag", data, digest).status == 201
        assert setup.client.put_manifest("crash/tag", "t", old.manifest, old.media_type).status == 201
        setup.stop()

    first = restarts.crashing(point)
    for digest, data in image.blobs.items():  # blob pushes reach none of these points
        assert first.client.push_blob("crash/tag", data, digest).status == 201
    send_expecting_death(first.client, first, "PUT", "/v2/crash/tag/manifests/t",
                         headers={"Content-Type": image.media_type}, body=image.manifest)

    second = restarts.normal().client
    listed = second.request("GET", "/v2/crash/tag/tags/list")
    tags = listed.json()["tags"] if listed.status == 200 else []  # type: ignore[index]
    assert tags in ([], ["t"]), tags
    for tag in tags:  # whatever survived the crash resolves, to the old or the new manifest
        got = second.get_manifest("crash/tag", tag)
        assert got.status == 200 and got.body in (image.manifest, old.manifest), got
    if not retag:
        assert tags == [] or second.get_manifest("crash/tag", "t").body == image.manifest
    tag_dirs = root / "docker/registry/v2/repositories/crash/tag/_manifests/tags"
    if tag_dirs.exists():  # a crash's temporary entries are hidden names, never a bare tag directory
        for entry in tag_dirs.iterdir():
            assert "~" in entry.name or (entry / "current" / "link").exists(), entry

    retry = second.put_manifest("crash/tag", "t", image.manifest, image.media_type)
    assert retry.status == 201, retry
    got = second.get_manifest("crash/tag", "t")
    assert got.status == 200 and got.body == image.manifest
    assert second.request("GET", "/v2/crash/tag/tags/list").json()["tags"] == ["t"]  # type: ignore[index]
    deleted = second.request("DELETE", f"/v2/crash/tag/manifests/{image.digest}")
    assert deleted.status == 202, deleted
    assert second.request("GET", "/v2/crash/tag/tags/list").json()["tags"] == []  # type: ignore[index]


def test_tag_deleted_after_a_crash_is_gone_for_every_process(restarts, root):
    """A kill -9 while a tag is moved leaves a temporary file in its ``current`` directory. When
    another process later deletes the tag's manifest by digest, a third one that listed the tag
    before (and so remembers it as complete) must see it gone too: the leftover must not keep the
    tag's directory, and with it the name, in the shared listing."""
    old = make_image(label="crash-stale-old", n_layers=1)
    new = make_image(label="crash-stale-new", n_layers=1)
    keeper = restarts.normal()  # runs through the whole test, as another instance would
    for image in (old, new):
        for digest, data in image.blobs.items():
            assert keeper.client.push_blob("crash/stale", data, digest).status == 201
    assert keeper.client.put_manifest("crash/stale", "t", old.manifest, old.media_type).status == 201
    assert keeper.client.request("GET", "/v2/crash/stale/tags/list").json()["tags"] == ["t"]  # type: ignore[index]

    first = restarts.crashing("fs.put.before_rename@/current/link")
    send_expecting_death(first.client, first, "PUT", "/v2/crash/stale/manifests/t",
                         headers={"Content-Type": new.media_type}, body=new.manifest)
    tag_dir = root / "docker/registry/v2/repositories/crash/stale/_manifests/tags/t"
    leftovers = [p for p in (tag_dir / "current").iterdir() if "~" in p.name]
    assert leftovers, "the crash left no temporary file"
    for leftover in leftovers:  # the crash was a minute ago (a younger file may be a live write's)
        os.utime(leftover, (time.time() - 60, time.time() - 60))

    deleter = restarts.normal().client
    assert deleter.request("DELETE", f"/v2/crash/stale/manifests/{old.digest}").status == 202
    for client in (keeper.client, deleter):
        listed = client.request("GET", "/v2/crash/stale/tags/list")
        assert listed.status == 200 and listed.json()["tags"] == [], listed  # type: ignore[index]
        assert client.get_manifest("crash/stale", "t").status == 404
    assert not tag_dir.exists(), sorted(str(p) for p in tag_dir.rglob("*"))
    # the tag comes back through any process, and lists everywhere
    assert deleter.put_manifest("crash/stale", "t", new.manifest, new.media_type).status == 201
    for client in (keeper.client, deleter):
        assert client.request("GET", "/v2/crash/stale/tags/list").json()["tags"] == ["t"]  # type: ignore[index]
        assert client.get_manifest("crash/stale", "t").body == new.manifest
