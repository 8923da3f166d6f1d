"""http.tls.letsencrypt against a real ACME CA: Let's Encrypt's test server pebble (Debian package),
with its mock DNS (pebble-challtestsrv) resolving the registry's name to 127.0.0.1. The CA
validates by TLS-ALPN-01 on the registry's own listener, as with Let's Encrypt in production."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import free_port, registry_cmd, stop_process

from tls_support import CA

HOST = "registry.test"

pytestmark = pytest.mark.requires_tool("pebble", hint="Debian's pebble: `make test-deps` installs it")


@pytest.fixture
def acme_ca(tmp_path: Path) -> Iterator[dict[str, object]]:
    """pebble and its DNS on free ports; validation connects to ``tls_port`` (the registry's)."""
    ca = CA(tmp_path / "pebble-pki", "Pebble Listener CA")
    listener = ca.issue("pebble", hosts=("localhost", "127.0.0.1"))
    dns_port, acme_port, management_port, challenge_mgmt_port, tls_port = (free_port() for _ in range(5))
    config = tmp_path / "pebble.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{acme_port}", "managementListenAddress": f"127.0.0.1:{management_port}",
        "certificate": str(listener.cert), "privateKey": str(listener.key),
        "httpPort": free_port(), "tlsPort": tls_port, "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }}))
    logs = open(tmp_path / "pebble.log", "wb")
    dns = subprocess.Popen(["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
                            "-tlsalpn01", "", "-management", f"127.0.0.1:{challenge_mgmt_port}",
                            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""], stdout=logs, stderr=subprocess.STDOUT)
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
    pebble = subprocess.Popen(["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
                              stdout=logs, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_port(acme_port, pebble)
        yield {"directory": f"https://127.0.0.1:{acme_port}/dir", "listener_ca": ca.path, "tls_port": tls_port,
               "management": f"https://127.0.0.1:{management_port}", "pebble": pebble, "log": tmp_path / "pebble.log"}
    finally:
        stop_process(pebble)
        stop_process(dns)
        logs.close()


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def _pebble_root(acme_ca: dict[str, object]) -> str:
    ctx = ssl.create_default_context(cafile=str(acme_ca["listener_ca"]))
    with urllib.request.urlopen(f"{acme_ca['management']}/roots/0", context=ctx) as resp:
        return resp.read().decode()


@contextlib.contextmanager
def _registry(tmp_path: Path, acme_ca: dict[str, object], cache: Path) -> Iterator[subprocess.Popen]:
    port = acme_ca["tls_port"]
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage: inmemory\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  tls:\n    letsencrypt:\n      cachefile: {cache}\n"
        f"      email: admin@example.com\n      hosts: [{HOST}]\n      directoryurl: {acme_ca['directory']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["REQUESTS_CA_BUNDLE"] = str(acme_ca["listener_ca"])  # trust pebble's (test) listener
    log = open(tmp_path / "registry.log", "ab")
    proc = subprocess.Popen(registry_cmd("serve", str(config)), env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        _wait_port(port, proc)  # type: ignore[arg-type]
        yield proc
    finally:
        stop_process(proc)


def _get_v2(port: int, root_pem: str, timeout: float) -> int:
    """GET /v2/ by the ACME name, trusting only pebble's root; retried until ``timeout``."""
    ctx = ssl.create_default_context(cadata=root_pem)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
                    conn = http.client.HTTPConnection(HOST, port)
                    conn.sock = tls
                    conn.request("GET", "/v2/")
                    return conn.getresponse().status
        except (ssl.SSLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_letsencrypt_certificate_from_pebble(tmp_path: Path, acme_ca: dict[str, object]) -> None:
    cache = tmp_path / "acme-cache"
    root = _pebble_root(acme_ca)
    port: int = acme_ca["tls_port"]  # type: ignore[assignment]
    with _registry(tmp_path, acme_ca, cache):
        assert _get_v2(port, root, timeout=90) == 200, (tmp_path / "registry.log").read_text()
    # autocert's layout: the account key and one file per host (key + chain), private
    assert (cache / "acme_account+key").exists()
    assert oct((cache / HOST).stat().st_mode & 0o777) == "0o600"
    assert b"PRIVATE KEY" in (cache / HOST).read_bytes() and b"CERTIFICATE" in (cache / HOST).read_bytes()
    # a restart serves the cached certificate at once, the CA gone
    stop_process(acme_ca["pebble"])  # type: ignore[arg-type]
    with _registry(tmp_path, acme_ca, cache):
        assert _get_v2(port, root, timeout=5) == 200
    log = (tmp_path / "registry.log").read_text()
    assert f"obtained a certificate for {HOST}" in log
    assert log.count("obtained a certificate") == 1
