"""Fixtures that run registries as real server processes, and a small synchronous HTTP client.

Our registry (``python -m registry serve CONFIG``) and the reference registry (Debian's
``docker-registry``, distribution 2.8.2) are started on free loopback ports with their own config
files, both on the filesystem driver and on ONE shared root directory, so the interop tests can push
through one and pull through the other. Registered as a plugin from ``tests/conftest.py``.

Switches for manual runs (CI uses the defaults):
- ``OUR_REGISTRY_WORKERS=N``: our registry with ``http.workers: N`` (forked workers on one port).
- ``OUR_REGISTRY_PREFIX=/registry/``: our registry serves the API under ``http.prefix``; the test client
  prepends it (interop with the reference, which has no prefix here, is then skipped).
- ``OUR_REGISTRY_STORAGE=s3|oss|gcs|azure|swift``: our registry on that driver's emulator (tests/emulators.py; swift: a real Swift)
  instead of the shared directory; the interop tests then skip. E.g.
  ``OUR_REGISTRY_STORAGE=s3 pytest tests/test_conformance.py tests/test_skopeo.py``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest

from helpers import ROOT, free_port, require_tool, stop_process, wait_http

REFERENCE_BINARY = "/usr/bin/docker-registry"
#: one secret for both registries: upload state tokens are HMAC-signed with it
SHARED_SECRET = "interop-test-secret-0123456789abcdef"


# --------------------------------------------------------------------------- HTTP client


@dataclass
class Response:
    """One HTTP answer: status, case-insensitive (multi-valued) headers, the whole body."""

    status: int
    headers: Message
    body: bytes
    method: str = "GET"
    #: the redirect answers that led here (the registry's own 307 first), empty when not redirected
    history: list["Response"] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> object:
        return json.loads(self.body)

    def location_path(self) -> str:
        """``Location`` as a path with query (reggie's GetRelativeLocation): scheme and host dropped."""
        loc = self.headers.get("Location") or ""
        parts = urllib.parse.urlsplit(loc)
        return urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))

    def error_codes(self) -> list[str]:
        try:
            return [e["code"] for e in json.loads(self.body)["errors"]]
        except (ValueError, KeyError, TypeError):
            return []

    def __repr__(self) -> str:  # shown by pytest on a failed assert
        return f"<{self.method} {self.status} {dict(self.headers.items())} {self.body[:300]!r}>"


@dataclass
class Client:
    """A blocking HTTP/1.1 client for one registry: no redirects followed, nothing hidden."""

    host: str
    port: int
    timeout: float = 30.0
    default_headers: dict[str, str] = field(default_factory=dict)
    #: ``http.prefix`` of the registry (e.g. "/registry"): prepended to paths that do not carry it yet
    prefix: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        query: Mapping[str, str] | list[tuple[str, str]] | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        """Send one request. ``path`` may already carry a query; ``query`` is appended to it.
        Like Go's and most registry clients, a GET or HEAD follows redirects (a storage driver's 307 to a
        presigned URL), to another host if need be; nothing else is followed."""
        if path.startswith("http://") or path.startswith("https://"):
            parts = urllib.parse.urlsplit(path)
            path = urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
        if query:
            extra = urllib.parse.urlencode(query)
            path += ("&" if "?" in path else "?") + extra
        if self.prefix and not path.startswith(self.prefix + "/"):
            path = self.prefix + path
        items = list(self.default_headers.items())
        items += list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        host, port = self.host, self.port
        history: list[Response] = []
        for _ in range(5):
            resp = self._send(host, port, method, path, items, body)
            resp.history = history
            location = resp.headers.get("Location")
            if not (follow_redirects and method in ("GET", "HEAD") and resp.status in (301, 302, 303, 307, 308)
                    and location):
                return resp
            history = history + [resp]
            target = urllib.parse.urlsplit(urllib.parse.urljoin(f"http://{host}:{port}{path}", location))
            host, port = target.hostname or host, target.port or 80
            path = urllib.parse.urlunsplit(("", "", target.path, target.query, ""))
        return resp

    def _send(self, host: str, port: int, method: str, path: str, items: list[tuple[str, str]],
              body: bytes | None) -> Response:
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            names = {k.lower() for k, _ in items}
            for k, v in items:
                conn.putheader(k, v)
            if body is not None and "content-length" not in names and "transfer-encoding" not in names:
                conn.putheader("Content-Length", str(len(body)))
            elif body is None and method in ("POST", "PUT", "PATCH") and "content-length" not in names \
                    and "transfer-encoding" not in names:
                conn.putheader("Content-Length", "0")
            conn.endheaders()
            if body:
                conn.send(body)
            resp = conn.getresponse()
            try:
                data = resp.read()
            except http.client.IncompleteRead as exc:  # a Content-Length the server did not honour
                data = exc.partial
            return Response(resp.status, resp.msg, data, method)
        finally:
            conn.close()

    # Conveniences used by several test files -------------------------------------------------

    def push_blob(self, name: str, data: bytes, digest: str | None = None) -> Response:
        """POST then one PUT ?digest= with the body (the monolithic upload every registry supports)."""
        digest = digest or sha256(data)
        start = self.request("POST", f"/v2/{name}/blobs/uploads/")
        assert start.status == 202, start
        return self.request(
            "PUT", start.location_path(), query={"digest": digest},
            headers={"Content-Type": "application/octet-stream"}, body=data,
        )

    def put_manifest(self, name: str, ref: str, body: bytes, media_type: str) -> Response:
        return self.request("PUT", f"/v2/{name}/manifests/{ref}", headers={"Content-Type": media_type}, body=body)

    def get_manifest(self, name: str, ref: str, accept: list[str] | None = None, method: str = "GET") -> Response:
        accept = accept or ALL_MANIFEST_TYPES
        return self.request(method, f"/v2/{name}/manifests/{ref}", headers=[("Accept", a) for a in accept])


