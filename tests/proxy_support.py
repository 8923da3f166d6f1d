"""Set-up of the pull-through cache tests: real upstream registries, a tampering man in the middle.

Upstreams are real registries started as processes: the reference (distribution 2.8.2) with
htpasswd and its access log on (the tests count its blob GETs), and our registry with its token
server standing in for Docker Hub's token flow. :class:`Tamper` is a small aiohttp server that
forwards to an upstream and, when told, flips one byte of a blob or a manifest, or answers 429.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auth_support import make_pki, make_users
from fixtures_registry import REFERENCE_BINARY, SHARED_SECRET, Client, RunningRegistry
from helpers import ROOT, free_port, wait_http

#: the account every upstream knows; the cache pulls with it
MIRROR_USER, MIRROR_PASSWORD = "mirror", "mirror-secret-pw"
#: the account that seeds the upstreams
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-secret-pw"
TOKEN_ISSUER, TOKEN_SERVICE = "proxy-test-issuer", "proxy-test-upstream"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def start(kind: str, config: dict[str, Any], workdir: Path, name: str) -> RunningRegistry:
    """Start ``kind`` ("ours" or "reference") with exactly ``config`` (its ``http.addr`` decides
    the port); wait until ``/v2/`` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = int(config["http"]["addr"].rsplit(":", 1)[1])
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / f"{name}.log"
    cmd = [REFERENCE_BINARY, "serve", str(path)] if kind == "reference" else \
        [sys.executable, "-m", "registry", "serve", str(path)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    root = Path(next(iter(config["storage"].values()))["rootdirectory"]) if "filesystem" in config["storage"] else workdir
    reg = RunningRegistry(kind, port, root, proc, log_path, path)
    try:
        wait_http(f"{reg.url}/v2/", timeout=60, proc=proc)
    except Exception:
        reg.stop()
        raise RuntimeError(f"{name} did not start:\n{reg.log_tail()}")
    return reg


def base_config(root: Path, port: int, *, reference: bool = False, accesslog: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info" if reference else "warn", "accesslog": {"disabled": not accesslog}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": SHARED_SECRET},
    }
    if reference:
        config["health"] = {"storagedriver": {"enabled": False}}
    return config


def start_reference_upstream(workdir: Path, *, htpasswd: bool = True) -> RunningRegistry:
    """distribution 2.8.2 with its access log on and (by default) htpasswd users."""
    port = free_port()
    config = base_config(workdir / "data", port, reference=True, accesslog=True)
    if htpasswd:
        users = workdir / "htpasswd"
        make_users(users, {MIRROR_USER: MIRROR_PASSWORD, ADMIN_USER: ADMIN_PASSWORD})
        config["auth"] = {"htpasswd": {"realm": "upstream", "path": str(users)}}
    return start("reference", config, workdir, "reference-upstream")


def start_token_upstream(workdir: Path) -> RunningRegistry:
    """Our registry with bearer tokens from its own token server (Docker Hub's flow): the cache's
    account may pull everything, anonymous callers only ``public/**``."""
    port = free_port()
    pki = make_pki(workdir / "pki")
    users = workdir / "htpasswd"
    make_users(users, {MIRROR_USER: MIRROR_PASSWORD, ADMIN_USER: ADMIN_PASSWORD})
    config = base_config(workdir / "data", port, accesslog=True)
    config["log"]["level"] = "info"
    config["auth"] = {"token": {"realm": f"http://127.0.0.1:{port}/auth/token", "service": TOKEN_SERVICE,
                                "issuer": TOKEN_ISSUER}}
    config["tokenserver"] = {
        "issuer": TOKEN_ISSUER, "service": TOKEN_SERVICE, "users": str(users), "key": str(pki.key_path),
        "certificate": str(pki.cert_path), "path": "/auth/token", "expiration": "5m",
        "rules": [
            {"account": ADMIN_USER, "name": "**", "actions": ["*"]},
            {"account": MIRROR_USER, "name": "**", "actions": ["pull"]},
            {"anonymous": True, "account": "*", "name": "public/**", "actions": ["pull"]},
        ],
    }
    return start("ours", config, workdir, "token-upstream")


