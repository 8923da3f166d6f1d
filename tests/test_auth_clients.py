"""Real clients through real auth: skopeo and oras-py against our registry process with our token
server, set up exactly as docs/auth.md says (its CLI commands and its YAML block); skopeo with
htpasswd; and distribution 2.8.2 accepting our token server's tokens.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fixtures_registry import REFERENCE_BINARY, make_image, sha256
from helpers import ROOT, free_port, require_tool, stop_process, wait_http
from test_proxy import containerd  # noqa: F401  (fixture: a containerd daemon)
from test_skopeo import read_oci_layout, write_oci_layout

PASSWORDS = {"admin": "admin-pw-1", "alice": "alice-pw-2", "reader": "reader-pw-3", "ci": "ci-pw-4"}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "registry", *args], input=stdin, capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def docs_config_block() -> str:
    text = (ROOT / "docs" / "auth.md").read_text()
    m = re.search(r"<!-- tests/test_auth_clients.py starts a registry from this very block -->\n```yaml\n(.*?)```",
                  text, re.S)
    assert m, "docs/auth.md lost its configuration block"
    return m.group(1)


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    root: Path
    log: Path
    config: Path
    etc: Path

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


def start(cmd: list[str], port: int, workdir: Path, name: str, root: Path, config: Path, etc: Path) -> Server:
    log = workdir / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    server = Server(proc, port, root, log, config, etc)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", timeout=30, proc=proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"{name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
    return server


def make_users_and_key(etc: Path) -> None:
    etc.mkdir(parents=True, exist_ok=True)
    cli("auth", "create-key", "--key", str(etc / "token.key"), "--cert", str(etc / "token.crt"))
    for user, password in PASSWORDS.items():
        cli("auth", "add-user", str(etc / "htpasswd"), user, "--password-stdin", "--cost", "4", stdin=password + "\n")


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Our registry + token server, configured from docs/auth.md with local paths and a free port."""
    work = tmp_path_factory.mktemp("token-registry")
    etc, data, state = work / "etc", work / "data", work / "state"
    make_users_and_key(etc)
    port = free_port()
    text = (docs_config_block()
            .replace("/etc/registry/", f"{etc}/")
            .replace("/var/lib/registry-auth/", f"{state}/")
            .replace("/var/lib/registry", str(data))
            .replace("https://registry.example.com/auth/token", f"http://127.0.0.1:{port}/auth/token")
            .replace("0.0.0.0:5000", f"127.0.0.1:{port}"))
    config = work / "config.yml"
    config.write_text(text)
    server = start([sys.executable, "-m", "registry", "serve", str(config)], port, work, "ours", data, config, etc)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def skopeo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tool("skopeo", hint="`make apt-deps` installs it")
    home = tmp_path_factory.mktemp("skopeo-auth-home")
    (home / "auth.json").write_text("{}")
    (home / "registries.conf").write_text("unqualified-search-registries = []\n")
    env = _env()
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"),
               CONTAINERS_REGISTRIES_CONF=str(home / "registries.conf"), TMPDIR=str(home), XDG_RUNTIME_DIR=str(home))
    return env


def skopeo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, env=env, timeout=180)


def push(env, layout: Path, hostport: str, ref: str, creds: str | None) -> subprocess.CompletedProcess[str]:
    args = ["copy", "--dest-tls-verify=false", "--preserve-digests"]
    if creds:
        args += ["--dest-creds", creds]
    return skopeo(env, *args, f"oci:{layout}:v1", f"docker://{hostport}/{ref}")


def pull(env, hostport: str, ref: str, layout: Path, creds: str | None) -> subprocess.CompletedProcess[str]:
    args = ["copy", "--src-tls-verify=false"]
    if creds:
        args += ["--src-creds", creds]
    return skopeo(env, *args, f"docker://{hostport}/{ref}", f"oci:{layout}:v1")


def repositories(root: Path) -> set[str]:
    base = root / "docker" / "registry" / "v2" / "repositories"
    return {str(p.parent.relative_to(base)) for p in base.rglob("_manifests")} if base.exists() else set()


def _creds(user: str) -> str:
    return f"{user}:{PASSWORDS[user]}"


