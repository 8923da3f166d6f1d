"""The web UI's pages, sessions and forms over HTTP (the app in this process, real drivers and
the real token server; the browser tests are tests/test_ui_browser.py and test_ui_scale.py)."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_support import make_config
from auth_support import PASSWORDS, make_pki, make_users, token_auth_block, tokenserver_block
from drivers.filesystem import FilesystemDriver
from drivers.inmemory import InMemoryDriver
from registry.api.base import STORE_KEY
from registry.app import create_app
from registry.auth import keys
from registry.auth.htpasswd import set_user
from registry.config import Config, ConfigError
from registry.store import catalog as catalog_mod
from registry.store import paths
from ui_support import store_image


async def _app(aiohttp_client: Any, driver: Any = None, **extra: Any) -> tuple[Any, Any]:
    app = create_app(make_config(**extra), driver or InMemoryDriver())
    client = await aiohttp_client(app)
    return client, app[STORE_KEY]


def _csrf(text: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', text)
    assert m, text[:2000]
    return html.unescape(m.group(1))


async def _login(client: Any, user: str, password: str | None = None, **headers: str) -> Any:
    page = await client.get("/ui/login")
    return await client.post("/ui/login", data={"username": user, "password": password or PASSWORDS[user],
                                                "csrf": _csrf(await page.text()), "next": "/ui/"},
                             allow_redirects=False, headers=headers)


def _repos(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<a class="repo" href="[^"]+">([^<]+)</a>', text)]


@pytest.fixture
def token_setup(tmp_path: Path) -> dict[str, Any]:
    pki = make_pki(tmp_path / "pki")
    make_users(tmp_path / "htpasswd")
    return {"auth": token_auth_block(), "tokenserver": tokenserver_block(tmp_path, pki)}


@pytest.fixture
def htpasswd_setup(tmp_path: Path) -> dict[str, Any]:
    users = make_users(tmp_path / "htpasswd")
    return {"auth": {"htpasswd": {"realm": "test", "path": str(users)}}}


# --------------------------------------------------------------------------- auth modes


async def test_token_rules_decide_what_each_viewer_sees(aiohttp_client: Any, token_setup: dict) -> None:
    client, store = await _app(aiohttp_client, **token_setup)
    for repo in ("alice/app", "bob/app", "public/base", "shared/tools"):
        await store_image(store, repo, "1")
    anonymous = await (await client.get("/ui/")).text()
    assert _repos(anonymous) == ["public/base"] and "1 repository" in anonymous
    # a repository anonymous may not pull answers exactly as one that does not exist
    hidden = await client.get("/ui/r/alice/app")
    missing = await client.get("/ui/r/alice/nothing")
    assert hidden.status == missing.status == 404
    assert (await hidden.text()).replace("alice/app", "X") == (await missing.text()).replace("alice/nothing", "X")
    r = await _login(client, "alice")
    assert r.status == 303 and r.headers["Location"] == "/ui/"
    assert _repos(await (await client.get("/ui/")).text()) == ["alice/app", "public/base", "shared/tools"]
    assert (await client.get("/ui/r/bob/app")).status == 404
    assert (await client.get("/ui/r/alice/app")).status == 200
    # a rule with pull and push but no delete: no delete link, the form refused
    page = await (await client.get("/ui/r/shared/tools")).text()
    assert "delete-tag" not in page
    assert (await client.get("/ui/r/shared/tools/-/delete?ref=1")).status == 403
    assert "delete-tag" in await (await client.get("/ui/r/alice/app")).text()


async def test_htpasswd_anonymous_sees_nothing_users_see_all(aiohttp_client: Any, htpasswd_setup: dict) -> None:
    client, store = await _app(aiohttp_client, **htpasswd_setup)
    await store_image(store, "bob/app", "1")
    page = await (await client.get("/ui/")).text()
    assert _repos(page) == [] and "Log in to see the repositories" in page and "0 repositories" in page
    assert (await client.get("/ui/r/bob/app")).status == 404
    assert (await _login(client, "alice", "wrong")).status == 401
    r = await _login(client, "alice")
    assert r.status == 303
    assert _repos(await (await client.get("/ui/")).text()) == ["bob/app"]
    assert (await client.get("/ui/r/bob/app/-/manifest/1")).status == 200


async def test_external_token_server_shows_nothing(aiohttp_client: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    client, store = await _app(aiohttp_client, auth=token_auth_block(rootcertbundle=str(pki.cert_path)))
    await store_image(store, "public/app", "1")
    page = await (await client.get("/ui/")).text()
    assert _repos(page) == [] and "external token server" in page
    assert (await client.get("/ui/r/public/app")).status == 404
    assert "log in with your registry client" in await (await client.get("/ui/login")).text()


async def test_without_auth_everything_is_open(aiohttp_client: Any) -> None:
    client, store = await _app(aiohttp_client)
    await store_image(store, "any/app", "1")
    page = await (await client.get("/ui/")).text()
    assert _repos(page) == ["any/app"]
    assert "Log in" not in page


# --------------------------------------------------------------------------- sessions


async def test_session_cookie_flags_and_secure_behind_tls_proxy(aiohttp_client: Any, token_setup: dict) -> None:
    client, _ = await _app(aiohttp_client, **token_setup)
    r = await _login(client, "alice")
    cookie = r.cookies["registry_ui_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/ui/" and not cookie["secure"]
    assert cookie["max-age"] == str(12 * 3600)
    csrf = (await client.get("/ui/login")).cookies  # logged in: no anonymous csrf cookie needed
    assert "registry_ui_csrf" not in csrf
    r = await _login(client, "alice", **{"X-Forwarded-Proto": "https"})
    assert r.cookies["registry_ui_session"]["secure"]
    for name in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
        assert name in r.headers
    assert r.headers["Cache-Control"] == "no-store"


async def test_session_cookie_secure_over_real_tls(aiohttp_server: Any, tmp_path: Path, token_setup: dict) -> None:
    key = keys.generate_private_key("ec")
    cert = keys.make_certificate(key, "127.0.0.1")
    (tmp_path / "tls.key").write_bytes(keys.private_key_pem(key))
    (tmp_path / "tls.crt").write_bytes(keys.certificate_pem(cert))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    app = create_app(make_config(**token_setup), InMemoryDriver())
    server = await aiohttp_server(app, ssl=ctx)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        url = f"https://127.0.0.1:{server.port}/ui/login"
        page = await session.get(url, ssl=False)
        assert page.cookies["registry_ui_csrf"]["secure"]
        r = await session.post(url, data={"username": "alice", "password": PASSWORDS["alice"],
                                          "csrf": _csrf(await page.text())}, ssl=False, allow_redirects=False)
        assert r.status == 303 and r.cookies["registry_ui_session"]["secure"]


async def test_tampered_expired_and_revoked_sessions_are_anonymous(aiohttp_client: Any, tmp_path: Path,
                                                                   token_setup: dict) -> None:
    client, store = await _app(aiohttp_client, **token_setup)
    await store_image(store, "alice/app", "1")
    r = await _login(client, "alice")
    good = r.cookies["registry_ui_session"].value
    ui = client.app[__import__("registry.ui.handlers", fromlist=["STATE_KEY"]).STATE_KEY].auth

    async def sees(cookie: str) -> bool:
        client.session.cookie_jar.clear()
        page = await client.get("/ui/r/alice/app", cookies={"registry_ui_session": cookie})
        return page.status == 200

    assert await sees(good)
    body, _, sig = good.partition(".")
    forged = json.loads(__import__("base64").urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["a"] = "admin"
    raw = __import__("base64").urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    assert not await sees(f"{raw}.{sig}")  # another account under the old signature
    assert not await sees(good[:-2] + ("AA" if not good.endswith("AA") else "BB"))
    assert not await sees("garbage")
    assert not await sees(ui.session_cookie("alice", now=0))  # expired long ago
    set_user(tmp_path / "htpasswd", "alice", "a-new-password", rounds=4)
    await asyncio.sleep(1.1)  # the users file is looked at again at most once a second
    assert not await sees(good)  # the password changed: every session of alice ends
    assert await sees(ui.session_cookie("alice"))


async def test_logout_and_open_redirects(aiohttp_client: Any, token_setup: dict) -> None:
    client, _ = await _app(aiohttp_client, **token_setup)
    for target in ("//evil.example/ui/", "https://evil.example/", "/ui//evil.example", "/elsewhere", "/ui/\\evil"):
        page = await client.get("/ui/login")
        r = await client.post("/ui/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                                 "csrf": _csrf(await page.text()), "next": target},
                              allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/ui/", target
        client.session.cookie_jar.clear()
    await _login(client, "alice")
    page = await (await client.get("/ui/")).text()
    assert 'id="account">alice<' in page
    r = await client.post("/ui/logout", data={}, allow_redirects=False)
    assert r.status == 403  # logout is a form too: CSRF-protected
    r = await client.post("/ui/logout", data={"csrf": _csrf(page)}, allow_redirects=False)
    assert r.status == 303 and r.cookies["registry_ui_session"].value == ""


async def test_login_failures_are_limited_like_the_api(aiohttp_client: Any, token_setup: dict) -> None:
    client, _ = await _app(aiohttp_client, **token_setup)
    statuses = [(await _login(client, "bob", "wrong")).status for _ in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    r = await _login(client, "bob")
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert (await _login(client, "alice")).status == 303  # another account from here still logs in


# --------------------------------------------------------------------------- forms


async def test_csrf_on_every_form(aiohttp_client: Any, token_setup: dict) -> None:
    client, store = await _app(aiohttp_client, **token_setup)
    await store_image(store, "alice/app", "1")
    await store_image(store, "alice/app", "2", seed="2")
    assert (await client.post("/ui/login", data={"username": "alice", "password": PASSWORDS["alice"]},
                              allow_redirects=False)).status == 403
    await _login(client, "alice")
    confirm = await (await client.get("/ui/r/alice/app/-/delete?ref=1")).text()
    token = _csrf(confirm)
    for data, headers in (({"ref": "1"}, {}), ({"ref": "1", "csrf": "x" + token}, {}),
                          ({"ref": "1", "csrf": token}, {"Origin": "https://evil.example"})):
        r = await client.post("/ui/r/alice/app/-/delete", data=data, headers=headers, allow_redirects=False)
        assert r.status == 403, (data, headers)
    assert await store.tags.list("alice/app") == ["1", "2"]
    # a token from another session of the same account does not fit this one
    async with aiohttp.ClientSession(base_url=str(client.make_url("/")),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        assert (await _login(other, "alice")).status == 303
        r = await other.post("/ui/r/alice/app/-/delete", data={"ref": "1", "csrf": token}, allow_redirects=False)
        assert r.status == 403
    r = await client.post("/ui/r/alice/app/-/delete", data={"ref": "1", "csrf": token}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/ui/r/alice/app?deleted=tag%201"
    assert await store.tags.list("alice/app") == ["2"]


async def test_delete_a_manifest_and_its_tags(aiohttp_client: Any) -> None:
    client, store = await _app(aiohttp_client)
    digest = await store_image(store, "team/app", "a")
    await store.tags.tag("team/app", "b", __import__("registry.reference", fromlist=["parse_digest"]).parse_digest(digest))
    await store_image(store, "team/app", "other", seed="o")
    confirm = await (await client.get(f"/ui/r/team/app/-/delete?ref={digest}")).text()
    assert "These tags point at it and will be deleted too" in confirm and ">a<" in confirm and ">b<" in confirm
    r = await client.post("/ui/r/team/app/-/delete", data={"ref": digest, "csrf": _csrf(confirm)},
                          allow_redirects=False)
    assert r.status == 303
    assert await store.tags.list("team/app") == ["other"]
    assert not await store.manifests.exists("team/app", __import__("registry.reference", fromlist=["parse_digest"]).parse_digest(digest))
    page = await (await client.get(r.headers["Location"])).text()
    assert f"Deleted manifest {digest}." in page


@pytest.mark.parametrize("setting", [{"delete": False}, {"readonly": True}])
async def test_no_delete_when_disabled(aiohttp_client: Any, setting: dict) -> None:
    client, store = await _app(aiohttp_client, **setting)
    await store_image(store, "team/app", "a")
    page = await (await client.get("/ui/r/team/app")).text()
    assert "delete-tag" not in page and "Delete" not in page
    manifest = await (await client.get("/ui/r/team/app/-/manifest/a")).text()
    assert "delete-manifest" not in manifest
    from registry.ui.handlers import STATE_KEY

    nonce = next(c.value for c in client.session.cookie_jar if c.key == "registry_ui_csrf")
    token = client.app[STATE_KEY].auth.csrf_for(nonce)  # a valid token: the refusal is the setting's
    r = await client.post("/ui/r/team/app/-/delete", data={"ref": "a", "csrf": token}, allow_redirects=False)
    assert r.status == 403 and "Deleting is disabled" in await r.text()
    assert await store.tags.list("team/app") == ["a"]


# --------------------------------------------------------------------------- pages


async def test_pull_commands_use_the_registry_address(aiohttp_client: Any) -> None:
    client, store = await _app(aiohttp_client)
    await store_image(store, "team/app", "v1")
    page = await (await client.get("/ui/r/team/app/-/manifest/v1",
                                   headers={"X-Forwarded-Host": "registry.example.com",
                                            "X-Forwarded-Proto": "https"})).text()
    cmds = dict(re.findall(r'value="([^"]+)" data-tool="(\w+)"', page)[i][::-1] for i in range(4))
    assert cmds == {"docker": "docker pull registry.example.com/team/app:v1",
                    "podman": "podman pull registry.example.com/team/app:v1",
                    "skopeo": "skopeo copy docker://registry.example.com/team/app:v1 oci:app",
                    "oras": "oras pull registry.example.com/team/app:v1"}
    client2, store2 = await _app(aiohttp_client, http={"host": "https://images.example.org:8443"})
    await store_image(store2, "team/app", "v1")
    page = await (await client2.get("/ui/r/team/app/-/manifest/v1")).text()
    assert "docker pull images.example.org:8443/team/app:v1" in page
    assert "--tls-verify=false" not in page


async def test_viewing_a_manifest_is_not_a_pull(aiohttp_client: Any) -> None:
    """The UI reads manifests as the registry itself: a page view is neither counted nor notified
    as a pull (registry_pulls_total), where a client's GET of the same manifest is."""
    from registry.observe.metrics import METRICS

    client, store = await _app(aiohttp_client, http={"debug": {"addr": "127.0.0.1:0", "prometheus": {"enabled": True}}})
    await store_image(store, "team/app", "v1")

    def manifest_pulls() -> float:
        return sum(v for labels, v in METRICS.pulls.values.items() if labels[0] == "manifest")

    before = manifest_pulls()
    for page in ("/ui/r/team/app", "/ui/r/team/app/-/manifest/v1"):
        r = await client.get(page)
        assert r.status == 200, page
    assert manifest_pulls() == before
    r = await client.get("/v2/team/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 200
    assert manifest_pulls() == before + 1


async def test_tags_sort_filter_and_pages(aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.ui import handlers

    monkeypatch.setattr(handlers, "TAGS_PER_PAGE", 2)
    client, store = await _app(aiohttp_client)
    created = {"t1": "2024-03-01T00:00:00Z", "t2": "2023-01-01T00:00:00Z", "t3": "2025-06-01T00:00:00.123456789Z"}
    layers = {"t1": 1, "t2": 3, "t3": 2}
    for tag in created:
        await store_image(store, "team/app", tag, layers=layers[tag],
                          config={"architecture": "arm64", "os": "linux", "created": created[tag], "t": tag})

    async def tags(query: str) -> list[str]:
        return re.findall(r'<a class="tag" href="[^"]+">([^<]+)</a>', await (await client.get(f"/ui/r/team/app?{query}")).text())

    assert await tags("") == ["t1", "t2"] and await tags("page=2") == ["t3"]
    assert await tags("sort=-name") == ["t3", "t2"]
    assert await tags("sort=created") == ["t2", "t1"] and await tags("sort=-created") == ["t3", "t1"]
    assert await tags("sort=-size") == ["t2", "t3"] and await tags("sort=size&page=2") == ["t2"]
    assert await tags("filter=3") == ["t3"]
    assert await tags("sort=bogus&page=x") == ["t1", "t2"]
    page = await (await client.get("/ui/r/team/app?filter=t3")).text()
    assert "2025-06-01 00:00 UTC" in page and "linux/arm64" in page


async def test_unknown_and_malformed_references_are_404_pages(aiohttp_client: Any) -> None:
    client, store = await _app(aiohttp_client)
    await store_image(store, "team/app", "v1")
    for path in ("/ui/r/team/app/-/manifest/nope", "/ui/r/team/app/-/manifest/sha256:" + "0" * 64,
                 "/ui/r/team/app/-/manifest/sha256:zz", "/ui/r/Team/App", "/ui/r/../etc", "/ui/r/team/app/-/x",
                 "/ui/nothing/here", "/ui/r/team//app"):
        r = await client.get(path)
        assert r.status == 404, path
        assert r.headers["Content-Type"].startswith("text/html"), path
    r = await client.get("/ui")
    assert r.status == 200 and str(r.url).endswith("/ui/")


async def test_a_damaged_manifest_is_a_row_not_a_500(aiohttp_client: Any, tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path / "root"))
    client, store = await _app(aiohttp_client, driver)
    digest = await store_image(store, "team/app", "bad")
    await store_image(store, "team/app", "good", seed="g")
    d = __import__("registry.reference", fromlist=["parse_digest"]).parse_digest(digest)
    await driver.put_content(paths.blob_data(d), b'{"schemaVersion": 2, "broken": true}')
    page = await client.get("/ui/r/team/app")
    assert page.status == 200
    text = await page.text()
    assert "damaged" in text and 'data-tag="good"' in text
    assert (await client.get("/ui/r/team/app/-/manifest/bad")).status == 404


# --------------------------------------------------------------------------- config


def test_ui_config_keys(caplog: pytest.LogCaptureFixture) -> None:
    assert Config.from_dict({}).ui.enabled and Config.from_dict({}).ui.path == "/ui/"
    assert Config.from_dict({"ui": {"path": "/browse"}}).ui.path == "/browse/"
    with caplog.at_level(logging.WARNING):
        Config.from_dict({"ui": {"enabeld": False}})
    assert "ui.enabeld" in caplog.text
    for bad in ("ui", "/v2/", "/a/../b", "/a b/", "/a?x"):
        with pytest.raises(ConfigError, match="ui.path"):
            Config.from_dict({"ui": {"path": bad}})


async def test_ui_disabled_and_moved(aiohttp_client: Any) -> None:
    client, _ = await _app(aiohttp_client, ui={"enabled": False})
    r = await client.get("/ui/")
    assert r.status == 404 and r.headers["Content-Type"] == "application/json"
    client, store = await _app(aiohttp_client, ui={"path": "/browse/"}, http={"prefix": "/registry/"})
    await store_image(store, "team/app", "v1")
    page = await client.get("/registry/browse/r/team/app")
    assert page.status == 200 and 'href="/registry/browse/static/ui.css"' in await page.text()
    assert (await client.get("/registry/browse/static/ui.css")).status == 200
    assert (await client.get("/registry/v2/")).status == 200


# --------------------------------------------------------------------------- the catalog index


async def test_catalog_index_follows_pushes_rebuilds_and_adopts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.store import Store

    driver = FilesystemDriver(str(tmp_path / "root"))
    store = Store(driver, secret="s")
    assert await store.catalog.names() == []  # fresh storage: nothing to index, nothing written
    assert not (tmp_path / "root").exists()
    long_name = "/".join(["deep-" + "x" * 40] * 5)  # 229 characters: entered by its hash
    for repo in ("b/app", "a", "a/b", "a-c", long_name):
        await store_image(store, repo, "1")
    assert await store.catalog.names() == ["a", "a/b", "a-c", "b/app", long_name]
    entries = {paths.leaf(e) for e in await driver.list(paths.catalog_index_dir())}
    assert catalog_mod.COMPLETE_MARKER in entries  # the first entry completed the fresh index
    assert "a..b" in entries and any(e.startswith("H") for e in entries)
    # another registry (the reference) created a repository: adopted by the next top-level check
    other = Store(driver, secret="s")
    other.catalog.record = lambda repo: _nothing()  # type: ignore[method-assign]
    other.catalog.record_write = lambda repo, **_: None  # type: ignore[method-assign]  # (a PUT batches it)
    await store_image(other, "zeta/one", "1")
    await store_image(other, "a/nested-by-reference", "1")
    monkeypatch.setattr(catalog_mod, "RECONCILE_INTERVAL", 0.0)
    names = await store.catalog.names()
    assert "zeta/one" in names and "a/nested-by-reference" not in names  # nested under a known top: reindex
    rebuilt = await store.catalog.rebuild()
    assert rebuilt == ["a", "a/b", "a/nested-by-reference", "a-c", "b/app", long_name, "zeta/one"]
    # stale entries go on rebuild; a store without an index (older data) builds one on first use
    await driver.delete(paths.repo("a-c"))
    await driver.delete(paths.catalog_entry(catalog_mod.COMPLETE_MARKER))
    fresh = Store(driver, secret="s")
    assert "a-c" not in await fresh.catalog.names()
    assert catalog_mod.COMPLETE_MARKER in {paths.leaf(e) for e in await driver.list(paths.catalog_index_dir())}
    assert await store.catalog.list(100) == (await fresh.catalog.names(), False)  # the walk agrees


async def test_a_new_registry_writes_nothing_until_a_push(aiohttp_client: Any, tmp_path: Path) -> None:
    root = tmp_path / "data"
    client, store = await _app(aiohttp_client, FilesystemDriver(str(root)))
    for _ in range(3):
        assert (await client.get("/ui/")).status == 200
    await store.catalog.prepare()
    assert [p for p in root.rglob("*") if p.is_file()] == []
    await store_image(store, "team/app", "1")
    assert _repos(await (await client.get("/ui/")).text()) == ["team/app"]
    index = root / paths.catalog_index_dir().lstrip("/")
    assert sorted(p.name for p in index.iterdir()) == [catalog_mod.COMPLETE_MARKER, "team..app"]


async def test_an_older_store_gets_its_index_at_start(aiohttp_client: Any, tmp_path: Path) -> None:
    from registry.store import Store

    driver = FilesystemDriver(str(tmp_path / "data"))
    old = Store(driver, secret="s")
    old.catalog.record = lambda repo: _nothing()  # type: ignore[method-assign]  # as before the index
    await store_image(old, "team/app", "1")
    await store_image(old, "team/lib", "1")
    client, store = await _app(aiohttp_client, driver)
    await store.catalog.prepare()  # the start-up task's work (waits for it when it is running)
    leaves = {paths.leaf(e) for e in await driver.list(paths.catalog_index_dir())}
    assert leaves == {catalog_mod.COMPLETE_MARKER, "team..app", "team..lib"}
    assert _repos(await (await client.get("/ui/")).text()) == ["team/app", "team/lib"]


async def _nothing() -> None:
    return None


def test_reindex_command_rebuilds_the_catalog_index(tmp_path: Path) -> None:
    import asyncio

    from helpers import run_cli
    from registry.store import Store

    root = tmp_path / "root"

    async def setup() -> None:
        store = Store(FilesystemDriver(str(root)), secret="s")
        await store_image(store, "team/app", "1")
        await store.driver.delete(paths.catalog_index_dir())

    asyncio.run(setup())
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    result = run_cli("reindex", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "catalog index: 1 repositories" in result.stdout
    assert (root / paths.catalog_entry("team..app").lstrip("/")).exists()
