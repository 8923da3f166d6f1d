"""The web UI in a real browser: headless Chromium (Debian) driven by selenium, against our
registry as a real server process with token auth and the built-in token server.

One browser and one registry for the module; each test starts from the cookies it needs.
Screenshots are kept as artifacts (see tests/ui_support.py).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from auth_support import ISSUER, PASSWORDS, SERVICE, make_pki, make_users, tokenserver_block
from fixtures_registry import (Client, Image, OCI_MANIFEST, RunningRegistry, make_image, make_index, push_image,
                               sha256, start_or_fail)
from helpers import missing
from ui_support import DESKTOP, PHONE, Browser

pytestmark = pytest.mark.timeout(300)

SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"
EMPTY = b"{}"
#: payloads that would set window.__xss if the page interpreted them
XSS_LABEL = "<script>window.__xss='label'</script>"
XSS_ANNOTATION = "<img src=x onerror=\"window.__xss='annotation'\">"
XSS_TYPE = "application/vnd.evil+<script>window.__xss='type'</script>"


def _token(reg: RunningRegistry, user: str, scopes: list[str]) -> str:
    auth = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    query = urllib.parse.urlencode([("service", SERVICE)] + [("scope", s) for s in scopes])
    resp = Client("127.0.0.1", reg.port).request("GET", f"/auth/token?{query}",
                                                 headers={"Authorization": f"Basic {auth}"})
    assert resp.status == 200, resp
    return resp.json()["token"]  # type: ignore[index]


def _admin(reg: RunningRegistry, *repos: str) -> Client:
    token = _token(reg, "admin", [f"repository:{r}:pull,push,delete" for r in repos])
    return Client("127.0.0.1", reg.port, default_headers={"Authorization": f"Bearer {token}"})


def _artifact(subject: Image, artifact_type: str, payload: bytes, annotations: dict[str, str]) -> Image:
    """A referrer (OCI 1.1): empty config, one blob, ``subject`` pointing at ``subject``."""
    body = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(EMPTY), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(payload), "size": len(payload)}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.manifest)},
        "annotations": annotations,
    }
    return Image(json.dumps(body).encode(), OCI_MANIFEST, {sha256(EMPTY): EMPTY, sha256(payload): payload})


def _evil_image() -> Image:
    """An image whose label, annotation and referrer's artifact type hold HTML and script."""
    base = make_image("oci", "amd64", "evil", n_layers=1)
    body = json.loads(base.manifest)
    config_digest = body["config"]["digest"]
    config = json.loads(base.blobs.pop(config_digest))
    config["config"]["Labels"] = {"evil": XSS_LABEL, "org.opencontainers.image.title": "</td></tr></table><h1>x"}
    config["config"]["Entrypoint"] = ["/bin/sh", "-c", "echo '<b>hi</b>'"]
    raw = json.dumps(config).encode()
    body["config"].update(digest=sha256(raw), size=len(raw))
    body["annotations"] = {"note": XSS_ANNOTATION}
    return Image(json.dumps(body).encode(), OCI_MANIFEST, {**base.blobs, sha256(raw): raw})


class World:
    """The registry and what was pushed to it."""

    def __init__(self, reg: RunningRegistry) -> None:
        self.reg = reg
        self.url = f"http://127.0.0.1:{reg.port}"
        self.ui = f"{self.url}/ui/"
        self.multi = make_index("oci", "multi", ("amd64", "arm64", "s390x"))
        self.single = make_image("oci", "amd64", "single")
        self.old = make_image("docker", "amd64", "old")
        self.signature = _artifact(self.multi, SIG_TYPE, b'{"critical":{"identity":"alice"}}',
                                   {"dev.cosignproject.cosign/signature": "MEUCIQDsig"})
        self.sbom = _artifact(self.multi, SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}',
                              {"org.opencontainers.image.created": "2024-05-01T10:00:00Z"})
        self.evil = _evil_image()
        self.evil_ref = _artifact(self.evil, XSS_TYPE, b"evil", {"x": XSS_ANNOTATION})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("ui-registry")
    pki = make_pki(tmp / "pki")
    make_users(tmp / "htpasswd")
    extra = yaml.safe_dump({
        "auth": {"token": {"realm": "http://127.0.0.1/auth/token", "service": SERVICE, "issuer": ISSUER}},
        "tokenserver": tokenserver_block(tmp, pki),
    }, sort_keys=False)
    reg = start_or_fail("ours", tmp / "root", tmp, extra_config=extra)
    w = World(reg)
    try:
        c = _admin(reg, "alice/multi", "alice/evil", "bob/secret", "public/hello")
        push_image(c, "alice/multi", w.multi, "1.0")
        push_image(c, "alice/multi", w.single, "1.1")
        push_image(c, "alice/multi", w.old, "old")
        push_image(c, "alice/multi", w.signature)
        push_image(c, "alice/multi", w.sbom)
        push_image(c, "alice/evil", w.evil, "latest")
        push_image(c, "alice/evil", w.evil_ref)
        push_image(c, "bob/secret", make_image("oci", "amd64", "secret"), "1")
        push_image(c, "public/hello", make_image("oci", "amd64", "hello"), "1")
        yield w
    finally:
        reg.stop()


