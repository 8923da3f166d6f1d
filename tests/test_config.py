"""Configuration: distribution's config.yml shape, REGISTRY_* overrides, clear errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from registry.config import ConfigError, load_config, parse_duration

DISTRIBUTION_STYLE = """
version: 0.1
log:
  level: debug
  formatter: text
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
http:
  addr: :5000
  secret: asecretforlocaldevelopment
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_distribution_file_loads_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ={})
    assert config.storage.driver == "filesystem"
    assert config.storage.params == {"rootdirectory": "/var/lib/registry"}
    assert config.storage.delete_enabled is True
    assert config.storage.redirect_disable is True
    assert config.storage.uploadpurging.age == 168 * 3600
    assert config.http.addr == ":5000"
    assert config.http.host_port == ("0.0.0.0", 5000)
    assert config.http.secret == "asecretforlocaldevelopment"
    assert config.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    assert config.log.level == "debug"
    # health is honoured now (registry/observe): the storage driver check with its threshold
    [check] = config.health.checks
    assert (check.kind, check.interval, check.threshold) == ("storagedriver", 10.0, 3)
    assert not any("health" in r.getMessage() for r in caplog.records)


def test_unknown_key_is_a_warning_naming_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "version: 0.1\nstorage:\n  inmemory: {}\nhttp:\n  addr: 127.0.0.1:5000\n  bogus: 1\nfrobnicate: 2\n"
    with caplog.at_level(logging.WARNING):
        config = load_config(write(tmp_path, text), environ={})
    assert config.storage.driver == "inmemory"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "http.bogus" in messages and "frobnicate" in messages


def test_embedded_default() -> None:
    config = load_config(None, environ={})
    assert config.storage.driver == "filesystem"
    assert config.storage.params == {"rootdirectory": os.path.abspath("data")}
    assert config.http.addr == "127.0.0.1:5000"
    assert config.http.secret  # generated
    assert config.http.secret_generated


def test_env_overrides_take_yaml_values(tmp_path: Path) -> None:
    env = {
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x",
        "REGISTRY_HTTP_ADDR": "127.0.0.1:6000",
        "REGISTRY_STORAGE_DELETE_ENABLED": "false",
        "REGISTRY_HTTP_HEADERS": "{X-A: [b]}",
        "REGISTRY_VALIDATION_MANIFESTS_MAXSIZE": "8388608",
    }
    config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env)
    assert config.storage.params == {"rootdirectory": "/x"}
    assert config.http.addr == "127.0.0.1:6000"
    assert config.storage.delete_enabled is False
    assert config.http.headers == {"X-A": ["b"]}
    assert config.validation.manifests_maxsize == 8 * 1024 * 1024


def test_env_switches_storage_driver(tmp_path: Path) -> None:
    env = {"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_S3_BUCKET": "images", "REGISTRY_STORAGE_S3_REGION": "eu-west-1"}
    config = load_config(write(tmp_path, DISTRIBUTION_STYLE), environ=env)
    assert config.storage.driver == "s3"
    assert config.storage.params == {"bucket": "images", "region": "eu-west-1"}
    assert config.storage.delete_enabled is True  # options survive the switch


def test_other_env_vars_are_ignored() -> None:
    config = load_config(None, environ={"PATH": "/bin", "REGISTRYX": "1"})
    assert config.storage.driver == "filesystem"


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("storage:\n  filesystem: {rootdirectory: /a}\n  inmemory: {}\n", {}, "more than one storage driver"),
        ("storage:\n  delete: {enabled: true}\n", {}, "no storage driver"),
        ("storage:\n  inmemory: {}\n  delete: {enabled: sometimes}\n", {}, "storage.delete.enabled"),
        ("http:\n  addr: localhost\n", {}, "http.addr"),
        ("http:\n  addr: 127.0.0.1:99999\n", {}, "http.addr"),
        ("log:\n  level: loud\n", {}, "log.level"),
        ("- a\n- b\n", {}, "mapping"),
        ("http: [1, 2]\n", {}, "http"),
        ("storage:\n  maintenance:\n    uploadpurging: {age: soon}\n  inmemory: {}\n", {}, "uploadpurging.age"),
        ("version: 0.1\n", {"REGISTRY_HTTP_ADDR": "[oops"}, "REGISTRY_HTTP_ADDR"),
        ("version: 0.1\n", {"REGISTRY_HTTP_WORKERS": "zero"}, "http.workers"),
        ("http:\n  addr: 1\n", {"REGISTRY_HTTP_ADDR_PORT": "5"}, "REGISTRY_HTTP_ADDR_PORT"),
        ("auth:\n  htpasswd: {}\n  token: {}\n", {}, "more than one auth"),
        ("version: [\n", {}, "not valid YAML"),
    ],
)
def test_bad_values_are_one_clear_line(tmp_path: Path, text: str, env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yml", environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("1m30s", 90), ("168h", 604800), ("500ms", 0.5), (5, 5)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("text", ["10", "h", "10x", "-1s", "", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text, "k")