ALL_MANIFEST_TYPES = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- server processes


@dataclass
class RunningRegistry:
    """A registry process on 127.0.0.1:port serving ``root``; ``client`` talks to it."""

    kind: str
    port: int
    root: Path
    proc: subprocess.Popen
    log_path: Path
    config_path: Path
    prefix: str = ""

    @property
    def client(self) -> Client:
        return Client("127.0.0.1", self.port, prefix=self.prefix)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc)


def _clean_env() -> dict[str, str]:
    """Environment for a child registry: no REGISTRY_* overrides leaking in from the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def _config_yaml(root: Path, port: int, *, reference: bool, http_extra: str = "",
                 storage: Mapping[str, object] | None = None, maintenance: Mapping[str, object] | None = None) -> str:
    """The config file: filesystem storage on ``root`` unless ``storage`` names another driver block."""
    import yaml

    driver_block = dict(storage) if storage else {"filesystem": {"rootdirectory": str(root)}}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "error" if reference else "warn", "accesslog": {"disabled": True}},
        "storage": {**driver_block, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}, **(maintenance or {})}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": SHARED_SECRET,
                 **(yaml.safe_load(http_extra) if http_extra.strip() else {})},
    }
    if reference:
        config["health"] = {"storagedriver": {"enabled": False}}
    return yaml.safe_dump(config, sort_keys=False)


def start_registry(kind: str, root: Path, workdir: Path, extra_config: str = "", http_extra: str = "",
                   storage: Mapping[str, object] | None = None, maintenance: Mapping[str, object] | None = None,
                   name: str | None = None) -> RunningRegistry:
    """Start ``kind`` ("ours" or "reference") on a free port over ``root``; wait for GET /v2/.
    ``extra_config`` is appended to the YAML (top-level sections the default config does not have);
    ``http_extra`` holds more ``http:`` keys, one per line (e.g. ``workers: 2``); ``storage`` replaces the
    filesystem driver block (e.g. ``{"s3": {...}}``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / f"{name or kind}-config.yml"
    config.write_text(_config_yaml(root, port, reference=kind == "reference", http_extra=http_extra,
                                   storage=storage, maintenance=maintenance) + extra_config)
    log_path = workdir / f"{name or kind}.log"
    log = open(log_path, "wb")
    if kind == "reference":
        cmd = [REFERENCE_BINARY, "serve", str(config)]
    else:
        cmd = [sys.executable, "-m", "registry", "serve", str(config)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_clean_env(), cwd=ROOT)
    log.close()
    prefix = ""
    if http_extra.strip():
        import yaml

        prefix = str((yaml.safe_load(http_extra) or {}).get("prefix", "")).rstrip("/")
    running = RunningRegistry(kind, port, root, proc, log_path, config, prefix)
    try:
        wait_http(f"{running.url}{prefix}/v2/", timeout=30, proc=proc)
    except Exception:
        running.stop()
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"{kind} registry exited with {proc.returncode}:\n{running.log_tail()}")
    return running