def _by(css: str) -> tuple[str, str]:
    return ("css selector", css)


def _texts(b: Browser, css: str) -> list[str]:
    return [e.text for e in b.driver.find_elements(*_by(css))]


def _wait_stale(b: Browser, old: Any) -> None:
    b.wait_gone(old)


def log_in(b: Browser, w: World, user: str) -> None:
    b.fresh()
    b.get(w.ui + "login")
    b.driver.find_element(*_by("#username")).send_keys(user)
    b.driver.find_element(*_by("#password")).send_keys(PASSWORDS[user])
    b.follow(b.driver.find_element(*_by("#login-submit")))
    assert b.driver.find_element(*_by("#account")).text == user


# --------------------------------------------------------------------------- tests


def test_login_and_search(browser: Browser, world: World) -> None:
    b = browser
    b.fresh()
    b.get(world.ui + "login")
    b.shot("login", docs=True)
    b.driver.find_element(*_by("#username")).send_keys("alice")
    b.driver.find_element(*_by("#password")).send_keys("wrong password")
    b.follow(b.driver.find_element(*_by("#login-submit")))
    assert "wrong user name or password" in b.driver.find_element(*_by("#login-error")).text
    assert not b.driver.find_elements(*_by("#account"))
    log_in(b, world, "alice")
    cookie = b.driver.get_cookie("registry_ui_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain HTTP here
    # alice may pull alice/** (her namespace) and public/** (a rule for every account): not bob/**
    assert _texts(b, "a.repo") == ["alice/evil", "alice/multi", "public/hello"]
    assert b.driver.find_element(*_by("#count")).text == "3 repositories"
    b.shot("repositories", docs=True)
    box = b.driver.find_element(*_by("#q"))
    old = b.driver.find_element(*_by("html"))
    box.send_keys("mul\n")
    _wait_stale(b, old)
    assert _texts(b, "a.repo") == ["alice/multi"]
    assert "1 repository" in b.driver.find_element(*_by("#count")).text
    box = b.driver.find_element(*_by("#q"))
    box.clear()
    old = b.driver.find_element(*_by("html"))
    box.send_keys("secret\n")  # bob's: neither listed nor counted
    _wait_stale(b, old)
    assert _texts(b, "a.repo") == [] and b.driver.find_element(*_by("#count")).text.startswith("0 repositories")
    b.shot("search")


def test_multi_arch_platforms_and_layer_sizes(browser: Browser, world: World) -> None:
    b = browser
    log_in(b, world, "alice")
    b.follow(b.driver.find_element(*_by("a.repo[href$='alice/multi']")))
    assert b.driver.find_element(*_by("#repo-name")).text == "alice/multi"
    assert _texts(b, "a.tag") == ["1.0", "1.1", "old"]
    row = b.driver.find_element(*_by("tr[data-tag='1.0']"))
    index = json.loads(world.multi.manifest)
    expected_platforms = [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]]
    assert [e.text for e in row.find_elements(*_by("li.platform"))] == expected_platforms
    children = [json.loads(c.manifest) for c in world.multi.children]
    total = sum(c["config"]["size"] + sum(x["size"] for x in c["layers"]) for c in children)
    assert row.find_element(*_by("td.size")).get_attribute("data-bytes") == str(total)
    assert "2024-01-01" in row.text
    b.shot("repository", docs=True)
    b.follow(row.find_element(*_by("a.tag")))
    assert b.driver.find_element(*_by("#digest")).text == world.multi.digest
    assert _texts(b, "#platforms th.platform") == expected_platforms
    assert b.driver.find_element(*_by("#total-size")).get_attribute("data-bytes") == str(total)
    commands = {e.get_attribute("data-tool"): e.get_attribute("value")
                for e in b.driver.find_elements(*_by("input.cmd[id^='cmd-ref-']"))}
    host = f"127.0.0.1:{world.reg.port}"
    assert commands["docker"] == f"docker pull {host}/alice/multi:1.0"
    assert commands["podman"] == f"podman pull --tls-verify=false {host}/alice/multi:1.0"
    assert commands["skopeo"] == f"skopeo copy --src-tls-verify=false docker://{host}/alice/multi:1.0 oci:multi"
    assert commands["oras"] == f"oras pull --plain-http {host}/alice/multi:1.0"
    b.shot("index", docs=True, anchor="#platforms-h")
    # one platform's image: every layer's media type and size as in its manifest
    b.follow(b.driver.find_element(*_by("#platforms tr.child a")))
    child = children[0]
    assert b.driver.find_element(*_by("#digest")).text == world.multi.children[0].digest
    layers = b.driver.find_elements(*_by("#layers tr.layer"))
    assert [(r.find_element(*_by(".media-type")).text, int(r.find_element(*_by("td.size")).get_attribute("data-bytes")),
             r.find_element(*_by(".layer-digest")).get_attribute("data-digest")) for r in layers] == \
        [(x["mediaType"], x["size"], x["digest"]) for x in child["layers"]]
    assert b.driver.find_element(*_by("#config-platform")).text == "linux/amd64"
    assert b.driver.find_element(*_by("#cmd")).text == "/bin/sh"
    assert _texts(b, "#env li") == ["PATH=/usr/bin"]
    assert _texts(b, "#history li code") == ["layer 0", "layer 1"]
    own = child["config"]["size"] + sum(x["size"] for x in child["layers"])
    assert b.driver.find_element(*_by("#total-size")).get_attribute("data-bytes") == str(own)
    b.shot("image", docs=True, anchor="#config-h")