def test_skopeo_push_pull_through_the_token_flow(token_registry, skopeo_env, tmp_path):
    image = make_image("oci", label="auth-skopeo")
    src = tmp_path / "src"
    write_oci_layout(src, image, "v1")
    r = push(skopeo_env, src, token_registry.hostport, "alice/app:1.0", _creds("alice"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = pull(skopeo_env, token_registry.hostport, "alice/app:1.0", out, _creds("alice"))
    assert r.returncode == 0, r.stderr
    digest, manifest, blobs = read_oci_layout(out, "v1")
    assert digest == image.digest and manifest == image.manifest
    for d, data in image.blobs.items():
        assert blobs[d] == data and sha256(data) == d
    # another user may not read alice's personal namespace
    r = pull(skopeo_env, token_registry.hostport, "alice/app:1.0", tmp_path / "out2", _creds("reader"))
    assert r.returncode != 0 and "denied" in r.stderr, r.stderr
    # skopeo inspect with a wrong password fails at the token server
    r = skopeo(skopeo_env, "inspect", "--tls-verify=false", "--creds", "alice:wrong",
               f"docker://{token_registry.hostport}/alice/app:1.0")
    assert r.returncode != 0 and re.search(r"401|unauthorized", r.stderr, re.I), r.stderr
    # no secret in the server's log
    log = token_registry.log.read_text(errors="replace")
    assert all(p not in log for p in PASSWORDS.values())


def test_pull_only_user_is_refused_a_push(token_registry, skopeo_env, tmp_path):
    image = make_image("oci", label="auth-reader")
    src = tmp_path / "src"
    write_oci_layout(src, image, "v1")
    before = repositories(token_registry.root)
    r = push(skopeo_env, src, token_registry.hostport, "team/tool:1", _creds("reader"))
    assert r.returncode != 0
    assert re.search(r"denied|unauthorized|403|401", r.stderr, re.I), r.stderr
    assert repositories(token_registry.root) == before
    blobs_dir = token_registry.root / "docker" / "registry" / "v2" / "blobs" / "sha256"
    for d in image.blobs:
        assert not (blobs_dir / d[7:9] / d[7:] / "data").exists(), "a refused push left a blob behind"
    # ci may push to team/, and everyone signed in may then pull it; anonymous may not
    assert push(skopeo_env, src, token_registry.hostport, "team/tool:1", _creds("ci")).returncode == 0
    assert pull(skopeo_env, token_registry.hostport, "team/tool:1", tmp_path / "o1", _creds("alice")).returncode == 0
    assert pull(skopeo_env, token_registry.hostport, "team/tool:1", tmp_path / "o2", None).returncode != 0


def test_anonymous_pull_of_public_images(token_registry, skopeo_env, tmp_path):
    image = make_image("oci", label="auth-public")
    src = tmp_path / "src"
    write_oci_layout(src, image, "v1")
    assert push(skopeo_env, src, token_registry.hostport, "public/tools:latest", _creds("admin")).returncode == 0
    r = pull(skopeo_env, token_registry.hostport, "public/tools:latest", tmp_path / "out", None)
    assert r.returncode == 0, r.stderr
    assert push(skopeo_env, src, token_registry.hostport, "public/tools:mine", None).returncode != 0


def test_cli_test_token_works_with_curl_like_requests(token_registry):
    import urllib.request
    token = cli("auth", "token", "-c", str(token_registry.config), "--account", "alice",
                "--scope", "repository:alice/app:pull").stdout.strip()
    req = urllib.request.Request(f"http://{token_registry.hostport}/v2/alice/app/tags/list",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.load(resp)["name"] == "alice/app"
    jwks = json.loads(cli("auth", "jwks", "-c", str(token_registry.config)).stdout)
    with urllib.request.urlopen(f"http://{token_registry.hostport}/.well-known/jwks.json", timeout=10) as resp:
        assert json.load(resp) == jwks


def test_oras_push_pull_through_the_token_flow(token_registry, tmp_path, monkeypatch):
    """oras-py reuses its first token and asks for a new one only after a 403: its first request is a
    HEAD (pull scope), so pushing works only because, by default, a token granting something but not
    the scope asked for gets 403. One client pushing to a second repository re-asks the same way."""
    import oras.client

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / ".docker"))
    monkeypatch.chdir(tmp_path)
    artifact = tmp_path / "artifact.txt"
    artifact.write_bytes(b"an artifact pushed by oras-py through the token flow\n" * 100)
    client = oras.client.OrasClient(hostname=token_registry.hostport, insecure=True)
    client.auth.set_basic_auth("alice", PASSWORDS["alice"])
    target = f"{token_registry.hostport}/alice/artifact:v1"
    resp = client.push(files=["artifact.txt"], target=target)
    assert resp.status_code == 201, resp.text
    out = tmp_path / "pulled"
    puller = oras.client.OrasClient(hostname=token_registry.hostport, insecure=True)
    puller.auth.set_basic_auth("alice", PASSWORDS["alice"])
    files = puller.pull(target=target, outdir=str(out))
    assert [Path(f).read_bytes() for f in files] == [artifact.read_bytes()]
    log = token_registry.log.read_text(errors="replace")
    assert re.search(r'"POST /v2/alice/artifact/blobs/uploads/ HTTP/1.1" 403', log), "oras never needed a 403"
    # the same client (its token is for alice/artifact) on another repository
    other = f"{token_registry.hostport}/alice/other:v1"
    resp = client.push(files=["artifact.txt"], target=other)
    assert resp.status_code == 201, resp.text
    files = puller.pull(target=other, outdir=str(tmp_path / "pulled-other"))
    assert [Path(f).read_bytes() for f in files] == [artifact.read_bytes()]


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """podman with its own storage, registries.conf and auth file under a temporary HOME."""
    require_tool("podman", hint="`make apt-deps` installs it")
    home = tmp_path_factory.mktemp("podman-home")
    (home / "registries.conf").write_text("unqualified-search-registries = []\n")
    (home / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{home}/graph"\n'
                                       f'runroot = "{home}/run"\n')
    env = _env()
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"), XDG_RUNTIME_DIR=str(home),
               CONTAINERS_REGISTRIES_CONF=str(home / "registries.conf"), TMPDIR=str(home),
               CONTAINERS_STORAGE_CONF=str(home / "storage.conf"))
    return env


