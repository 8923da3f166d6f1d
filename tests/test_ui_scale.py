"""The repository list at 10,000 repositories, in a real browser: one storage listing per page.

The registry runs in this process (so a counting wrapper around the real driver sees every call)
and serves Chromium from a thread. 10,000 repositories in 100 namespaces are stored through the
store, exactly as pushes store them; the catalog walk would cost 10,101 listings per full pass.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api_support import make_config
from drivers.filesystem import FilesystemDriver
from registry import manifests as mf
from registry.api.base import STORE_KEY
from registry.app import create_app
from registry.reference import parse_digest
from registry.store import paths
from registry.store import catalog as catalog_mod
from registry.store.catalog import entry_name
from ui_support import Browser, CountingDriver, ThreadedApp

pytestmark = pytest.mark.timeout(600)

NAMESPACES, PER_NAMESPACE = 100, 100
TOTAL = NAMESPACES * PER_NAMESPACE


def _name(i: int) -> str:
    return f"ns-{i // PER_NAMESPACE:03d}/app-{i % PER_NAMESPACE:02d}"


async def _push_first(store: Any) -> None:
    """Repository 0, pushed through the store as a push stores it."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z"}).encode()
    layer = b"layer bytes " * 100
    body = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": mf.stored.digest_of(config, "sha256"), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": mf.stored.digest_of(layer, "sha256"), "size": len(layer)}],
    }).encode()
    manifest = mf.parse_manifest(body, "application/vnd.oci.image.manifest.v1+json")
    for d, data in ((manifest.config.digest, config), (manifest.layers[0].digest, layer)):
        await store.blobs.put_small(parse_digest(d), data)
        await store.blobs.link(_name(0), parse_digest(d))
    await store.manifests.put(_name(0), manifest, ["latest"])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _replicate(root: Path) -> None:
    """Repositories 1..9999: the very files the push of repository 0 wrote (its tree and its
    catalog index entry), written directly (a store push each would take minutes here)."""
    repos = root / paths.REPOSITORIES.lstrip("/")
    template = _files(repos / _name(0))
    index = repos / "_catalog"
    assert (index / entry_name(_name(0))).exists()  # the push entered it in the index
    for i in range(1, TOTAL):
        base = repos / _name(i)
        for rel, data in template.items():
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (index / entry_name(_name(i))).write_bytes(b"")


async def _check_replica(store: Any) -> None:
    """A replica reads back as the pushed repository does."""
    first, last = _name(0), _name(TOTAL - 1)
    assert await store.tags.list(last) == await store.tags.list(first) == ["latest"]
    assert (await store.manifests.get(last, "latest")).body == (await store.manifests.get(first, "latest")).body
    page, more = await store.catalog.list(3)
    assert page == [_name(0), _name(1), _name(2)] and more


@pytest.fixture(scope="module")
def big_registry() -> Iterator[tuple[str, CountingDriver]]:
    # the filesystem driver on tmpfs when there is one: ~70,000 small files, each fsynced
    root = Path(tempfile.mkdtemp(prefix="ui-scale-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    server = ThreadedApp()
    driver = CountingDriver(FilesystemDriver(str(root)))
    app = create_app(make_config(), driver)
    try:
        url = server.serve(app)
        server.run(_push_first(app[STORE_KEY]))
        _replicate(root)
        server.run(_check_replica(app[STORE_KEY]))
        assert len(_files(root / paths.REPOSITORIES.lstrip("/") / "_catalog")) == TOTAL + 1  # and the marker
        yield url + "/ui/", driver
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _listings(driver: CountingDriver) -> list[str]:
    return driver.paths("list")


def test_ten_thousand_repositories_one_listing_per_page(browser: Browser, big_registry: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ui, driver = big_registry
    # the look at repositories/ for names another registry created comes at most every 30 s; a
    # slow machine must not see a second one within the test
    monkeypatch.setattr(catalog_mod, "RECONCILE_INTERVAL", 3600.0)
    b = browser
    b.fresh()
    driver.reset()
    pages = [ui, ui + "?page=2", ui + "?page=200", ui + "?q=ns-042", ui + "?q=app-07&page=2", ui + "?q=nothing-like-it"]
    for n, url in enumerate(pages, 1):
        b.get(url)
        assert b.driver.find_element("css selector", "h1").text == "Repositories"
        listed = _listings(driver)
        index = [p for p in listed if p == paths.catalog_index_dir()]
        assert len(index) == n, (url, listed[-5:])
        # never a listing per repository (at most one look at the top level, every 30 s)
        assert [p for p in listed if p not in (paths.catalog_index_dir(), paths.REPOSITORIES)] == [], url
        assert len(listed) <= n + 1
        # nor any other per-repository read: pages show names only
        assert driver.count("stat") + driver.count("get_content") + driver.count("reader") == 0, url
    b.get(ui)
    names = [e.text for e in b.driver.find_elements("css selector", "a.repo")]
    assert names == [_name(i) for i in range(50)]
    assert b.driver.find_element("css selector", "#count").text == f"{TOTAL} repositories"
    b.get(ui + "?page=200")
    assert [e.text for e in b.driver.find_elements("css selector", "a.repo")] == [_name(i) for i in range(9950, TOTAL)]
    assert "Page 200 of 200" in b.driver.find_element("css selector", ".pager").text
    b.get(ui + "?q=ns-042")
    assert b.driver.find_element("css selector", "#count").text == "100 repositories matching “ns-042”"
    b.shot("repositories-10000")
    # following the pager links works too
    b.get(ui)
    b.driver.find_element("css selector", "a[rel=next]").click()
    assert b.driver.find_elements("css selector", "a.repo")[0].text == _name(50)