def test_open_a_signature(browser: Browser, world: World) -> None:
    b = browser
    log_in(b, world, "alice")
    b.get(world.ui + "r/alice/multi/-/manifest/1.0")
    groups = _texts(b, ".referrer-group code.artifact-type")
    assert groups == sorted([SBOM_TYPE, SIG_TYPE])
    sig_group = b.driver.find_elements(*_by(".referrer-group"))[groups.index(SIG_TYPE)]
    links = sig_group.find_elements(*_by("a.referrer"))
    assert len(links) == 1
    b.shot("referrers")
    b.follow(links[0])
    assert b.driver.find_element(*_by("#digest")).text == world.signature.digest
    assert b.driver.find_element(*_by("#artifact-type")).text == SIG_TYPE
    assert b.driver.find_element(*_by("#kind")).text == "artifact"
    assert b.driver.find_element(*_by("#subject")).text == world.multi.digest
    assert "MEUCIQDsig" in b.driver.find_element(*_by("#annotations")).text
    b.shot("signature", docs=True)
    b.follow(b.driver.find_element(*_by("#subject")))
    assert b.driver.find_element(*_by("#digest")).text == world.multi.digest


def test_delete_a_tag_with_confirmation(browser: Browser, world: World) -> None:
    b = browser
    log_in(b, world, "alice")
    b.get(world.ui + "r/alice/multi")
    b.follow(b.driver.find_element(*_by("tr[data-tag='old'] a.delete-tag")))
    assert "Delete the tag old from alice/multi?" in b.driver.find_element(*_by("main")).text
    b.shot("confirm-delete", docs=True)
    b.follow(b.driver.find_element(*_by("#cancel")))  # cancelling deletes nothing
    assert "old" in _texts(b, "a.tag")
    b.follow(b.driver.find_element(*_by("tr[data-tag='old'] a.delete-tag")))
    b.follow(b.driver.find_element(*_by("#confirm-delete")))
    assert b.driver.find_element(*_by("#deleted")).text == "Deleted tag old."
    assert _texts(b, "a.tag") == ["1.0", "1.1"]
    api = _admin(world.reg, "alice/multi")
    assert api.request("GET", "/v2/alice/multi/tags/list").json()["tags"] == ["1.0", "1.1"]  # type: ignore[index]
    # the manifest stays, by digest
    assert api.get_manifest("alice/multi", world.old.digest).status == 200


