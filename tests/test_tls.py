"""TLS as distribution's http.tls keys say, against a real `registry serve` and Python's TLS client:
minimum version, cipher suites, client certificates, and files checked by check-config."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import free_port, registry_cmd, run_cli
from tls_support import CA, Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, other_ca = CA(d, "Server CA"), CA(d, "Client CA"), CA(d, "Other CA")
    return {
        "server_ca": server_ca, "server": server_ca.issue("server"),
        "client_ca": client_ca, "client": client_ca.issue("client", server=False),
        "stranger": other_ca.issue("stranger", server=False),
    }


@contextlib.contextmanager
def serving(tmp_path: Path, tls_yaml: str, *, http_extra: str = "") -> Iterator[int]:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage: inmemory\nlog:\n  accesslog:\n    disabled: true\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n{http_extra}  tls:\n{tls_yaml}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen(registry_cmd("serve", str(config)), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"registry exited: {proc.stdout.read() if proc.stdout else ''}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("registry did not listen")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client_context(pki: dict[str, object], *, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None,
                   cert: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["server_ca"].path))  # type: ignore[attr-defined]
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def get_v2(port: int, ctx: ssl.SSLContext) -> int:
    """Status of GET /v2/ over TLS (raises ssl.SSLError or a connection error when refused)."""
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status
    finally:
        conn.close()


REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def tls_block(pki: dict[str, object], extra: str = "") -> str:
    server: Issued = pki["server"]  # type: ignore[assignment]
    return f"    certificate: {server.cert}\n    key: {server.key}\n{extra}"


def test_minimum_tls13_refuses_a_tls12_client(tmp_path: Path, pki: dict[str, object]) -> None:
    with serving(tmp_path, tls_block(pki, "    minimumtls: tls1.3\n")) as port:
        assert get_v2(port, client_context(pki)) == 200
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))


def test_default_minimum_is_tls12(tmp_path: Path, pki: dict[str, object]) -> None:
    with serving(tmp_path, tls_block(pki)) as port:
        assert get_v2(port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)) == 200
        # distribution's default suites: ECDHE with AES-GCM or ChaCha20 only, no RSA key exchange
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256"))


def test_a_cipher_outside_the_list_is_refused(tmp_path: Path, pki: dict[str, object]) -> None:
    block = tls_block(pki, "    ciphersuites:\n      - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n")
    with serving(tmp_path, block) as port:
        tls12 = ssl.TLSVersion.TLSv1_2
        assert get_v2(port, client_context(pki, maximum=tls12, ciphers="ECDHE-RSA-AES128-GCM-SHA256")) == 200
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki, maximum=tls12, ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki, maximum=tls12, ciphers="ECDHE-RSA-CHACHA20-POLY1305"))


def test_client_certificate_required_and_verified(tmp_path: Path, pki: dict[str, object]) -> None:
    block = tls_block(pki, f"    clientcas:\n      - {pki['client_ca'].path}\n"  # type: ignore[attr-defined]
                           "    clientauth: require-and-verify-client-cert\n")
    with serving(tmp_path, block) as port:
        assert get_v2(port, client_context(pki, cert=pki["client"])) == 200  # type: ignore[arg-type]
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki))  # no certificate
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki, cert=pki["stranger"]))  # type: ignore[arg-type]


def test_client_certificate_verified_if_given(tmp_path: Path, pki: dict[str, object]) -> None:
    block = tls_block(pki, f"    clientcas: [{pki['client_ca'].path}]\n"  # type: ignore[attr-defined]
                           "    clientauth: verify-client-cert-if-given\n")
    with serving(tmp_path, block) as port:
        assert get_v2(port, client_context(pki)) == 200
        assert get_v2(port, client_context(pki, cert=pki["client"])) == 200  # type: ignore[arg-type]
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki, cert=pki["stranger"]))  # type: ignore[arg-type]


def test_clientcas_from_an_indexed_environment_variable(tmp_path: Path, pki: dict[str, object]) -> None:
    """distribution's list override: REGISTRY_HTTP_TLS_CLIENTCAS_0 (default clientauth: require and verify)."""
    server: Issued = pki["server"]  # type: ignore[assignment]
    port = free_port()
    env = {"REGISTRY_STORAGE": "inmemory", "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
           "REGISTRY_HTTP_TLS_CERTIFICATE": str(server.cert), "REGISTRY_HTTP_TLS_KEY": str(server.key),
           "REGISTRY_HTTP_TLS_CLIENTCAS_0": str(pki["client_ca"].path)}  # type: ignore[attr-defined]
    full = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")} | env
    proc = subprocess.Popen(registry_cmd("serve"), env=full, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        assert get_v2(port, client_context(pki, cert=pki["client"])) == 200  # type: ignore[arg-type]
        with pytest.raises(REFUSED):
            get_v2(port, client_context(pki))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_http_headers_are_sent(tmp_path: Path, pki: dict[str, object]) -> None:
    extra = "  headers:\n    Strict-Transport-Security: [max-age=31536000]\n    X-Content-Type-Options: [nosniff]\n"
    with serving(tmp_path, tls_block(pki), http_extra=extra) as port:
        conn = http.client.HTTPSConnection("localhost", port, context=client_context(pki), timeout=10)
        conn.request("GET", "/v2/")
        resp = conn.getresponse()
        assert resp.getheader("Strict-Transport-Security") == "max-age=31536000"
        assert resp.getheader("X-Content-Type-Options") == "nosniff"
        conn.close()


# --------------------------------------------------------------------------- check-config


def check(tmp_path: Path, tls_yaml: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "check.yml"
    config.write_text(f"version: 0.1\nstorage: inmemory\nhttp:\n  addr: 127.0.0.1:5999\n  tls:\n{tls_yaml}")
    return run_cli("check-config", str(config), cwd=tmp_path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    lines = [line for line in result.stderr.splitlines() if "WARNING" not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_check_config_loads_the_certificate(tmp_path: Path, pki: dict[str, object]) -> None:
    ok = check(tmp_path, tls_block(pki, "    minimumtls: tls1.3\n"))
    assert ok.returncode == 0, ok.stderr
    assert f"tls: certificate {pki['server'].cert}, minimum tls1.3" in ok.stdout  # type: ignore[attr-defined]
    server: Issued = pki["server"]  # type: ignore[assignment]
    assert "does not exist" in one_line(check(tmp_path, f"    certificate: {server.cert}\n    key: /nope.key\n"))
    other = pki["client"]
    line = one_line(check(tmp_path, f"    certificate: {server.cert}\n    key: {other.key}\n"))  # type: ignore[attr-defined]
    assert "cannot use certificate" in line and "KEY_VALUES_MISMATCH" in line.upper().replace(" ", "_")


def test_check_config_warns_about_an_expired_certificate(tmp_path: Path, pki: dict[str, object]) -> None:
    old = pki["server_ca"].issue("old", days=-1)  # type: ignore[attr-defined]
    result = check(tmp_path, f"    certificate: {old.cert}\n    key: {old.key}\n")
    assert result.returncode == 0 and "expired on" in result.stderr


@pytest.mark.parametrize(("block", "needle"), [
    ("    minimumtls: tls1.4\n", "unknown minimum TLS level 'tls1.4'"),
    ("    ciphersuites: [TLS_FANCY_CIPHER]\n", "unknown TLS cipher suite 'TLS_FANCY_CIPHER'"),
    ("    clientauth: maybe\n", "http.tls.clientauth: expected one of request-client-cert"),
])
def test_bad_tls_values_are_refused_as_distribution_refuses_them(tmp_path: Path, pki: dict[str, object],
                                                                  block: str, needle: str) -> None:
    assert needle in one_line(check(tmp_path, tls_block(pki, block)))


@pytest.mark.parametrize(("block", "needle"), [
    ("    clientcas: [/etc/ca.pem]\n", "without one the registry would serve plain HTTP"),
    ("    letsencrypt:\n      hosts: [registry.example.com]\n", "letsencrypt.cachefile is required"),
    ("    key: /etc/tls.key\n", "without one the registry would serve plain HTTP"),
])
def test_tls_keys_that_would_fall_back_to_plain_http_are_refused(tmp_path: Path, block: str, needle: str) -> None:
    assert needle in one_line(check(tmp_path, block))


def test_certificate_and_letsencrypt_together_are_refused(tmp_path: Path, pki: dict[str, object]) -> None:
    block = tls_block(pki, f"    letsencrypt:\n      cachefile: {tmp_path / 'acme'}\n      hosts: [r.example.com]\n")
    assert "cannot specify both certificate and letsencrypt" in one_line(check(tmp_path, block))


# --------------------------------------------------------------------------- listeners


def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "registry.sock"
    path.write_text("")  # a stale regular file is refused, as distribution refuses it
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage: inmemory\nhttp:\n  net: unix\n  addr: {path}\n")
    result = run_cli("serve", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "exists and is not a socket" in result.stderr
    path.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen(registry_cmd("serve", str(config)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if path.exists():
                break
            time.sleep(0.1)
        status = None
        for _ in range(50):
            with contextlib.suppress(OSError):
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(path))
                    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    status = s.recv(4096).split(b"\r\n", 1)[0]
                    break
            time.sleep(0.1)
        assert status == b"HTTP/1.1 200 OK"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """The socket systemd passes (LISTEN_FDS) is used instead of http.addr, as distribution does."""
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text("version: 0.1\nstorage: inmemory\nhttp:\n  addr: 127.0.0.1:1\n")  # never bound
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", *registry_cmd("serve", str(config))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.3)
        status = None
        for _ in range(100):
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                break
            time.sleep(0.2)
        assert status == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "socket activation" in out