def test_podman_search_with_token_auth(token_registry, skopeo_env, podman_env, tmp_path):
    """podman search asks its first token for no scope (containers/image's search client has none),
    then GETs /v2/_catalog: it asks for ``registry:catalog:*`` only after a 401 that says
    ``error="insufficient_scope"``, which is what the default answers a token granting nothing."""
    import base64
    image = make_image("oci", label="auth-search")
    write_oci_layout(tmp_path / "src", image, "v1")
    assert push(skopeo_env, tmp_path / "src", token_registry.hostport, "alice/searchable:1", _creds("alice")).returncode == 0

    def search(user: str) -> subprocess.CompletedProcess[str]:
        auth = base64.b64encode(_creds(user).encode()).decode()
        (tmp_path / f"auth-{user}.json").write_text(json.dumps({"auths": {token_registry.hostport: {"auth": auth}}}))
        return subprocess.run(["podman", "search", "--tls-verify=false", "--authfile", str(tmp_path / f"auth-{user}.json"),
                               "--format", "{{.Name}}", f"{token_registry.hostport}/searchable"],
                              capture_output=True, text=True, env=podman_env, timeout=120)

    r = search("admin")  # the docs' rules give admin registry:catalog:*
    assert r.returncode == 0, r.stderr
    assert f"{token_registry.hostport}/alice/searchable" in r.stdout.split(), r.stdout
    log = token_registry.log.read_text(errors="replace")
    assert re.search(r'"GET /v2/_catalog HTTP/1.1" 401', log) and re.search(r'"GET /v2/_catalog HTTP/1.1" 200', log)
    # alice has no catalog rule: refused, with the token server asked the same way (no hang, no 500)
    r = search("alice")
    assert r.returncode != 0 and re.search(r"401|unauthorized", r.stderr, re.I), r.stderr