def basic_client(reg: RunningRegistry, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> Client:
    return Client("127.0.0.1", reg.port, default_headers={"Authorization": basic(user, password)})


def token_client(reg: RunningRegistry, scope: str, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> Client:
    """A client holding a bearer token from ``reg``'s token server for ``scope``."""
    c = Client("127.0.0.1", reg.port)
    resp = c.request("GET", "/auth/token", query={"service": TOKEN_SERVICE, "scope": scope},
                     headers={"Authorization": basic(user, password)})
    assert resp.status == 200, resp
    token = json.loads(resp.body)["token"]
    return Client("127.0.0.1", reg.port, default_headers={"Authorization": f"Bearer {token}"})


def blob_gets(reg: RunningRegistry, digest: str) -> int:
    """GET requests of blob ``digest`` in an upstream's access log (2xx and 3xx answers)."""
    pattern = re.compile(rf'"GET [^" ]*/blobs/{re.escape(digest)} HTTP/1\.[01]" [23]\d\d ')
    return len(pattern.findall(reg.log_path.read_text(errors="replace")))


# --------------------------------------------------------------------------- the man in the middle


@dataclass
class Tamper:
    """An HTTP forwarder to ``target`` (in a thread of the test process). ``corrupt`` holds
    path fragments (a digest, ``/manifests/v1``) whose answers get one byte flipped; ``limited`` path fragments are
    answered ``429`` with ``Retry-After: 42``; ``seen`` counts the requests by path. A blob GET
    whose path holds a digest of ``redirect`` is answered ``307`` to ``http://localhost:<port>/cdn/...``
    (another origin, as Docker Hub's CDN is), which serves the upstream's bytes and records the
    headers it got in ``cdn_headers``. The answer to a GET whose path holds a fragment of ``hold``
    stops after its first ``hold_after`` bytes until the test sets ``release`` (a slow upstream)."""

    target: str
    port: int = 0
    corrupt: set[str] = field(default_factory=set)
    limited: set[str] = field(default_factory=set)
    redirect: set[str] = field(default_factory=set)
    seen: list[tuple[str, str]] = field(default_factory=list)
    cdn_headers: list[dict[str, str]] = field(default_factory=list)
    hold: set[str] = field(default_factory=set)
    hold_after: int = 4 << 20
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Tamper":
        import aiohttp
        from aiohttp import web

        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        cdn: dict[str, bytes] = {}

        async def handle(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.method, request.path))
            if request.path.startswith("/cdn/"):
                self.cdn_headers.append(dict(request.headers))
                return web.Response(body=cdn[request.path[5:]])
            moved = [d for d in self.redirect if d in request.path and "/blobs/" in request.path]
            if moved and request.method == "GET":
                headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
                async with self._session.get(self.target + request.path, headers=headers) as up:
                    if up.status == 200:
                        cdn[moved[0]] = await up.read()
                        return web.Response(status=307, headers={"Location": f"http://localhost:{self.port}/cdn/{moved[0]}"})
            if any(part in request.path for part in self.limited):
                return web.Response(status=429, headers={"Retry-After": "42"},
                                    text=json.dumps({"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}))
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            url = self.target + request.path_qs
            body = await request.read()
            async with self._session.request(request.method, url, headers=headers, data=body or None,
                                             allow_redirects=False) as up:
                flip = any(d in request.path for d in self.corrupt) and request.method == "GET" and up.status == 200
                out_headers = {k: v for k, v in up.headers.items()
                               if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")}
                resp = web.StreamResponse(status=up.status, headers=out_headers)
                if up.content_length is not None:
                    resp.content_length = up.content_length
                await resp.prepare(request)
                first = True
                held = request.method == "GET" and any(part in request.path for part in self.hold)
                sent = 0
                async for chunk in up.content.iter_any():
                    if flip and first and chunk:
                        chunk = bytes([chunk[0] ^ 0x01]) + chunk[1:]
                    first = first and not chunk
                    if held and sent + len(chunk) > self.hold_after:
                        cut = max(0, self.hold_after - sent)
                        await resp.write(chunk[:cut])
                        sent, chunk, held = sent + cut, chunk[cut:], False
                        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 120)
                    sent += len(chunk)
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

        async def main() -> None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
            app = web.Application(client_max_size=1 << 30)
            app.router.add_route("*", "/{tail:.*}", handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(main())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def repo_tree(root: Path, repo: str) -> dict[str, bytes]:
    """Every file of repository ``repo`` under a registry root (for "nothing was stored"); files
    that vanish while it is read (an upload being finished) are left out."""
    base = root / "docker" / "registry" / "v2" / "repositories" / repo
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            path = Path(dirpath) / name
            try:
                out[str(path.relative_to(base))] = path.read_bytes()
            except FileNotFoundError:
                pass
    return out


def blob_stored(root: Path, digest: str) -> bool:
    hexd = digest.split(":", 1)[1]
    return (root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data").exists()


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def stop_all(regs: Iterator[RunningRegistry]) -> None:
    for reg in regs:
        reg.stop()
