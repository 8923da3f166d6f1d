"""Configs in the shape of each of distribution's shipped files (2.8 and 3.x: cmd/registry's
config-example, config-dev and config-cache; contrib's token-server configs; the macOS recipe; the
S3 test configs) and of its documented examples, written here from the documented keys. Each loads
with what we do not implement named in a warning, or is refused with one line -- and for the 2.8
shapes the reference registry itself (Debian's distribution 2.8.2) is asked the same question."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fixtures_registry import REFERENCE_BINARY
from helpers import free_port, run_cli, stop_process
from tls_support import CA


def _files(tmp: Path) -> dict[str, str]:
    """Files the configs name: TLS pair, token bundle."""
    ca = CA(tmp / "pki")
    pair = ca.issue("localregistry")
    return {"cert": str(pair.cert), "key": str(pair.key), "bundle": str(ca.path)}


def shapes(tmp: Path) -> dict[str, tuple[dict, str | None]]:
    """name -> (config, None when it loads | the text of the one refusal line)."""
    f = _files(tmp)
    root = str(tmp / "root")
    dbg = f"127.0.0.1:{free_port()}"
    notifications = {"events": {"includereferences": True}, "endpoints": [
        {"name": "hook-a", "url": "http://127.0.0.1:9/callback", "headers": {"Authorization": ["Bearer x"]},
         "timeout": "1s", "threshold": 10, "backoff": "1s", "disabled": True},
        {"name": "hook-b", "url": "http://127.0.0.1:9/other", "timeout": "1s", "threshold": 10, "backoff": "1s",
         "disabled": True}]}
    health = {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}}
    token = {"realm": "https://auth.localregistry:5559/token/", "issuer": "registry-test",
             "service": "registry-test", "rootcertbundle": f["bundle"]}
    s3 = {"region": "us-east-1", "accesskey": "distribution", "secretkey": "password", "bucket": "images-local",
          "rootdirectory": "/registry-v2", "regionendpoint": "http://127.0.0.1:9", "encrypt": False,
          "secure": False, "chunksize": 33554432, "v4auth": True}
    out: dict[str, tuple[dict, str | None]] = {
        "2.8 config-example": ({"version": 0.1, "log": {"fields": {"service": "registry"}},
                                "storage": {"cache": {"blobdescriptor": "inmemory"}, "filesystem": {"rootdirectory": root}},
                                "http": {"headers": {"X-Content-Type-Options": ["nosniff"]}},
                                "auth": {"htpasswd": {"realm": "basic-realm", "path": str(tmp / "etc-registry")}},
                                "health": health}, None),
        "2.8 config-dev": ({"version": 0.1,
                            "log": {"level": "debug", "fields": {"service": "registry", "environment": "development"},
                                    "hooks": [{"type": "mail", "disabled": True, "levels": ["panic"], "options": {
                                        "smtp": {"addr": "mail.example.com:25", "username": "u", "password": "p",
                                                 "insecure": True}, "from": "a@example.com", "to": ["b@example.com"]}}]},
                            "storage": {"delete": {"enabled": True}, "cache": {"blobdescriptor": "redis"},
                                        "filesystem": {"rootdirectory": root},
                                        "maintenance": {"uploadpurging": {"enabled": False}}},
                            "http": {"debug": {"addr": dbg, "prometheus": {"enabled": True, "path": "/metrics"}},
                                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
                            "redis": {"addr": "127.0.0.1:9", "pool": {"maxidle": 16, "maxactive": 64, "idletimeout": "300s"},
                                      "dialtimeout": "10ms", "readtimeout": "10ms", "writetimeout": "10ms"},
                            "notifications": notifications, "health": health}, None),
        "2.8 config-cache": ({"version": 0.1, "log": {"level": "debug", "fields": {"service": "registry"}},
                              "storage": {"cache": {"blobdescriptor": "redis"}, "filesystem": {"rootdirectory": root},
                                          "maintenance": {"uploadpurging": {"enabled": False}}},
                              "http": {"secret": "asecretforlocaldevelopment", "debug": {"addr": dbg},
                                       "headers": {"X-Content-Type-Options": ["nosniff"]}},
                              "redis": {"addr": "127.0.0.1:9", "pool": {"maxidle": 16, "maxactive": 64,
                                                                         "idletimeout": "300s"},
                                        "dialtimeout": "10ms", "readtimeout": "10ms", "writetimeout": "10ms"},
                              "notifications": notifications,
                              "proxy": {"remoteurl": "https://registry-1.docker.io", "username": "u", "password": "p"},
                              "health": health}, None),
        "2.8 tokenserver-oauth notls": ({"version": 0.1, "loglevel": "debug",
                                         "storage": {"cache": {"blobdescriptor": "inmemory"},
                                                     "filesystem": {"rootdirectory": root}},
                                         "compatibility": {"schema1": {"enabled": True}}, "auth": {"token": token}},
                                        None),
        "2.8 tokenserver": ({"version": 0.1, "loglevel": "debug",
                             "storage": {"cache": {"blobdescriptor": "inmemory"}, "filesystem": {"rootdirectory": root}},
                             "http": {"tls": {"certificate": f["cert"], "key": f["key"]}},
                             "compatibility": {"schema1": {"enabled": True}}, "auth": {"token": token}}, None),
        "3.x config-example": ({"version": 0.1, "log": {"fields": {"service": "registry"}},
                                "storage": {"cache": {"blobdescriptor": "inmemory"}, "filesystem": {"rootdirectory": root},
                                            "tag": {"concurrencylimit": 8}},
                                "http": {"headers": {"X-Content-Type-Options": ["nosniff"]}},
                                "auth": {"htpasswd": {"realm": "basic-realm", "path": str(tmp / "etc-registry")}},
                                "health": health}, None),
        "3.x config-cache": ({"version": 0.1, "log": {"level": "debug", "fields": {"service": "registry"}},
                              "storage": {"cache": {"blobdescriptor": "redis"}, "filesystem": {"rootdirectory": root},
                                          "maintenance": {"uploadpurging": {"enabled": False}},
                                          "tag": {"concurrencylimit": 8}},
                              "http": {"secret": "s", "debug": {"addr": dbg}},
                              "redis": {"addrs": ["127.0.0.1:9"], "maxidleconns": 16, "poolsize": 64,
                                        "connmaxidletime": "300s", "dialtimeout": "10ms"},
                              "notifications": notifications,
                              "proxy": {"remoteurl": "https://registry-1.docker.io", "username": "u", "password": "p"},
                              "health": health}, None),
        "3.x osx recipe": ({"version": 0.1, "log": {"level": "info", "fields": {"service": "registry"}},
                            "storage": {"cache": {"blobdescriptor": "inmemory"},
                                        "filesystem": {"rootdirectory": str(tmp / "Users" / "Shared" / "Registry")}},
                            "http": {"secret": "mytokensecret", "debug": {"addr": dbg}}}, None),
        "3.x conf-local-s3": ({"version": 0.1,
                               "http": {"debug": {"addr": dbg, "prometheus": {"enabled": True, "path": "/metrics"}},
                                        "draintimeout": "5s", "secret": "hmacsecret"},
                               "log": {"accesslog": {"disabled": False}, "fields": {"environment": "local"},
                                       "formatter": "text", "level": "debug"},
                               "storage": {"delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"},
                                           "maintenance": {"uploadpurging": {"enabled": False}},
                                           "s3": {**s3, "usefipsendpoint": False}}}, None),
        "3.x conf-e2e-cloud-storage": ({"version": 0.1, "http": {"draintimeout": "5s", "secret": "hmacsecret"},
                                        "redis": {"addrs": ["127.0.0.1:9"], "db": 0},
                                        "storage": {"redirect": {"disable": True}, "cache": {"blobdescriptor": "redis"},
                                                    "s3": {**s3, "forcepathstyle": True}}}, None),
        # documented examples distribution refuses
        "reference: every option at once": ({"version": 0.1, "storage": {
            "filesystem": {"rootdirectory": root}, "s3": dict(s3), "inmemory": None,
            "delete": {"enabled": False}}}, "more than one storage driver configured: filesystem, inmemory, s3"),
        "reference: three auth schemes": ({"version": 0.1, "storage": {"inmemory": None}, "auth": {
            "silly": {"realm": "silly-realm", "service": "silly-service"}, "token": token,
            "htpasswd": {"realm": "basic-realm", "path": str(tmp / "htpasswd")}}}, "auth.silly: unsupported auth scheme"),
        "missing token bundle": ({"version": 0.1, "storage": {"inmemory": None},
                                  "auth": {"token": {**token, "rootcertbundle": str(tmp / "nope.pem")}}}, "nope.pem"),
        "missing TLS key": ({"version": 0.1, "storage": {"inmemory": None},
                             "http": {"tls": {"certificate": f["cert"], "key": str(tmp / "nope.key")}}}, "nope.key"),
        "bad log level": ({"version": 0.1, "storage": {"inmemory": None}, "log": {"level": "verbose"}},
                          "log.level"),
        "unsupported version": ({"version": "0.2", "storage": {"inmemory": None}}, "unsupported configuration version"),
        "no storage": ({"version": 0.1, "storage": {"delete": {"enabled": True}}}, "no storage driver"),
    }
    return out


#: what we do not implement in those shapes, named in warnings (not silently dropped)
EXPECTED_WARNINGS = {
    "2.8 config-dev": ["log.hooks"],
    "3.x config-cache": ["storage.tag.concurrencylimit"],
    "3.x config-example": ["storage.tag.concurrencylimit"],
}
#: sections of distribution's files that this registry implements (never named as ignored)
HONOURED = ["proxy", "notifications", "health", "http.tls", "auth.token", "storage.delete", "storage.maintenance",
            "redis", "storage.cache.blobdescriptor"]


def write(tmp_path: Path, name: str, config: dict) -> Path:
    path = tmp_path / (name.replace(" ", "-").replace(":", "") + ".yml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[dict, str | None]]]:
    tmp = tmp_path_factory.mktemp("shapes")
    return tmp, shapes(tmp)


NAMES = [
    "2.8 config-example", "2.8 config-dev", "2.8 config-cache", "2.8 tokenserver-oauth notls", "2.8 tokenserver",
    "3.x config-example", "3.x config-cache", "3.x osx recipe", "3.x conf-local-s3", "3.x conf-e2e-cloud-storage",
    "reference: every option at once", "reference: three auth schemes", "missing token bundle", "missing TLS key",
    "bad log level", "unsupported version", "no storage",
]


@pytest.mark.parametrize("name", NAMES)
def test_shape_loads_or_is_refused_in_one_line(configs, name: str) -> None:
    tmp, table = configs
    config, refusal = table[name]
    path = write(tmp, name, config)
    result = run_cli("check-config", str(path), cwd=tmp)
    if refusal is None:
        assert result.returncode == 0, result.stderr
        assert "configuration OK" in result.stdout
        for key in EXPECTED_WARNINGS.get(name, []):
            assert f"{key} is not supported by this registry" in result.stderr, (key, result.stderr)
        assert "unknown key" not in result.stderr
        for key in HONOURED:
            assert f"config: {key} is not supported" not in result.stderr, (key, result.stderr)
        assert not (tmp / "root").exists()  # check-config writes nothing
    else:
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if "WARNING" not in line]
        assert len(lines) == 1 and refusal in lines[0] and "Traceback" not in result.stderr, result.stderr


def _reference_starts(config: dict, tmp: Path) -> bool:
    """Whether distribution 2.8.2 serves this configuration (True) or exits (False)."""
    port = free_port()
    config = {**config, "http": {**config.get("http", {}), "addr": f"127.0.0.1:{port}"}}
    path = write(tmp, f"reference-{port}", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen([REFERENCE_BINARY, "serve", str(path)], env=env, cwd=tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
            time.sleep(0.1)
        raise TimeoutError("the reference neither started nor exited")
    finally:
        stop_process(proc)


@pytest.mark.requires_tool(REFERENCE_BINARY, hint="distribution 2.8.2: `make apt-deps` installs docker-registry")
@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("3.x")])
def test_the_reference_agrees(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    tmp = tmp_path_factory.mktemp("reference")
    config, refusal = shapes(tmp)[name]
    if "proxy" in config:
        pytest.skip("in proxy mode the reference asks registry-1.docker.io at start (no network here)")
    assert _reference_starts(config, tmp) == (refusal is None), name