def test_containerd_pulls_through_the_token_flow(token_registry, skopeo_env, containerd, tmp_path):
    """containerd (``ctr content fetch``, the daemon's own resolver) against the default challenge
    status: it answers the 401 challenge with a token for the scope it names (through the token
    server's OAuth2 form), and a wrong password is refused there, not with a hang or a 500."""
    sock, _work = containerd
    image = make_image("oci", label="auth-containerd")
    write_oci_layout(tmp_path / "src", image, "v1")
    assert push(skopeo_env, tmp_path / "src", token_registry.hostport, "alice/ctr:v1", _creds("alice")).returncode == 0
    ref = f"{token_registry.hostport}/alice/ctr:v1"

    def fetch(user: str, password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", sock, "content", "fetch", "--plain-http", "--all-platforms",
                               "--user", f"{user}:{password}", ref], capture_output=True, text=True, timeout=180)

    r = fetch("alice", "wrong-password")
    assert r.returncode != 0 and re.search(r"401|unauthorized", r.stderr, re.I), r.stderr[-2000:]
    r = fetch("alice", PASSWORDS["alice"])
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    content = subprocess.run(["ctr", "--address", sock, "content", "ls", "-q"], capture_output=True, text=True,
                             timeout=60)
    assert {image.digest, *image.blobs} <= set(content.stdout.split()), content.stdout
    log = token_registry.log.read_text(errors="replace")
    # it resolves with HEAD, gets the challenge, and takes its token through the OAuth2 form
    assert re.search(r'"HEAD /v2/alice/ctr/manifests/v1 HTTP/1.1" 401 .*"containerd/', log), "no challenge seen"
    assert re.search(r'"POST /auth/token HTTP/1.1" 200 .*"containerd/', log), "no token issued to containerd"


@pytest.fixture
def htpasswd_registry(tmp_path: Path) -> Iterator[Server]:
    etc, data = tmp_path / "etc", tmp_path / "data"
    make_users_and_key(etc)
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "storage": {"filesystem": {"rootdirectory": str(data)}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "htpasswd-test"},
        "auth": {"htpasswd": {"realm": "test-realm", "path": str(etc / "htpasswd")}},
    }))
    server = start([sys.executable, "-m", "registry", "serve", str(config)], port, tmp_path, "htpasswd", data,
                   config, etc)
    yield server
    server.stop()


def test_skopeo_with_htpasswd(htpasswd_registry, skopeo_env, tmp_path):
    image = make_image("oci", label="auth-htpasswd")
    src = tmp_path / "src"
    write_oci_layout(src, image, "v1")
    assert push(skopeo_env, src, htpasswd_registry.hostport, "any/thing:1", None).returncode != 0
    assert push(skopeo_env, src, htpasswd_registry.hostport, "any/thing:1", "alice:wrong").returncode != 0
    assert repositories(htpasswd_registry.root) == set()
    r = push(skopeo_env, src, htpasswd_registry.hostport, "any/thing:1", _creds("alice"))
    assert r.returncode == 0, r.stderr
    r = pull(skopeo_env, htpasswd_registry.hostport, "any/thing:1", tmp_path / "out", _creds("reader"))
    assert r.returncode == 0, r.stderr
    assert read_oci_layout(tmp_path / "out", "v1")[0] == image.digest


