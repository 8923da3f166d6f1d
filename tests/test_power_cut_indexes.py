"""What a power cut may take, and how it comes back.

Files the registry can rebuild are not fsynced on their own (``ContentWrite(durable=False)``):
the reverse tag index (``_tagsbydigest``), the referrers index (``_referrers``), the catalog index
(``repositories/_catalog``), ``linkedfrom`` hints, upload hash states and ``startedat``. They are
renamed into place in order with the rest, so after a power cut one may be missing (its rename not
yet in the journal) or empty (its data not yet written), never ahead of what it indexes. These
tests take them away or empty them on a real filesystem store, as a power cut could, and check
that the registry still answers correctly (damaged referrers entries repair themselves, hash
states are recomputed) and that ``registry reindex`` brings every index back: a delete by digest
removes every tag again, the catalog index lists every repository, mounts find their hints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from api_support import OCI_MANIFEST, digest_of, image_manifest, loc_of, make_config, push_blob
from drivers.filesystem import FilesystemDriver
from helpers import missing
from registry.app import create_app
from registry.cli import reindex
from registry.config import Config

ROOT = "docker/registry/v2"
ARTIFACT = "application/vnd.example.sbom"


def _rebuildable(root: Path) -> list[Path]:
    """Every file the registry writes without an fsync of its own (in a store without uploads)."""
    repos = root / ROOT / "repositories"
    found = [p for p in repos.rglob("*") if p.is_file() and ("/_tagsbydigest/" in str(p) or "/_referrers/" in str(p))]
    found += [p for p in (repos / "_catalog").iterdir() if p.is_file()]
    found += list((root / ROOT / "blobs").rglob("linkedfrom"))
    return found


def _config(root: Path) -> Config:
    return Config.from_dict({"storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
                             "http": {"secret": "power-cut"}})


async def _client(aiohttp_client: Any, root: Path) -> Any:
    return await aiohttp_client(create_app(make_config(), FilesystemDriver(str(root))))


async def _push(client: Any, repo: str, seed: bytes, tags: list[str], **extra: Any) -> str:
    config, layer = b'{"seed":"' + seed + b'"}', b"layer " + seed * 32
    await push_blob(client, repo, config)
    await push_blob(client, repo, layer)
    body = image_manifest(config, [layer], **extra)
    d = digest_of(body)
    query = "".join(f"&tag={t}" for t in tags[1:])
    r = await client.put(f"/v2/{repo}/manifests/{tags[0] if tags else d}{'?' + query[1:] if query else ''}",
                         data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    return d


async def _populate(client: Any) -> dict[str, str]:
    a = await _push(client, "team/app", b"a", ["a1", "a2"])
    b = await _push(client, "team/app", b"b", ["b"])
    sbom = await _push(client, "team/app", b"sbom", [],
                       subject={"mediaType": OCI_MANIFEST, "digest": a, "size": 1}, artifactType=ARTIFACT)
    await _push(client, "other", b"o", ["latest"])
    return {"a": a, "b": b, "sbom": sbom}


async def _referrers(client: Any, subject: str) -> list[str]:
    r = await client.get(f"/v2/team/app/referrers/{subject}")
    assert r.status == 200
    return [m["digest"] for m in (await r.json())["manifests"]]


@pytest.mark.parametrize("damage", ["emptied", "lost"])
async def test_after_a_power_cut_the_indexes_come_back(aiohttp_client: Any, tmp_path: Path, damage: str) -> None:
    root = tmp_path / "root"
    client = await _client(aiohttp_client, root)
    digests = await _populate(client)
    files = _rebuildable(root)
    assert any("_tagsbydigest" in str(p) for p in files) and any("_referrers" in str(p) for p in files)
    assert any(p.name == "linkedfrom" for p in files) and any("_catalog" in str(p) for p in files)
    for path in files:
        if damage == "emptied":
            path.write_bytes(b"")
        else:
            path.unlink()
    await client.close()

    # straight after the restart: what was answered 201 is there and consistent
    client = await _client(aiohttp_client, root)
    tags = (await (await client.get("/v2/team/app/tags/list")).json())["tags"]
    assert tags == ["a1", "a2", "b"]
    for tag in tags:
        assert (await client.get(f"/v2/team/app/manifests/{tag}", headers={"Accept": OCI_MANIFEST})).status == 200
    # a damaged referrers entry is rebuilt from its manifest when read (a lost one needs reindex)
    assert await _referrers(client, digests["a"]) == ([digests["sbom"]] if damage == "emptied" else [])
    await client.close()

    assert await reindex(_config(root), []) == 0  # `registry reindex`, every repository

    client = await _client(aiohttp_client, root)
    assert await _referrers(client, digests["a"]) == [digests["sbom"]]
    entry = next((root / ROOT / "repositories/team/app/_referrers").rglob("*-*"))
    assert json.loads(entry.read_bytes())["artifactType"] == ARTIFACT
    # the reverse index is whole again: a delete by digest takes both of its tags
    r = await client.delete(f"/v2/team/app/manifests/{digests['a']}")
    assert r.status == 202
    assert (await (await client.get("/v2/team/app/tags/list")).json())["tags"] == ["b"]
    # the catalog index lists every repository; hints name a repository that links the blob
    catalog = root / ROOT / "repositories/_catalog"
    assert sorted(p.name for p in catalog.iterdir()) == [".complete", "other", "team..app"]
    for hint in (root / ROOT / "blobs").rglob("linkedfrom"):
        assert hint.read_text() in ("team/app", "other")
    layer = digest_of(b"layer " + b"o" * 32)
    r = await client.post(f"/v2/fresh/blobs/uploads/?mount={layer}")  # no `from`: the hint leads
    assert r.status == 201, await r.text()


async def test_a_partly_lost_reverse_index_is_what_reindex_repairs(aiohttp_client: Any, tmp_path: Path) -> None:
    """The one loss that would matter: one tag's reverse entry gone while the manifest keeps
    another (the journal's order makes it impossible for a tag written in the same PUT as its
    entry; it documents why ``registry reindex`` exists). Without it a delete by digest would
    leave that tag behind; after ``reindex`` it takes every tag."""
    root = tmp_path / "root"
    client = await _client(aiohttp_client, root)
    digests = await _populate(client)
    entries = root / ROOT / "repositories/team/app/_tagsbydigest/sha256" / digests["a"].split(":")[1]
    (entries / "a2").unlink()
    await client.close()
    assert await reindex(_config(root), ["team/app"]) == 0
    assert (entries / "a2").exists()
    client = await _client(aiohttp_client, root)
    assert (await client.delete(f"/v2/team/app/manifests/{digests['a']}")).status == 202
    assert (await (await client.get("/v2/team/app/tags/list")).json())["tags"] == ["b"]


async def test_an_upload_whose_hash_state_was_emptied_still_commits(aiohttp_client: Any, tmp_path: Path) -> None:
    """A hash state left empty by a power cut makes the final PUT re-read the data; a damaged
    one can never make a wrong digest pass."""
    root = tmp_path / "root"
    client = await _client(aiohttp_client, root)
    data = os.urandom(300_000)
    r = await client.post("/v2/repo/blobs/uploads/")
    r = await client.patch(loc_of(r), data=data[:200_000])
    assert r.status == 202
    location = loc_of(r)
    states = list(root.rglob("hashstates/sha256/*"))
    assert [p.name for p in states] == ["200000"]
    states[0].write_bytes(b"")
    r = await client.put(f"{location}&digest={digest_of(data)}", data=data[200_000:])
    assert r.status == 201, await r.text()
    assert await (await client.get(f"/v2/repo/blobs/{digest_of(data)}")).read() == data

    # a state that parses but belongs to other bytes: the digest check refuses the upload
    from drivers.digest import ResumableHash

    other = ResumableHash("sha256")
    other.update(os.urandom(200_000))
    if other.state() is None:
        missing("no resumable sha256 state on this machine (libcrypto)")
    r = await client.post("/v2/repo/blobs/uploads/")
    r = await client.patch(loc_of(r), data=data[:200_000])
    location = loc_of(r)
    (state,) = [p for p in root.rglob("hashstates/sha256/*")]
    state.write_bytes(other.state())
    r = await client.put(f"{location}&digest={digest_of(data + b'x')}", data=data[200_000:] + b"x")
    assert r.status == 400 and (await r.json())["errors"][0]["code"] == "DIGEST_INVALID"
    assert (await client.head(f"/v2/repo/blobs/{digest_of(data + b'x')}")).status == 404
