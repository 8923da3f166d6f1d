"""Tag immutability and retention rules: through the API (every driver of the API suite), through
``registry retention`` and ``registry garbage-collect``, and with skopeo against a registry process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_support import OCI_MANIFEST, driver, push_image  # noqa: F401 (the driver fixture)
from drivers.filesystem import FilesystemDriver
from fixtures_registry import make_image, start_or_fail
from gc_support import V2, blob_dirs
from helpers import run_cli
from registry.app import create_app
from registry.config import Config, ConfigError, load_config
from registry.lifecycle.rules import RetentionRule, TagSelector, glob_match

IMMUTABLE = {"rules": [{"repositories": ["prod/**"], "tags": ["v*", "release-*"]}]}


def _config(**extra: Any) -> Config:
    raw = {"storage": {"inmemory": {}, "delete": {"enabled": True}, "redirect": {"disable": True}},
           "http": {"secret": "x"}, **extra}
    return Config.from_dict(raw)


@pytest.fixture
async def client(aiohttp_client: Any, driver: Any) -> Any:
    return await aiohttp_client(create_app(_config(immutability=IMMUTABLE), driver))


async def _put(client: Any, name: str, ref: str, body: bytes, query: str = "") -> Any:
    return await client.put(f"/v2/{name}/manifests/{ref}{query}", data=body, headers={"Content-Type": OCI_MANIFEST})


async def test_immutable_tags_cannot_move_or_go(client: Any) -> None:
    a, body_a = await push_image(client, "prod/app", "v1", seed=b"a")
    b, body_b = await push_image(client, "prod/app", None, seed=b"b")
    # pushing the same manifest again is fine, by tag and by digest
    assert (await _put(client, "prod/app", "v1", body_a)).status == 201
    assert (await _put(client, "prod/app", a, body_a)).status == 201
    # moving it is refused with a clear OCI error, and nothing changes
    r = await _put(client, "prod/app", "v1", body_b)
    assert r.status == 403, await r.text()
    err = (await r.json())["errors"][0]
    assert err["code"] == "DENIED" and "immutable" in err["message"] and err["detail"]["tag"] == "v1", err
    assert err["detail"]["digest"] == a
    got = await client.get("/v2/prod/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert got.headers["Docker-Content-Digest"] == a
    # deleting it, by tag or through its manifest's digest, is refused too
    for ref in ("v1", a):
        r = await client.delete(f"/v2/prod/app/manifests/{ref}")
        assert r.status == 403 and (await r.json())["errors"][0]["code"] == "DENIED", await r.text()
    assert (await client.get("/v2/prod/app/manifests/v1", headers={"Accept": OCI_MANIFEST})).status == 200
    # a multi-tag PUT that would move one immutable tag changes none of its tags (all or none)
    r = await _put(client, "prod/app", b, body_b, "?tag=v2&tag=v1&tag=latest")
    assert r.status == 403 and (await r.json())["errors"][0]["detail"]["tag"] == "v1", await r.text()
    for tag in ("v2", "latest"):
        assert (await client.get(f"/v2/prod/app/manifests/{tag}", headers={"Accept": OCI_MANIFEST})).status == 404
    # the same multi-tag PUT without the moved tag works; a new immutable tag is created freely
    r = await _put(client, "prod/app", b, body_b, "?tag=v2&tag=latest&tag=release-1")
    assert r.status == 201, await r.text()
    # tags the rules do not cover move and go as usual, in this repository and in others
    assert (await _put(client, "prod/app", "latest", body_a)).status == 201
    assert (await client.delete("/v2/prod/app/manifests/latest")).status == 202
    await push_image(client, "dev/app", "v1", seed=b"c")
    c, body_c = await push_image(client, "dev/app", None, seed=b"d")
    assert (await _put(client, "dev/app", "v1", body_c)).status == 201  # not under prod/**: moves
    assert (await client.delete("/v2/dev/app/manifests/v1")).status == 202
    # an untagged manifest of the immutable repository can still be deleted
    d, _ = await push_image(client, "prod/app", None, seed=b"e")
    assert (await client.delete(f"/v2/prod/app/manifests/{d}")).status == 202


def test_rule_parsing_and_matching() -> None:
    assert glob_match("team/*", "team/app") and not glob_match("team/*", "team/app/dev")
    assert glob_match("team/**", "team/app/dev") and glob_match("**", "x")
    assert glob_match("v[0-9]*", "v10") and not glob_match("v[!0-9]*", "v10") and glob_match("v?", "v1")
    cfg = load_config(None, environ={})
    assert not cfg.retention.rules and not cfg.immutability
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    days = lambda n: now - dt.timedelta(days=n)  # noqa: E731
    tags = {"v1": days(30), "v2": days(20), "v3": days(10), "v4": days(1), "latest": days(40), "pr-9": days(9),
            "pr-1": days(1), "odd": None}
    rule = RetentionRule(tags=(TagSelector("v*", keep=2), TagSelector("pr-*", olderthan=7 * 86400.0),
                               TagSelector("*", keep=0, olderthan=35 * 86400.0)), protect=("latest",))
    assert rule.tags_to_remove(tags, now) == {"v1", "v2", "pr-9"}
    assert rule.tags_to_remove(tags, now, immutable=lambda t: t == "v1") == {"v2", "pr-9"}


@pytest.mark.parametrize("raw, message", [
    ({"retention": {"rules": [{"tags": [{"pattern": "v*"}]}]}}, "give keep, olderthan or both"),
    ({"retention": {"rules": [{"tags": [{"pattern": "v*", "keep": -1}]}]}}, "keep"),
    ({"retention": {"rules": [{"tags": [{"olderthan": "a week"}]}]}}, "olderthan"),
    ({"retention": {"rules": [{"untagged": {"keep": 3}}]}}, "untagged.olderthan"),
    ({"immutability": {"rules": [{"repositories": "prod/*"}]}}, "immutability.rules[0].tags: required"),
    ({"storage": {"inmemory": {}, "maintenance": {"gc": {"interval": "0s"}}}}, "interval"),
    ({"storage": {"inmemory": {}, "maintenance": {"gc": {"leasettl": "1s"}}}}, "leasettl"),
])
def test_bad_rules_are_one_clear_line(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Config.from_dict(raw)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_lifecycle_keys_are_warned() -> None:
    cfg = Config.from_dict({"storage": {"inmemory": {}, "maintenance": {"gc": {"enabeld": True}}},
                            "retention": {"rules": [{"tags": [{"pattern": "v*", "keep": 1, "kepp": 2}]}]}})
    assert any("storage.maintenance.gc.enabeld" in w and "enabled" in w for w in cfg.warnings), cfg.warnings
    assert any("retention.rules[0].tags[0].kepp" in w for w in cfg.warnings), cfg.warnings
    assert cfg.retention.rules[0].tags[0].keep == 1 and cfg.storage.gc.enabled is False


# --------------------------------------------------------------------------- retention, end to end

RETENTION = {
    "rules": [{
        "repositories": ["apps/*"],
        "tags": [{"pattern": "v*", "keep": 3}, {"pattern": "pr-*", "olderthan": "7d"}],
        "untagged": {"olderthan": "7d"},
        "protect": ["latest"],
    }],
}  # fmt: skip


def _age(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


async def test_retention_rules_remove_what_they_select(aiohttp_client: Any, tmp_path: Path) -> None:
    root = tmp_path / "root"
    driver = FilesystemDriver(str(root))
    config = _config(immutability={"rules": [{"repositories": "apps/*", "tags": ["v1"]}]}, retention=RETENTION)
    client = await aiohttp_client(create_app(config, driver))
    repo_dir = root / V2 / "repositories" / "apps" / "web" / "_manifests"
    digests = {}
    for i, tag in enumerate(["v1", "v2", "v3", "v4", "v5", "v6", "latest", "pr-1", "pr-2"]):
        digests[tag], _ = await push_image(client, "apps/web", tag, seed=f"t{i}".encode())
        time.sleep(0.01)  # distinct tag times: "most recent" is by when a tag last moved
    _age(repo_dir / "tags" / "pr-1" / "current" / "link", 9)
    _age(repo_dir / "tags" / "latest" / "current" / "link", 90)
    old_untagged, _ = await push_image(client, "apps/web", None, seed=b"old-untagged")
    new_untagged, _ = await push_image(client, "apps/web", None, seed=b"new-untagged")
    _age(repo_dir / "revisions" / "sha256" / old_untagged[7:] / "link", 10)
    other, _ = await push_image(client, "other/web", "v1", seed=b"o1")  # no rule covers it
    for i in range(5):
        await push_image(client, "other/web", f"v{i + 2}", seed=f"o{i + 2}".encode())
    await client.close()
    cfg_file = tmp_path / "config.yml"
    cfg_file.write_text(yaml.safe_dump({
        "storage": {"filesystem": {"rootdirectory": str(root)}}, "http": {"secret": "x"},
        "retention": RETENTION, "immutability": {"rules": [{"repositories": "apps/*", "tags": ["v1"]}]},
    }))
    before = sorted(p.name for p in (repo_dir / "tags").iterdir())
    dry = run_cli("retention", "--dry-run", "--json", str(cfg_file))
    assert dry.returncode == 0, dry.stderr
    assert sorted(p.name for p in (repo_dir / "tags").iterdir()) == before  # nothing changed
    listed = {line.split(": ", 1)[1] for line in dry.stdout.splitlines() if line.startswith("eligible for deletion")}
    assert listed == {"tag apps/web:v2", "tag apps/web:v3", "tag apps/web:pr-1",
                      f"manifest apps/web@{old_untagged}"}, dry.stdout
    real = run_cli("retention", "--json", str(cfg_file))
    assert real.returncode == 0, real.stderr
    summary = json.loads(real.stdout.strip().splitlines()[-1])
    assert summary["tags_deleted"] == 3 and summary["manifests_deleted"] == 1, summary
    # v1 is immutable, v4-v6 are the three newest v*, latest is protected, pr-2 is young
    assert sorted(p.name for p in (repo_dir / "tags").iterdir()) == ["latest", "pr-2", "v1", "v4", "v5", "v6"]
    revisions = {f"sha256:{p.name}" for p in (repo_dir / "revisions" / "sha256").iterdir()}
    assert old_untagged not in revisions and new_untagged in revisions
    assert digests["v2"] in revisions  # untagged now, but pushed within the untagged age: kept
    other_tags = sorted(p.name for p in (root / V2 / "repositories" / "other" / "web" / "_manifests" / "tags").iterdir())
    assert other_tags == ["v1", "v2", "v3", "v4", "v5", "v6"]
    # retention leaves blobs to the collector: the old untagged manifest's blobs go at the next run
    assert f"sha256:{old_untagged[7:]}" in blob_dirs(root)
    gc_run = run_cli("garbage-collect", "--offline", "--json", str(cfg_file))
    assert gc_run.returncode == 0, gc_run.stderr
    assert old_untagged not in blob_dirs(root) and digests["v4"] in blob_dirs(root)


# --------------------------------------------------------------------------- skopeo

def _skopeo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, env=env, timeout=120)


def test_immutability_and_retention_with_skopeo(skopeo_binary: str, tmp_path: Path) -> None:
    from test_skopeo import TLS_OFF, write_oci_layout

    home = tmp_path / "home"
    home.mkdir()
    (home / "auth.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"), TMPDIR=str(home), XDG_RUNTIME_DIR=str(home))
    extra = yaml.safe_dump({"immutability": {"rules": [{"repositories": "prod/*", "tags": "v*"}]},
                            "retention": {"rules": [{"repositories": "prod/*", "tags": [{"pattern": "nightly-*", "keep": 2}]}]}})
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "work", extra)
    try:
        layouts = []
        for i in range(4):
            path = tmp_path / f"layout{i}"
            write_oci_layout(path, make_image("oci", label=f"skopeo-imm-{i}"), "img")
            layouts.append(f"oci:{path}:img")
        dest = lambda tag: f"docker://{reg.hostport}/prod/app:{tag}"  # noqa: E731
        first = _skopeo(env, "copy", *TLS_OFF, layouts[0], dest("v1"))
        assert first.returncode == 0, first.stderr
        again = _skopeo(env, "copy", *TLS_OFF, layouts[0], dest("v1"))  # the same image: accepted
        assert again.returncode == 0, again.stderr
        moved = _skopeo(env, "copy", *TLS_OFF, layouts[1], dest("v1"))
        assert moved.returncode != 0 and "immutable" in moved.stderr, moved.stderr
        gone = _skopeo(env, "delete", "--tls-verify=false", dest("v1"))
        assert gone.returncode != 0 and ("denied" in gone.stderr.lower() or "immutable" in gone.stderr), gone.stderr
        for i, layout in enumerate(layouts):
            pushed = _skopeo(env, "copy", *TLS_OFF, layout, dest(f"nightly-{i}"))
            assert pushed.returncode == 0, pushed.stderr
            time.sleep(0.01)
        run = run_cli("retention", str(reg.config_path))
        assert run.returncode == 0, run.stderr
        listed = _skopeo(env, "list-tags", "--tls-verify=false", f"docker://{reg.hostport}/prod/app")
        assert listed.returncode == 0, listed.stderr
        assert sorted(json.loads(listed.stdout)["Tags"]) == ["nightly-2", "nightly-3", "v1"]
        inspect = _skopeo(env, "inspect", "--tls-verify=false", dest("nightly-3"))
        assert inspect.returncode == 0, inspect.stderr
    finally:
        reg.stop()
