"""Debian's nginx in front of the registry with deploy/nginx.conf (the guide's file): TLS at nginx, a
1 GiB blob pushed and pulled through it, streamed (generated and hashed on the fly), and every
Location URL naming the proxy, never the registry behind it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from fixtures_registry import start_or_fail
from helpers import ROOT, free_port, stop_process
from tls_support import CA

SIZE = 1 << 30
CHUNK = 1 << 20

pytestmark = pytest.mark.requires_tool("nginx", hint="Debian's nginx: `make test-deps` installs it")


def nginx_config(workdir: Path, backend_port: int, port: int, cert: Path, key: Path) -> Path:
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = (site.replace("127.0.0.1:5000", f"127.0.0.1:{backend_port}")
                .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
                .replace("server_name registry.example.com;", "server_name localhost;")
                .replace("/etc/ssl/registry/fullchain.pem", str(cert))
                .replace("/etc/ssl/registry/privkey.pem", str(key)))
    temp = "".join(f"  {kind}_temp_path {workdir}/{kind};\n" for kind in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = workdir / "nginx.conf"
    conf.write_text(f"worker_processes 1;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;\n"
                    f"events {{ worker_connections 256; }}\n"
                    f"http {{\n  access_log off;\n{temp}{site}\n}}\n")
    return conf


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[dict[str, object]]:
    registry = start_or_fail("ours", tmp_path / "root", tmp_path / "registry")
    ca = CA(tmp_path / "pki")
    pair = ca.issue("nginx", hosts=("localhost",))
    port = free_port()
    conf = nginx_config(tmp_path, registry.port, port, pair.cert, pair.key)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield {"base": f"https://localhost:{port}", "ca": ca.path, "backend": registry.port}
    finally:
        stop_process(proc)
        registry.stop()


async def _body(digest: "hashlib._Hash") -> AsyncIterator[bytes]:
    block = bytearray(os.urandom(CHUNK))
    for i in range(SIZE // CHUNK):
        block[:8] = i.to_bytes(8, "big")  # every MiB different, nothing held but one block
        piece = bytes(block)
        digest.update(piece)
        yield piece


async def test_one_gib_push_and_pull_through_nginx(proxied: dict[str, object]) -> None:
    base = str(proxied["base"])
    ctx = ssl.create_default_context(cafile=str(proxied["ca"]))
    backend = f"127.0.0.1:{proxied['backend']}"
    timeout = aiohttp.ClientTimeout(total=1800, sock_read=600)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), timeout=timeout) as s:
        r = await s.post(f"{base}/v2/big/blob/blobs/uploads/")
        assert r.status == 202, await r.text()
        location = r.headers["Location"]
        assert location.startswith(f"{base}/v2/big/blob/blobs/uploads/"), location
        sha = hashlib.sha256()
        r = await s.patch(location, data=_body(sha), headers={"Content-Type": "application/octet-stream"})
        assert r.status == 202, await r.text()
        assert r.headers["Range"] == f"0-{SIZE - 1}"
        location = r.headers["Location"]
        assert location.startswith(f"{base}/v2/big/blob/blobs/uploads/") and backend not in location
        digest = f"sha256:{sha.hexdigest()}"
        sep = "&" if "?" in location else "?"
        r = await s.put(f"{location}{sep}digest={digest}")
        assert r.status == 201, await r.text()
        assert r.headers["Location"] == f"{base}/v2/big/blob/blobs/{digest}"

        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        cdigest = f"sha256:{hashlib.sha256(config).hexdigest()}"
        r = await s.post(f"{base}/v2/big/blob/blobs/uploads/?digest={cdigest}", data=config)
        assert r.status == 201 and r.headers["Location"].startswith(base)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cdigest, "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                           "digest": digest, "size": SIZE}]}).encode()
        r = await s.put(f"{base}/v2/big/blob/manifests/v1", data=manifest,
                        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status == 201, await r.text()
        assert r.headers["Location"].startswith(f"{base}/v2/big/blob/manifests/sha256:")

        r = await s.head(f"{base}/v2/big/blob/blobs/{digest}")
        assert r.status == 200 and int(r.headers["Content-Length"]) == SIZE
        pulled, size = hashlib.sha256(), 0
        async with s.get(f"{base}/v2/big/blob/blobs/{digest}") as r:
            assert r.status == 200
            async for piece in r.content.iter_chunked(CHUNK):
                pulled.update(piece)
                size += len(piece)
        assert size == SIZE and f"sha256:{pulled.hexdigest()}" == digest