def test_distribution_accepts_our_tokens(tmp_path, skopeo_env):
    """distribution 2.8.2 as the registry, our stand-alone token server as its realm (x5c chain)."""
    require_tool(REFERENCE_BINARY, hint="`make apt-deps` installs docker-registry")
    etc = tmp_path / "etc"
    make_users_and_key(etc)
    ts_port, reg_port = free_port(), free_port()
    ts_config = tmp_path / "tokenserver.yml"
    ts_config.write_text(yaml.safe_dump({"tokenserver": {
        "issuer": "interop-issuer", "service": "interop-registry", "users": str(etc / "htpasswd"),
        "key": str(etc / "token.key"), "certificate": str(etc / "token.crt"),
        "rules": [{"account": "*", "name": "${account}/**", "actions": ["pull", "push"]}],
    }}))
    token_server = subprocess.Popen(
        [sys.executable, "-m", "registry", "auth", "serve-token", "-c", str(ts_config), "--addr", f"127.0.0.1:{ts_port}"],
        stdout=open(tmp_path / "ts.log", "wb"), stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    reg_config = tmp_path / "reference.yml"
    reg_config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{reg_port}", "secret": "interop"},
        "health": {"storagedriver": {"enabled": False}},
        "auth": {"token": {"realm": f"http://127.0.0.1:{ts_port}/auth/token", "service": "interop-registry",
                           "issuer": "interop-issuer", "rootcertbundle": str(etc / "token.crt")}},
    }))
    reference = None
    try:
        wait_http(f"http://127.0.0.1:{ts_port}/auth/token", timeout=30, proc=token_server)
        reference = start([REFERENCE_BINARY, "serve", str(reg_config)], reg_port, tmp_path, "reference",
                          tmp_path / "data", reg_config, etc)
        image = make_image("oci", label="auth-interop")
        write_oci_layout(tmp_path / "src", image, "v1")
        r = push(skopeo_env, tmp_path / "src", reference.hostport, "alice/app:1", _creds("alice"))
        assert r.returncode == 0, r.stderr + (tmp_path / "reference.log").read_text(errors="replace")[-2000:]
        assert push(skopeo_env, tmp_path / "src", reference.hostport, "admin/app:1", _creds("alice")).returncode != 0
        r = pull(skopeo_env, reference.hostport, "alice/app:1", tmp_path / "out", _creds("alice"))
        assert r.returncode == 0, r.stderr
        assert read_oci_layout(tmp_path / "out", "v1")[0] == image.digest
        # the stand-alone token server answers a malformed login briefly and logs no credential
        import base64
        import socket
        cred = base64.b64encode(_creds("alice").encode())
        with socket.create_connection(("127.0.0.1", ts_port), timeout=10) as sock:
            sock.sendall(b"GET /auth/token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + cred[:7] + b"\x00"
                         + cred[7:] + b"\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.0 400")
        import time
        time.sleep(0.3)
        ts_log = (tmp_path / "ts.log").read_text(errors="replace")
        assert "rejected a malformed HTTP request" in ts_log and "Traceback" not in ts_log
        assert PASSWORDS["alice"] not in ts_log and cred[7:15].decode() not in ts_log
    finally:
        if reference is not None:
            reference.stop()
        token_server.terminate()
        token_server.wait(timeout=10)


def test_readme_shows_the_same_configuration_as_the_docs():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- the same block as docs/auth.md \(tests/test_auth_clients.py checks\) -->\n```yaml\n(.*?)```",
                  readme, re.S)
    assert m and m.group(1) == docs_config_block()


def test_skopeo_identity_token_uses_the_oauth2_refresh_grant(token_registry, tmp_path):
    """containers/image with an ``identitytoken`` in auth.json POSTs grant_type=refresh_token with
    client_id=containers/image: a refresh token bound to that client works, one bound to another
    client or revoked does not."""
    import base64
    import urllib.request
    require_tool("skopeo", hint="`make apt-deps` installs it")

    def refresh_token(client_id: str) -> str:
        req = urllib.request.Request(
            f"http://{token_registry.hostport}/auth/token?service=registry.example.com&offline_token=true"
            f"&client_id={client_id}",
            headers={"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)["refresh_token"]

    image = make_image("oci", label="auth-identity")
    write_oci_layout(tmp_path / "src", image, "v1")

    def push_with(identity: str, tag: str) -> subprocess.CompletedProcess[str]:
        home = tmp_path / f"home-{tag}"
        home.mkdir()
        (home / "auth.json").write_text(json.dumps({"auths": {token_registry.hostport: {
            "auth": base64.b64encode(b"<token>:").decode(), "identitytoken": identity}}}))
        env = _env()
        env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"), TMPDIR=str(home),
                   XDG_RUNTIME_DIR=str(home))
        return skopeo(env, "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1",
                      f"docker://{token_registry.hostport}/alice/identity:{tag}")

    good = refresh_token("containers/image")
    r = push_with(good, "ok")
    assert r.returncode == 0, r.stderr
    assert '"POST /auth/token HTTP/1.1" 200' in token_registry.log.read_text(errors="replace")
    assert push_with(refresh_token("docker"), "other-client").returncode != 0
    cli("auth", "revoke", "-c", str(token_registry.config), "--token-stdin", stdin=good + "\n")
    assert push_with(good, "revoked").returncode != 0
