"""The collector's names-only scan (drivers with cheap listings: local disk) against the full scan
(one listing of every file, as on object stores): on a tree holding every kind of file the layout
has -- layer links, revisions with signed schema 1 bytes, tags and their history, our reverse tag
index and referrers index, uploads, stray files, blob directories with and without data, a nested
repository, a sha512 revision, dangling links and stale index entries -- both find the same
things, and a collection deletes exactly the same files whichever scan it uses."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from drivers.base import FileInfo, StorageDriver
from drivers.filesystem import FilesystemDriver
from drivers.inmemory import InMemoryDriver
from registry.lifecycle import GCOptions, collect
from registry.lifecycle import inventory as inv
from registry.reference import Digest
from registry.store import Store, paths

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


async def _blob(driver: StorageDriver, data: bytes, algorithm: str = "sha256") -> Digest:
    d = _digest(data, algorithm)
    await driver.put_content(paths.blob_data(d), data)
    return d


async def _manifest(driver: StorageDriver, repo: str, layers: list[Digest], *, subject: Digest | None = None,
                    label: str = "", algorithm: str = "sha256") -> Digest:
    config = await _blob(driver, json.dumps({"label": label}).encode())
    body: dict = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(config), "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(d), "size": 1} for d in layers],
    }  # fmt: skip
    if subject is not None:
        body["subject"] = {"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 1}
    d = await _blob(driver, json.dumps(body).encode(), algorithm)
    await driver.put_content(paths.revision_link(repo, d), str(d).encode())
    for layer in [config, *layers]:
        await driver.put_content(paths.layer_link(repo, layer), str(layer).encode())
    await driver.put_content(paths.digest_tags_marker(repo, d), b"")
    if subject is not None:
        await driver.put_content(paths.referrer_entry(repo, subject, d), b"{}")
    return d


async def _tag(driver: StorageDriver, repo: str, tag: str, d: Digest) -> None:
    await driver.put_content(paths.tag_current_link(repo, tag), str(d).encode())
    await driver.put_content(paths.tag_index_link(repo, tag, d), str(d).encode())
    await driver.put_content(paths.digest_tag_entry(repo, d, tag), b"")


async def build_tree(driver: StorageDriver) -> None:
    layers = [await _blob(driver, f"layer {i}".encode() * 8) for i in range(8)]
    app, nested, deep = "team/app", "team/app/tools", "x/y/z"
    tagged = await _manifest(driver, app, layers[:3], label="tagged")
    await _tag(driver, app, "v1", tagged)
    await _manifest(driver, app, layers[2:4], label="untagged")  # goes with -m
    await _manifest(driver, app, layers[:1], subject=tagged, label="signature")  # a kept image's referrer
    moved = await _manifest(driver, app, layers[4:5], label="moved away")  # the tag moved off it
    await _tag(driver, app, "v0", moved)
    await driver.put_content(paths.tag_current_link(app, "v0"), str(tagged).encode())
    await driver.put_content(paths.tag_index_link(app, "v0", tagged), str(tagged).encode())
    index_children = [await _manifest(driver, nested, layers[5:6], label="amd64")]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": str(c), "size": 1} for c in index_children]})
    idx = await _blob(driver, index.encode())
    await driver.put_content(paths.revision_link(nested, idx), str(idx).encode())
    await _tag(driver, nested, "multi", idx)
    signed = await _manifest(driver, deep, layers[6:7], label="schema1-ish")
    await driver.put_content(paths.signed_manifest(deep, signed), b"signed bytes")
    await _tag(driver, deep, "latest", signed)
    await _manifest(driver, deep, layers[7:8], label="sha512", algorithm="sha512")
    # oddities
    await driver.put_content(paths.layer_link(app, layers[7]), str(layers[7]).encode())  # an unreferenced link
    gone = _digest(b"a blob that is no more")
    await driver.put_content(paths.layer_link(deep, gone), str(gone).encode())  # dangling link
    await driver.put_content(paths.tag_index_link(app, "old", gone), str(gone).encode())  # history of a gone manifest
    await driver.put_content(paths.digest_tag_entry(app, gone, "old"), b"")  # reverse entry of it
    await driver.put_content(paths.referrer_entry(app, tagged, gone), b"{}")  # a referrer that is gone
    await driver.put_content(paths.tag_index_link(app, "half", tagged), str(tagged).encode())  # no current link
    await driver.put_content(paths.upload_data(app, "u1"), b"partial")
    await driver.put_content(paths.upload_started_at(app, "u1"), b"2020-01-01T00:00:00Z")
    await driver.put_content(f"{paths.repo(app)}/_manifests/stray", b"?")
    orphan = await _blob(driver, b"an orphan" * 8)
    await driver.put_content(paths.blob_linked_from(orphan), app.encode())
    await driver.put_content(paths.blob_linked_from(gone), app.encode())  # a blob directory without data
    await driver.put_content(f"{paths.blobs_root()}/sha256/zz/stray", b"?")
    await driver.put_content(paths.catalog_entry("team"), b"")


def _files(infos: list[FileInfo]) -> list[tuple[str, int, object]]:
    return sorted((i.path, i.size, i.modified) for i in infos)


async def _detailed(driver: StorageDriver, infos: list[FileInfo]) -> list[FileInfo]:
    got = await inv.details(driver, infos)
    return [got[i.path] for i in infos if i.path in got]


@pytest.fixture(params=["filesystem", "inmemory"])
async def driver(request, tmp_path: Path):
    d: StorageDriver = FilesystemDriver(str(tmp_path / "root")) if request.param == "filesystem" else \
        InMemoryDriver(f"/gc-scan-{id(request)}")
    yield d
    await d.close()


async def test_names_only_scan_finds_what_the_full_scan_finds(driver: StorageDriver) -> None:
    await build_tree(driver)
    full = await inv.scan(driver)
    names = await inv.scan(driver, names_only=True)
    assert names.partial and not full.partial
    assert set(names.repositories) == set(full.repositories) == {"team/app", "team/app/tools", "x/y/z"}
    for name, f in full.repositories.items():
        n = names.repositories[name]
        assert n.revisions == f.revisions  # stat'ed: same sizes and times
        assert n.tags == f.tags and "half" not in n.tags
        assert _files(await _detailed(driver, list(n.layers.values()))) == _files(list(f.layers.values()))
        assert set(n.layers) == set(f.layers)
        for group in ("reverse", "referrer_entries"):
            fg, ng = getattr(f, group), getattr(n, group)
            assert set(ng) == set(fg), group
            for d in fg:
                assert _files(await _detailed(driver, ng[d])) == _files(fg[d]), group
        assert set(n.tag_index) == set(f.tag_index)
        for d, entries in f.tag_index.items():
            got = await _detailed(driver, [i for _, i in n.tag_index[d]])
            assert _files(got) == _files([i for _, i in entries])
            assert sorted(t for t, _ in n.tag_index[d]) == sorted(t for t, _ in entries)
        # signed schema 1 bytes: the names-only sweep deletes the one possible extra path, whether there or not
        for d, extras in f.revision_extras.items():
            assert [e.path for e in extras] == [paths.signed_manifest(name, d)]
    assert set(names.blobs) == set(full.blobs)
    await inv.complete_blobs(driver, names, list(names.blobs))
    for d, b in full.blobs.items():
        assert names.blobs[d].data == b.data, d
        assert _files(names.blobs[d].files) == _files(b.files), d


@pytest.mark.parametrize("mode", ["offline", "untagged", "online"])
async def test_a_collection_deletes_the_same_whichever_scan(tmp_path: Path, mode: str) -> None:
    source = tmp_path / "source"
    builder = FilesystemDriver(str(source))
    await build_tree(builder)
    await builder.close()
    results = {}
    for cheap in (True, False):
        root = tmp_path / f"root-{cheap}"
        shutil.copytree(source, root)
        driver = FilesystemDriver(str(root))
        driver.cheap_listing = cheap  # type: ignore[misc]
        options = GCOptions(delete_untagged=mode == "untagged", online=mode == "online", grace=0, refresh=0,
                            barrier_wait=0)
        summary = (await collect(Store(driver, secret="scan"), options)).to_json()
        await driver.close()
        for key in ("run", "seconds"):
            summary.pop(key)
        left = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "_lifecycle" not in p.parts}
        results[cheap] = (summary, left)
    assert results[True] == results[False]
    summary, left = results[True]
    assert summary["blobs_deleted"] >= 1 and summary["links_deleted"] >= 1 and summary["index_entries_deleted"] >= 1
    if mode == "untagged":
        assert summary["manifests_deleted"] == 3