def start_or_fail(kind: str, root: Path, workdir: Path, extra_config: str = "", http_extra: str = "",
                  storage: Mapping[str, object] | None = None, maintenance: Mapping[str, object] | None = None,
                  name: str | None = None) -> RunningRegistry:
    """:func:`start_registry`; ``maintenance`` adds ``storage.maintenance`` keys (e.g. ``gc``), ``name``
    names its config and log files (for several instances in one directory)."""
    try:
        return start_registry(kind, root, workdir, extra_config, http_extra, storage, maintenance, name)
    except Exception as exc:  # show the server's own words, not just a timeout
        log = workdir / f"{name or kind}.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"could not start the {kind} registry: {exc}\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def shared_registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one storage root both registries serve (distribution's layout under docker/registry/v2)."""
    return tmp_path_factory.mktemp("registry-root")


#: ``OUR_REGISTRY_STORAGE`` value -> (emulator fixture, params function in tests/emulators.py, driver name)
CLOUD_STORAGE = {
    "s3": ("moto_emulator", "s3_params", "s3"),
    "oss": ("moto_emulator", "oss_params", "oss"),
    "gcs": ("gcs_emulator", "gcs_params", "gcs"),
    "azure": ("azurite_emulator", "azure_params", "azure"),
    "swift": ("swift_server", "swift_params", "swift"),
}


def our_storage() -> str:
    """The storage our registry fixture uses: filesystem (default, shared with the reference) or a cloud
    driver on its emulator (``OUR_REGISTRY_STORAGE=s3|oss|gcs|azure|swift``; the interop tests then skip)."""
    return os.environ.get("OUR_REGISTRY_STORAGE", "filesystem")


@pytest.fixture(scope="session")
def our_registry(
    shared_registry_root: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningRegistry]:
    """Our registry as a real server process (filesystem storage, deletes enabled).
    ``OUR_REGISTRY_WORKERS=N`` runs it with ``http.workers: N`` (forked workers sharing the port);
    ``OUR_REGISTRY_STORAGE`` picks a cloud driver on its emulator instead of the shared directory."""
    workers = os.environ.get("OUR_REGISTRY_WORKERS", "")
    http_extra = f"workers: {int(workers)}\n" if workers else ""
    if os.environ.get("OUR_REGISTRY_PREFIX"):
        http_extra += f"prefix: {os.environ['OUR_REGISTRY_PREFIX']}\n"
    storage = None
    if our_storage() != "filesystem":
        import emulators

        fixture, params_fn, driver = CLOUD_STORAGE[our_storage()]
        emulator = request.getfixturevalue(fixture)
        storage = {driver: getattr(emulators, params_fn)(emulator)}
    reg = start_or_fail("ours", shared_registry_root, tmp_path_factory.mktemp("ours"), http_extra=http_extra,
                        storage=storage)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def reference_registry(
    shared_registry_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningRegistry]:
    """distribution 2.8.2 over the same root directory as ``our_registry``."""
    require_tool(REFERENCE_BINARY, hint="`make apt-deps` installs docker-registry")
    if our_storage() != "filesystem":
        pytest.skip(f"our registry runs on {our_storage()}: the reference shares only a filesystem root")
    if os.environ.get("OUR_REGISTRY_PREFIX"):
        pytest.skip("our registry runs under http.prefix: the interop tests address both registries alike")
    reg = start_or_fail("reference", shared_registry_root, tmp_path_factory.mktemp("reference"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def skopeo_binary() -> str:
    return require_tool("skopeo", hint="`make apt-deps` installs it")[0]


# --------------------------------------------------------------------------- test images

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def make_layer(files: Mapping[str, bytes]) -> tuple[bytes, str]:
    """A real, reproducible tar.gz layer (mtime 0, root-owned) and its diff_id (digest of the tar)."""
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            info.uname = info.gname = "root"
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=6, mtime=0), sha256(raw)


@dataclass
class Image:
    """One manifest (image or index) with every blob it needs, keyed by digest."""

    manifest: bytes
    media_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    children: list["Image"] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    def all_blobs(self) -> dict[str, bytes]:
        out = dict(self.blobs)
        for child in self.children:
            out.update(child.all_blobs())
        return out


def make_image(kind: str = "oci", arch: str = "amd64", label: str = "test", n_layers: int = 2) -> Image:
    """An image of ``kind`` "oci" or "docker" (schema 2) with ``n_layers`` distinct tar.gz layers."""
    docker = kind == "docker"
    layers = [make_layer({f"{label}/{arch}/file{i}.txt": f"{label} {arch} layer {i}\n".encode() * (i + 1),
                          f"{label}/{arch}/bin{i}": bytes(range(256)) * (4 * i + 1)})
              for i in range(n_layers)]
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(n_layers)],
    }, separators=(",", ":")).encode()
    layer_type = DOCKER_LAYER if docker else OCI_LAYER
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha256(gz), "size": len(gz)} for gz, _ in layers],
    }
    if not docker:
        body["annotations"] = {"org.opencontainers.image.title": label}
    manifest = json.dumps(body, indent=3).encode()  # an unusual indent: byte-for-byte checks mean something
    blobs = {sha256(config): config, **{sha256(gz): gz for gz, _ in layers}}
    return Image(manifest, body["mediaType"], blobs)


