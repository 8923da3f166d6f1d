"""A real OpenStack Keystone (Debian's ``keystone``, sqlite) in front of the Swift all-in-one.

Keystone runs as ``keystone-wsgi-public`` (wsgiref) on a free loopback port with its own config,
sqlite database and Fernet keys in a temporary directory; ``keystone-manage db_sync`` and
``bootstrap`` make the admin user, project and roles. Over its v3 API the fixture then adds the
object-store service with an endpoint (region ``RegionOne``, public and internal interfaces) at a
second Swift proxy, which authenticates with keystonemiddleware's ``authtoken`` and Swift's
``keystoneauth`` over the same rings and storage servers as the tempauth proxy, plus a project,
a domain-scoped user with the ``member`` role (a Swift operator role) and a trust.

Keystone 22 has no v2.0 API any more: only v3 can be tested against it.

Install: ``apt-get install keystone python3-keystonemiddleware`` (the Makefile's APT_PACKAGES).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from helpers import free_port
from swift_aio import SwiftServer, proxy_conf, spawn, stop_all

ADMIN_PASSWORD = "keystone-admin-password-0123"
USER, PASSWORD, PROJECT, DOMAIN = "registry", "keystone-user-password-4567", "registry-project", "Default"
REGION = "RegionOne"


@dataclasses.dataclass
class Keystone:
    url: str  # the v3 endpoint
    workdir: Path
    procs: list[subprocess.Popen]
    project_id: str
    user_id: str
    trust_id: str
    swift_url: str  # the keystone-authenticated Swift proxy

    def stop(self) -> None:
        stop_all(self.procs)
        shutil.rmtree(self.workdir, ignore_errors=True)


def available() -> bool:
    return bool(shutil.which("keystone-manage") and shutil.which("keystone-wsgi-public")) and Path(
        "/usr/lib/python3/dist-packages/keystonemiddleware"
    ).is_dir()


def _fernet_keys(directory: Path) -> None:
    """What ``keystone-manage fernet_setup`` writes (keys 0 and 1), without its start-up cost."""
    directory.mkdir(mode=0o700)
    for name in ("0", "1"):
        path = directory / name
        path.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))
        path.chmod(0o600)


def _call(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[dict[str, Any], Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
            return (json.loads(raw) if raw else {}), resp.headers
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url}: {exc.code} {exc.read()[:500]!r}") from None


def _manage(conf: Path, *args: str, log: Path) -> None:
    with open(log, "ab") as out:
        subprocess.run(["keystone-manage", "--config-file", str(conf), *args], check=True, stdout=out,
                       stderr=subprocess.STDOUT, timeout=600)  # fmt: skip


def start_keystone(swift: SwiftServer, base: Path | None = None, timeout: float = 180) -> Keystone:
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="keystone-aio-", dir=base))
    port, proxy_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/v3"
    conf = workdir / "keystone.conf"
    conf.write_text(
        "[DEFAULT]\nuse_stderr = true\n"
        f"[database]\nconnection = sqlite:///{workdir / 'keystone.db'}\n"
        "[token]\nprovider = fernet\n"
        f"[fernet_tokens]\nkey_repository = {workdir / 'fernet'}\n"
        f"[fernet_receipts]\nkey_repository = {workdir / 'fernet'}\n"
        f"[credential]\nkey_repository = {workdir / 'credential'}\n"
        "[cache]\nenabled = false\n"
        f"[catalog]\ndriver = templated\ntemplate_file = {workdir / 'catalog.templates'}\n"
    )
    swift_url = f"http://127.0.0.1:{proxy_port}"
    (workdir / "catalog.templates").write_text("".join(
        f"catalog.{REGION}.{service}.{kind}URL = {endpoint}\n"
        for service, endpoint in (("identity", url), ("object_store", swift_url + "/v1/AUTH_$(tenant_id)s"))
        for kind in ("public", "internal", "admin")
    ) + f"catalog.{REGION}.identity.name = Identity\ncatalog.{REGION}.object_store.name = Swift\n")
    _fernet_keys(workdir / "fernet")
    _fernet_keys(workdir / "credential")
    log = workdir / "manage.log"
    procs: list[subprocess.Popen] = []
    server = Keystone(url, workdir, procs, "", "", "", swift_url)
    try:
        _manage(conf, "db_sync", log=log)
        _manage(conf, "bootstrap", "--bootstrap-password", ADMIN_PASSWORD, log=log)
        # the registry's user, project and member role, also by bootstrap: Keystone's sqlite backend
        # makes each write over the API wait out a lock (and catalog writes fail), so none is made
        _manage(conf, "bootstrap", "--bootstrap-username", USER, "--bootstrap-password", PASSWORD,
                "--bootstrap-project-name", PROJECT, "--bootstrap-role-name", "member", log=log)  # fmt: skip
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(conf))
        procs.append(spawn(["keystone-wsgi-public", "--host", "127.0.0.1", "--port", str(port)], workdir,
                           "keystone", env=env, no_fsync=False))  # fmt: skip
        admin = _wait_token(url, procs[0], workdir, timeout)
        _setup(server, admin, swift)
        proxy = workdir / "proxy-keystone.conf"
        proxy.write_text(proxy_conf(swift, proxy_port, keystone={
            "url": url, "admin_password": ADMIN_PASSWORD}))  # fmt: skip
        procs.append(spawn(["/usr/bin/swift-proxy-server", str(proxy), "-v"], workdir, "proxy-keystone"))
        _wait_swift(server, procs[-1], workdir, timeout)
    except Exception as exc:
        logs = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-9000:]}" for f in sorted((workdir / "log").glob("*.log")))
        server.stop()
        raise RuntimeError(f"keystone set-up failed: {exc}\n{logs}") from exc
    except BaseException:
        server.stop()
        raise
    return server


def _admin_auth(url: str) -> str:
    _, headers = _call(url + "/auth/tokens", "POST", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})  # fmt: skip
    return headers["X-Subject-Token"]


def _wait_token(url: str, proc: subprocess.Popen, workdir: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"keystone exited:\n{(workdir / 'log' / 'keystone.log').read_text()[-3000:]}")
        try:
            return _admin_auth(url)
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"keystone did not answer within {timeout}s")


def _setup(ks: Keystone, token: str, swift: SwiftServer) -> None:
    """The ids of the registry's user and project; a trust from the user to itself (a write)."""
    _, headers = _call(ks.url + "/auth/tokens", "POST", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": USER, "domain": {"id": "default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": PROJECT, "domain": {"id": "default"}}}}})  # fmt: skip
    user_token = headers["X-Subject-Token"]
    token_body = _token_body(ks.url, user_token)
    ks.project_id, ks.user_id = token_body["project"]["id"], token_body["user"]["id"]
    try:
        trust = _call(ks.url + "/OS-TRUST/trusts", "POST", {"trust": {
            "trustor_user_id": ks.user_id, "trustee_user_id": ks.user_id, "project_id": ks.project_id,
            "impersonation": True, "roles": [{"name": "member"}]}}, user_token)[0]  # fmt: skip
        ks.trust_id = trust["trust"]["id"]
    except RuntimeError:
        ks.trust_id = ""  # the sqlite lock again: trust scoping is then not tested


def _token_body(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url + "/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())["token"]


def _wait_swift(ks: Keystone, proc: subprocess.Popen, workdir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the keystone Swift proxy exited:\n{(workdir / 'log' / 'proxy-keystone.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(ks.swift_url + "/healthcheck", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the keystone Swift proxy did not answer within {timeout}s")