def test_reader_may_not_delete(browser: Browser, world: World) -> None:
    b = browser
    log_in(b, world, "reader")  # pull on everything, no delete
    b.get(world.ui)
    assert _texts(b, "a.repo") == ["alice/evil", "alice/multi", "bob/secret", "public/hello"]
    b.get(world.ui + "r/alice/multi")
    assert not b.driver.find_elements(*_by("a.delete-tag"))
    b.get(world.ui + "r/alice/multi/-/delete?ref=1.1")
    assert b.driver.find_element(*_by("#error-title")).text == "Not allowed"


def test_logged_out_user_is_refused(browser: Browser, world: World) -> None:
    b = browser
    log_in(b, world, "alice")
    b.get(world.ui + "r/alice/multi")
    b.follow(b.driver.find_element(*_by("#logout")))
    assert not b.driver.find_elements(*_by("#account"))
    assert b.driver.get_cookie("registry_ui_session") is None
    # anonymous may pull public/** only: nothing of alice's, not even a count
    assert _texts(b, "a.repo") == ["public/hello"]
    assert b.driver.find_element(*_by("#count")).text == "1 repository"
    for path in ("r/alice/multi", "r/alice/multi/-/manifest/1.0", f"r/alice/multi/-/manifest/{world.multi.digest}",
                 "r/alice/multi/-/delete?ref=1.0", "r/bob/secret", "r/no/such-repo"):
        b.get(world.ui + path)
        assert b.driver.find_element(*_by("#error-title")).text == "Not found", path
        assert "alice" not in b.driver.find_element(*_by("#error-message")).text
    b.shot("refused")
    api = _admin(world.reg, "alice/multi")
    assert {"1.0", "1.1"} <= set(api.request("GET", "/v2/alice/multi/tags/list").json()["tags"])  # type: ignore[index]


def test_html_in_labels_annotations_and_artifact_types_is_text(browser: Browser, world: World) -> None:
    b = browser
    log_in(b, world, "alice")
    b.get(world.ui + "r/alice/evil/-/manifest/latest")
    labels = dict(zip(_texts(b, "#labels th code"), _texts(b, "#labels td.value")))
    assert labels["evil"] == XSS_LABEL
    assert labels["org.opencontainers.image.title"] == "</td></tr></table><h1>x"
    assert dict(zip(_texts(b, "#annotations th code"), _texts(b, "#annotations td.value")))["note"] == XSS_ANNOTATION
    assert _texts(b, "code.artifact-type") == [XSS_TYPE]
    assert b.driver.find_element(*_by("#entrypoint")).text == "/bin/sh -c 'echo '\"'\"'<b>hi</b>'\"'\"''"
    assert b.driver.execute_script("return window.__xss === undefined")
    assert not b.driver.find_elements(*_by("main script, main img, main h1 + h1, main b"))
    b.shot("escaping")
    b.follow(b.driver.find_element(*_by("a.referrer")))
    assert b.driver.find_element(*_by("#artifact-type")).text == XSS_TYPE
    assert b.driver.execute_script("return window.__xss === undefined")
    b.get(world.ui + "r/alice/evil")
    assert b.driver.find_element(*_by("tr[data-tag='latest'] td")).text  # the tags table renders


