"""The command line as an operator uses it: serve, --version, and one clear line on bad input."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from registry import __version__
from helpers import ROOT, free_port, registry_cmd, run_cli, wait_http


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def _serve(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    full_env.update(env)
    return subprocess.Popen(registry_cmd(*args), env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("style", ["positional", "option", "default"])
def test_serve_answers_base_endpoint(tmp_path: Path, style: str) -> None:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'root'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    args = {"positional": ["serve", str(config)], "option": ["serve", "--config", str(config)],
            "default": ["serve"]}[style]
    env = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"} if style == "default" else {}
    proc = _serve(args, env, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/") as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        if style == "default":
            assert (tmp_path / "data").is_dir()  # the embedded default stores under ./data
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def _assert_one_clear_line(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 1, result
    lines = [line for line in result.stderr.splitlines() if "WARNING" not in line]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("storage:\n  filesystem: {rootdirectory: /tmp/x}\n  inmemory: {}\n")
    _assert_one_clear_line(run_cli("serve", str(config)), "more than one storage driver")


def test_unparseable_config_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("http: {addr: [\n")
    _assert_one_clear_line(run_cli("serve", "--config", str(config)), "not valid YAML")


def test_missing_config_file(tmp_path: Path) -> None:
    _assert_one_clear_line(run_cli("serve", str(tmp_path / "nope.yml")), "does not exist")


def test_bad_env_override(tmp_path: Path) -> None:
    result = run_cli("serve", env={"REGISTRY_STORAGE_DELETE_ENABLED": "perhaps"}, cwd=tmp_path)
    _assert_one_clear_line(result, "storage.delete.enabled")


def test_missing_root_directory_is_created_by_serve_not_by_check_config(tmp_path: Path) -> None:
    """As distribution: a missing root (parents included) is created; check-config writes nothing."""
    missing = tmp_path / "does" / "not" / "exist"
    port = free_port()
    env = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(missing), "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"}
    check = run_cli("check-config", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert f"filesystem at {missing} (missing: created at start)" in check.stdout
    assert f"at start, serve will create the storage root directory {missing}" in check.stdout
    assert not (tmp_path / "does").exists()
    proc = _serve(["serve"], env, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        assert missing.is_dir()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"storage: filesystem at {missing}" in out  # the start-up summary


def test_root_directory_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    result = run_cli("serve", env={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(afile)}, cwd=tmp_path)
    _assert_one_clear_line(result, str(afile))


def test_unknown_storage_driver(tmp_path: Path) -> None:
    result = run_cli("serve", env={"REGISTRY_STORAGE": "floppy"}, cwd=tmp_path)
    _assert_one_clear_line(result, "floppy")


def test_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_cli("serve", env={"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
                                       "REGISTRY_STORAGE": "inmemory"}, cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_check_config_accepts_example(tmp_path: Path) -> None:
    result = run_cli("check-config", str(ROOT / "config.example.yml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.iterdir())  # wrote nothing
    assert "configuration OK" in result.stdout


def test_check_config_prints_the_resolved_configuration_without_secrets(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("version: 0.1\nstorage:\n  s3:\n    bucket: images\n    region: eu-west-1\n"
                      "    accesskey: AKIAEXAMPLE\n    secretkey: s3cr3t-v4lue-never-shown\n"
                      "  delete:\n    enabled: true\n"
                      "http:\n  addr: 0.0.0.0:5000\n  secret: http-s3cret-never-shown\n"
                      "auth:\n  htpasswd:\n    realm: Registry\n    path: " + str(tmp_path / "auth" / "htpasswd") + "\n")
    result = run_cli("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "storage: s3: accesskey=AKIAEXAMPLE, bucket=images, region=eu-west-1, secretkey=<redacted>" in out
    assert "listen: 0.0.0.0:5000 (tcp)" in out and "tls: off (plain HTTP)" in out
    assert f"auth: htpasswd {tmp_path / 'auth' / 'htpasswd'} (realm 'Registry')" in out
    assert "deletes on" in out and "http.secret: set" in out
    assert "never-shown" not in out + result.stderr
    assert f"serve will create the htpasswd file {tmp_path / 'auth' / 'htpasswd'} with a user 'docker'" in out
    assert not (tmp_path / "auth").exists()


def test_serve_creates_a_missing_htpasswd_file_with_a_user_printed_once(tmp_path: Path) -> None:
    import base64

    htpasswd = tmp_path / "auth" / "htpasswd"
    port = free_port()
    env = {"REGISTRY_AUTH": "htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM": "Registry Realm",
           "REGISTRY_AUTH_HTPASSWD_PATH": str(htpasswd), "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
           "REGISTRY_STORAGE": "inmemory"}
    proc = _serve(["serve"], env, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        assert oct(htpasswd.stat().st_mode & 0o777) == "0o600" and htpasswd.read_text().startswith("docker:$2")
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        [line] = [l for l in out.splitlines() if "and password" in l]
        password = line.split("and password ")[1].split()[0]
        assert out.count(password) == 1  # printed once, never logged
        # the generated user works... after a restart too
        proc = _serve(["serve"], env, tmp_path)
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/", headers={
            "Authorization": "Basic " + base64.b64encode(f"docker:{password}".encode()).decode()})
        with urllib.request.urlopen(request) as resp:
            assert resp.status == 200
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/")
            raise AssertionError("anonymous request accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "and password" not in out  # not printed again


def test_help_lists_every_command_and_each_command_has_its_own_help() -> None:
    """Sub-command parsers are built only for the invoked command; the top-level help still names
    them all and each one's own help shows its real options."""
    from registry.cli import COMMANDS, build_parser

    top = build_parser([]).format_help()
    for name in ("serve", "check-config", "reindex", *COMMANDS):
        assert name in top
    expected = {"auth": "create-key", "garbage-collect": "--delete-untagged", "retention": "--dry-run",
                "repo": "REPO_COMMAND"}
    for name, option in expected.items():
        parser = build_parser([name, "--help"])
        sub = parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
        assert option in sub.format_help(), name
    args = build_parser(["auth", "token", "-c", "x.yml", "--anonymous"]).parse_args(
        ["auth", "token", "-c", "x.yml", "--anonymous"])
    assert args.anonymous and args.handler is not None
    with pytest.raises(SystemExit):
        build_parser(["bogus"]).parse_args(["bogus"])


def test_garbage_collect_imports_no_auth_and_no_web_application(tmp_path: Path) -> None:
    """The operator commands start without the auth package and the web application (nor the
    webhook delivery) when the config has no auth block."""
    import os
    import sys

    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'root'}\n"
                   "  delete:\n    enabled: true\n")
    code = ("import sys; from registry.cli import main; rc = main(['garbage-collect', '--offline', '-q', "
            f"{str(cfg)!r}]); print(sorted(m for m in sys.modules if m in ('registry.auth', 'registry.app', "
            "'registry.api', 'registry.events.delivery', 'registry.auth.keys'))); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "repositories: 0" in result.stdout
