"""The command line as an operator uses it: serve, --version, and one clear line on bad input."""

from __future__ import annotations

import subprocess
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


def test_missing_root_directory(tmp_path: Path) -> None:
    missing = tmp_path / "does" / "not" / "exist"
    result = run_cli("serve", env={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(missing)}, cwd=tmp_path)
    _assert_one_clear_line(result, str(missing))


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