def test_phone_and_keyboard(browser: Browser, world: World) -> None:
    b = browser
    log_in(b, world, "alice")
    b.driver.set_window_size(*PHONE)
    try:
        for path, name in (("", "phone-repositories"), ("r/alice/multi", "phone-repository"),
                           ("r/alice/multi/-/manifest/1.1", "phone-image")):
            b.get(world.ui + path)
            # the page itself never scrolls sideways (wide tables scroll inside their region)
            assert b.driver.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1"), path
            b.shot(name, docs=name == "phone-image", anchor="#layers-h" if name == "phone-image" else "")
    finally:
        b.driver.set_window_size(*DESKTOP)
    # every form control has a label; every image-free link and button has text
    b.get(world.ui + "r/alice/multi")
    unlabeled = b.driver.execute_script("""
        return [...document.querySelectorAll('input:not([type=hidden]), select')]
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML);""")
    assert unlabeled == []
    nameless = b.driver.execute_script("""
        return [...document.querySelectorAll('a, button')].filter(e => !e.hidden && !e.textContent.trim()
          && !e.getAttribute('aria-label')).map(e => e.outerHTML);""")
    assert nameless == []
    # keyboard: the first Tab reaches the skip link, which moves focus to the content
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(b.driver).send_keys(Keys.TAB).perform()
    assert b.driver.switch_to.active_element.get_attribute("class") == "skip"
    ActionChains(b.driver).send_keys(Keys.ENTER).perform()
    assert b.driver.switch_to.active_element.get_attribute("id") == "main"
    # the filter form works from the keyboard alone
    box = b.driver.find_element(*_by("#filter"))
    old = b.driver.find_element(*_by("html"))
    box.send_keys("1.\n")
    _wait_stale(b, old)
    assert _texts(b, "a.tag") == ["1.0", "1.1"]
    # text contrast of the body, links and the danger buttons stays at WCAG AA (4.5:1) or better
    ratios = b.driver.execute_script("""
        function lum(c) { const v = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map(x => x / 255)
          .map(x => x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
          return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; }
        function bg(e) { while (e) { const c = getComputedStyle(e).backgroundColor;
          if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; e = e.parentElement; }
          return 'rgb(255, 255, 255)'; }
        return [...document.querySelectorAll('a, th, td, p, label, button, h1, h2')].filter(e => e.offsetParent)
          .map(e => { const a = lum(getComputedStyle(e).color), b = lum(bg(e));
                      return [(Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), e.tagName + ' ' + e.textContent.trim().slice(0, 30)]; });""")
    low = [r for r in ratios if r[0] < 4.5]
    assert low == []


AXE = Path(__file__).resolve().parent.parent / ".tools" / "axe-core" / "node_modules" / "axe-core" / "axe.min.js"


def test_axe_finds_no_accessibility_violations(browser: Browser, world: World) -> None:
    """axe-core (Deque's rules, npm; installed by `make test`) on every kind of page, WCAG 2.1 A
    and AA, desktop and phone widths."""
    if not AXE.exists():
        missing("axe-core is not installed: `make node-deps`")
    b = browser
    source = AXE.read_text()
    pages = ["login", "", "r/alice/multi", "r/alice/multi/-/manifest/1.0",
             f"r/alice/multi/-/manifest/{world.multi.children[0].digest}",
             f"r/alice/multi/-/manifest/{world.signature.digest}", "r/alice/multi/-/delete?ref=1.1",
             "r/no/such"]
    found: dict[str, list[str]] = {}

    def violations() -> list[str]:
        b.driver.execute_script(source)  # through DevTools: the page's CSP does not apply
        return b.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
               .then(r => done(r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))),
                     e => done(['axe failed: ' + e]));""")

    # the rules do find what they look for: an unlabelled field, grey on white
    b.get("data:text/html,<html lang=en><title>t</title><input><p style='color:%23bbb'>faint</p></html>")
    assert {v.split(":")[0] for v in violations()} >= {"label", "color-contrast"}
    try:
        for width, height in (DESKTOP, PHONE):
            b.driver.set_window_size(width, height)
            log_in(b, world, "alice")
            for path in pages:
                if path == "login":
                    b.fresh()
                b.get(world.ui + path)
                result = violations()
                if result:
                    found[f"{width}px {path or '/'}"] = result
                if path == "login":
                    log_in(b, world, "alice")
    finally:
        b.driver.set_window_size(*DESKTOP)
    assert found == {}
