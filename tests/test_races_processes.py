"""Races between two registry processes on one storage root (as ``http.workers`` or two instances).

No lock reaches across processes: the order of writes and the re-checks of
registry/store/manifests.py keep every outcome one that some order of the operations gives.
Measured from outside, as the issue measured it: real servers, one root, requests from threads.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fixtures_registry import (
    Client,
    RunningRegistry,
    make_image,
    push_image,
    sha256,
    start_or_fail,
)

ROUNDS = 25


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRegistry, RunningRegistry]]:
    root = tmp_path_factory.mktemp("twin-root")
    a = start_or_fail("ours", root, tmp_path_factory.mktemp("twin-a"))
    try:
        b = start_or_fail("ours", root, tmp_path_factory.mktemp("twin-b"))
    except BaseException:
        a.stop()
        raise
    yield a, b
    for reg in (a, b):
        reg.stop()
        assert "Traceback" not in reg.log_tail(100_000), reg.log_tail()


def at_once(*calls: Callable[[], int]) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def tags_of(client: Client, repo: str) -> list[str]:
    r = client.request("GET", f"/v2/{repo}/tags/list")
    assert r.status in (200, 404), r
    return r.json()["tags"] if r.status == 200 else []  # type: ignore[index]


def resolve_all(clients: tuple[Client, ...], repo: str) -> dict[str, str]:
    """tag -> digest; every listed tag resolves through every process, its manifest too."""
    out: dict[str, str] = {}
    for c in clients:
        for tag in tags_of(c, repo):
            r = c.get_manifest(repo, tag)
            assert r.status == 200, (tag, r)
            digest = sha256(r.body)
            assert c.get_manifest(repo, digest, method="HEAD").status == 200, (tag, "listed, its manifest gone")
            out[tag] = digest
    return out


def test_tag_put_racing_delete_by_digest_across_processes(twins):
    a, b = (reg.client for reg in twins)
    image = make_image(label="twin-tagdel")
    for digest, data in image.blobs.items():
        assert a.push_blob("twin/tagdel", data, digest).status == 201
    for n in range(ROUNDS):
        assert a.put_manifest("twin/tagdel", f"base{n}", image.manifest, image.media_type).status == 201

        def tag(client: Client, name: str) -> Callable[[], int]:
            return lambda: client.put_manifest("twin/tagdel", name, image.manifest, image.media_type).status

        statuses = at_once(tag(a, f"a{n}"), lambda: b.request("DELETE", f"/v2/twin/tagdel/manifests/{image.digest}").status,
                           tag(b, f"b{n}"))
        assert statuses[0] == 201 and statuses[2] == 201 and statuses[1] in (202, 404), statuses
        tags = resolve_all((a, b), "twin/tagdel")
        exists = a.get_manifest("twin/tagdel", image.digest, method="HEAD").status == 200
        assert exists == bool(tags), (n, exists, tags)  # a tag never outlives its manifest
        if exists:  # start the next round from the same place
            assert b.request("DELETE", f"/v2/twin/tagdel/manifests/{image.digest}").status == 202
        assert tags_of(a, "twin/tagdel") == []


def test_tag_move_racing_delete_across_processes(twins):
    """A tag moved by one process while the other deletes its old manifest: the tag ends at the new
    manifest, or (the one case a shared lock would close, see registry/store/manifests.py) is gone
    with the old one; it never points at a deleted manifest."""
    a, b = (reg.client for reg in twins)
    lost = 0
    for n in range(ROUNDS):
        old, new = make_image(label=f"twin-old-{n}", n_layers=1), make_image(label=f"twin-new-{n}", n_layers=1)
        push_image(a, "twin/move", old, f"t{n}")
        push_image(a, "twin/move", new)
        statuses = at_once(
            lambda: b.request("DELETE", f"/v2/twin/move/manifests/{old.digest}").status,
            lambda: a.put_manifest("twin/move", f"t{n}", new.manifest, new.media_type).status,
        )
        assert statuses == [202, 201], statuses
        tags = resolve_all((a, b), "twin/move")
        assert tags.get(f"t{n}", new.digest) == new.digest, tags
        lost += f"t{n}" not in tags
    print(f"moves lost: {lost} of {ROUNDS}")
    assert lost <= 2, f"{lost} of {ROUNDS} moves lost"


def test_delete_racing_pulls_across_processes(twins):
    a, b = (reg.client for reg in twins)
    image = make_image(label="twin-pull")
    for digest, data in image.blobs.items():
        assert a.push_blob("twin/pull", data, digest).status == 201
    for n in range(ROUNDS):
        assert a.put_manifest("twin/pull", "p", image.manifest, image.media_type).status == 201

        def pull(client: Client, ref: str) -> Callable[[], int]:
            def go() -> int:
                r = client.get_manifest("twin/pull", ref)
                assert r.status in (200, 404), r
                if r.status == 200:
                    assert r.body == image.manifest
                return r.status
            return go

        statuses = at_once(pull(a, "p"), pull(a, image.digest),
                           lambda: b.request("DELETE", f"/v2/twin/pull/manifests/{image.digest}").status,
                           pull(b, "p"), pull(b, image.digest))
        assert statuses[2] == 202, statuses
        assert tags_of(a, "twin/pull") == [] and tags_of(b, "twin/pull") == []
    for digest, data in image.blobs.items():  # the blobs stay (the collector's business)
        r = b.request("GET", f"/v2/twin/pull/blobs/{digest}")
        assert r.status == 200 and r.body == data


def test_concurrent_pushes_to_one_repository_across_processes(twins):
    """Pushes split over both processes into one repository, each finishing its upload (whose
    directory is then deleted and its parents pruned) while others start theirs."""
    a, b = (reg.client for reg in twins)

    def push(i: int) -> Callable[[], int]:
        def go() -> int:
            client = a if i % 2 else b
            other = b if i % 2 else a
            data = json.dumps({"blob": i, "pad": "x" * (1000 + i)}).encode()
            start = client.request("POST", "/v2/twin/push/blobs/uploads/")
            assert start.status == 202, start
            mid = other.request("PATCH", start.location_path(), body=data[:500],
                                headers={"Content-Type": "application/octet-stream"})
            assert mid.status == 202, mid
            done = client.request("PUT", mid.location_path(), query={"digest": sha256(data)}, body=data[500:])
            assert done.status == 201, done
            return done.status

        return go

    for _ in range(3):
        assert at_once(*(push(i) for i in range(16))) == [201] * 16
    root = Path(twins[0].root)
    uploads = root / "docker/registry/v2/repositories/twin/push/_uploads"
    assert not uploads.exists() or not [p for p in uploads.iterdir() if "~" not in p.name]

