"""Shared set-up of the web UI tests: a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by selenium, screenshots, and a driver wrapper that counts calls.

Screenshots go to ``UI_SCREENSHOTS`` (a directory; default: under pytest's tmp); with
``UI_DOCS_SCREENSHOTS=DIR`` the shots docs/ui.md shows are also written there, first screen only
(``UI_DOCS_SCREENSHOTS=docs/ui pytest tests/test_ui_browser.py`` refreshes docs/ui/).
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import FileInfo, FileWriter, StorageDriver
from helpers import require_tool

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: flags that keep Chromium off the network (this machine has none) and quick to start
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--disable-default-apps", "--disable-extensions", "--force-device-scale-factor=1",
                  "--hide-scrollbars", "--lang=en-US")
DESKTOP = (1200, 860)
PHONE = (390, 844)
#: the window of the screenshots docs/ui.md shows
DOCS = (1024, 720)


class Browser:
    """One Chromium for the whole session, with helpers for screenshots and cookies."""

    def __init__(self, driver: Any, shots: Path, docs: Path | None) -> None:
        self.driver = driver
        self.shots = shots
        self.docs = docs

    def get(self, url: str) -> None:
        self.driver.get(url)

    def shot(self, name: str, *, docs: bool = False, full: bool = True, anchor: str = "") -> Path:
        """Save a PNG of the page (its whole height when ``full``) as a test artifact; the docs'
        copy starts at ``anchor`` (a CSS selector) when given."""
        size = self.driver.get_window_size()
        if full:
            height = self.driver.execute_script(
                "return Math.min(document.documentElement.scrollHeight, 2400)")
            self.driver.set_window_size(size["width"], max(size["height"], int(height)))
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if full:
            self.driver.set_window_size(size["width"], size["height"])
        if docs and self.docs is not None:  # the docs' copy: the first screen only, kept small
            self.docs.mkdir(parents=True, exist_ok=True)
            if size["width"] >= DESKTOP[0]:
                self.driver.set_window_size(*DOCS)
            if anchor:
                self.driver.execute_script(
                    "const e = document.querySelector(arguments[0]); window.scrollTo(0, e.offsetTop - 8)", anchor)
            self.driver.save_screenshot(str(self.docs / f"{name}.png"))
            self.driver.set_window_size(size["width"], size["height"])
            self.driver.execute_script("window.scrollTo(0, 0)")
        return path

    def follow(self, element: Any) -> None:
        """Click ``element`` and wait for the page it leads to (a link or a form's button)."""
        old = self.driver.find_element("tag name", "html")
        element.click()
        self.wait_gone(old)

    def wait_gone(self, old: Any) -> None:
        """Wait until ``old`` (an element of the previous page) is no longer in the document.

        While a page is replaced, chromedriver may answer the check with an "unknown error"
        saying the node does not belong to the document: that is the staleness we wait for."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def gone(_driver: Any) -> bool:
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as e:
                if "does not belong to the document" in str(e.msg):
                    return True
                raise
            return False

        WebDriverWait(self.driver, 30).until(gone)

    def fresh(self) -> None:
        """Forget every cookie (a new visitor)."""
        self.driver.delete_all_cookies()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_tool(CHROMIUM, CHROMEDRIVER, hint="`make apt-deps` installs chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ui-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    shots = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    # chromedriver's own log beside the screenshots: what to read when a browser step fails
    service = Service(CHROMEDRIVER, log_output=str(shots / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(180)  # a loaded 2-core machine can be slow to render
    docs = os.environ.get("UI_DOCS_SCREENSHOTS")
    try:
        yield Browser(driver, shots, Path(docs) if docs else None)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class CountingDriver(StorageDriver):
    """The real driver, with every call counted by method and path (``calls``)."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def _count(self, method: str, path: str) -> None:
        with self._lock:
            self.calls[(method, path)] += 1

    def count(self, method: str) -> int:
        with self._lock:
            return sum(n for (m, _), n in self.calls.items() if m == method)

    def paths(self, method: str) -> list[str]:
        with self._lock:
            return [p for (m, p), n in self.calls.items() if m == method for _ in range(n)]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    async def get_content(self, path: str) -> bytes:
        self._count("get_content", path)
        return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes) -> None:
        self._count("put_content", path)
        await self.inner.put_content(path, data)

    def reader(self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        self._count("reader", path)
        return self.inner.reader(path, offset, chunk_size=chunk_size)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        self._count("writer", path)
        return await self.inner.writer(path, append)

    async def stat(self, path: str) -> FileInfo:
        self._count("stat", path)
        return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        self._count("list", path)
        return await self.inner.list(path)

    async def move(self, source: str, dest: str) -> None:
        self._count("move", source)
        await self.inner.move(source, dest)

    async def delete(self, path: str) -> None:
        self._count("delete", path)
        await self.inner.delete(path)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return await self.inner.redirect_url(path, method)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    def walk(self, path: str, callback: Any = None, *, start_after: str | None = None) -> AsyncIterator[FileInfo]:
        self._count("walk", path)
        return self.inner.walk(path, callback, start_after=start_after)

    async def close(self) -> None:
        await self.inner.close()


class ThreadedApp:
    """An aiohttp app served on 127.0.0.1 from a thread with its own loop (selenium blocks)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: Any = None
        self.port = 0

    def run(self, coro: Any, timeout: float = 600) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, app: Any) -> str:
        from aiohttp import web

        from helpers import free_port

        async def start() -> None:
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            self.port = free_port()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        self.run(start())
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.runner is not None:
            self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def store_image(store: Any, repo: str, tag: str | None, *, config: dict[str, Any] | None = None,
                      annotations: dict[str, str] | None = None, subject: Any = None,
                      artifact_type: str | None = None, layers: int = 1, seed: str = "") -> str:
    """Store an image (or, with ``artifact_type``, an artifact) through the store, as a push
    does; ``subject`` is a (media type, digest, size) triple. Returns the manifest digest."""
    import json as _json

    from registry import manifests as mf
    from registry.reference import parse_digest

    if artifact_type is not None:
        cfg_type, cfg = "application/vnd.oci.empty.v1+json", b"{}"
    else:
        cfg_type = "application/vnd.oci.image.config.v1+json"
        cfg = _json.dumps(config if config is not None else
                          {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                           "seed": seed or repo}).encode()
    blobs = [(cfg_type, cfg)] + [("application/vnd.oci.image.layer.v1.tar+gzip",
                                  f"{repo}:{tag}:{seed}:layer {i}".encode() * (i + 1)) for i in range(layers)]
    descs = []
    for media_type, data in blobs:
        d = mf.stored.digest_of(data, "sha256")
        await store.blobs.put_small(parse_digest(d), data)
        await store.blobs.link(repo, parse_digest(d))
        descs.append({"mediaType": media_type, "digest": d, "size": len(data)})
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": descs[0], "layers": descs[1:]}
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    if subject is not None:
        body["subject"] = {"mediaType": subject[0], "digest": subject[1], "size": subject[2]}
    if annotations:
        body["annotations"] = annotations
    manifest = mf.parse_manifest(_json.dumps(body).encode(), body["mediaType"])
    return str(await store.manifests.put(repo, manifest, [tag] if tag else []))