def make_index(kind: str = "oci", label: str = "multi", arches: tuple[str, ...] = ("amd64", "arm64")) -> Image:
    """A multi-arch OCI index or Docker manifest list over one image per architecture."""
    docker = kind == "docker"
    children = [make_image(kind, arch, label) for arch in arches]
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": [
            {"mediaType": c.media_type, "digest": c.digest, "size": len(c.manifest),
             "platform": {"architecture": arch, "os": "linux"}}
            for c, arch in zip(children, arches)
        ],
    }
    return Image(json.dumps(body, indent=2).encode(), body["mediaType"], {}, children)


def push_image(client: Client, repo: str, image: Image, tag: str | None = None) -> None:
    """Push blobs, children (by digest) and the manifest (by ``tag`` or digest); assert every step."""
    for digest, data in image.blobs.items():
        if client.request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 200:
            continue
        resp = client.push_blob(repo, data, digest)
        assert resp.status == 201, resp
    for child in image.children:
        push_image(client, repo, child)
    resp = client.put_manifest(repo, tag or image.digest, image.manifest, image.media_type)
    assert resp.status == 201, resp
    assert resp.header("Docker-Content-Digest") == image.digest, resp


def assert_pulls(client: Client, repo: str, image: Image, ref: str | None = None) -> None:
    """Pull the manifest (by ``ref`` or digest), children and blobs: byte for byte, digests equal."""
    resp = client.get_manifest(repo, ref or image.digest)
    assert resp.status == 200, resp
    assert resp.body == image.manifest, "manifest bytes differ"
    assert resp.header("Docker-Content-Digest") == image.digest, resp
    assert (resp.header("Content-Type") or "").split(";")[0] == image.media_type, resp
    head = client.get_manifest(repo, ref or image.digest, method="HEAD")
    assert head.status == 200 and head.header("Docker-Content-Digest") == image.digest, head
    for child in image.children:
        assert_pulls(client, repo, child)
    for digest, data in image.blobs.items():
        blob = client.request("GET", f"/v2/{repo}/blobs/{digest}")
        assert blob.status == 200, blob
        assert blob.body == data and sha256(blob.body) == digest, f"blob {digest} differs"


# --------------------------------------------------------------------------- Docker schema 1

SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _libtrust_key_id(public_key) -> str:
    """libtrust's key ID: base32 of the first 240 bits of SHA-256(DER SubjectPublicKeyInfo), in 4-char groups."""
    import base64

    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def make_schema1(name: str, tag: str, label: str = "schema1") -> tuple[bytes, str, dict[str, bytes]]:
    """A Docker schema 1 manifest signed the way libtrust (and so docker 1.x) signs it: an ES256 JWS whose
    protected header carries ``formatLength``/``formatTail``. Returns (signed bytes, digest Docker clients
    compute = sha256 of the payload without signatures, blobs)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    layer, _ = make_layer({f"{label}/hello.txt": f"{label} schema 1 layer\n".encode()})
    manifest = {
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(layer)}],
        "history": [{"v1Compatibility": json.dumps(
            {"id": hashlib.sha256(label.encode()).hexdigest(), "created": "2024-01-01T00:00:00Z",
             "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]}}, separators=(",", ":"))}],
    }
    payload = json.dumps(manifest, indent=3).encode()
    tail = payload[payload.rindex(b"\n}"):]  # "\n}"
    format_length = len(payload) - len(tail)
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {"crv": "P-256", "kid": _libtrust_key_id(key.public_key()), "kty": "EC",
           "x": _b64url(numbers.x.to_bytes(32, "big")), "y": _b64url(numbers.y.to_bytes(32, "big"))}
    protected = _b64url(json.dumps({"formatLength": format_length, "formatTail": _b64url(tail),
                                    "time": "2024-01-01T00:00:00Z"}, separators=(",", ":")).encode())
    signing_input = f"{protected}.{_b64url(payload)}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = {"header": {"jwk": jwk, "alg": "ES256"},
                 "signature": _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")), "protected": protected}
    signatures = json.dumps([signature], indent=3).replace("\n", "\n   ").encode()
    signed = payload[:format_length] + b',\n   "signatures": ' + signatures + tail
    return signed, sha256(payload), {sha256(layer): layer}
