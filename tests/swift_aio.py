"""A real OpenStack Swift all-in-one (Debian's packages) for the tests and the benchmark.

One memcached and the four Swift servers (account, container, object, proxy) run as plain
processes on free loopback ports, everything below one temporary directory: configs, rings
(one device, one replica, rebuilt at every start because the ports live in them), the device
directory, logs. Swift is importable only by Debian's ``/usr/bin/python3``, so the servers are
started as commands and the rings built by one ``/usr/bin/python3`` process; nothing of Swift
is imported here.

Auth is tempauth (v1): account ``test``, user ``tester``, key ``testing`` (admin of the
account, so it may set the TempURL key), at ``<proxy>/auth/v1.0``. tempauth keeps its tokens
in memcache, hence the memcached.

Install: ``apt-get install swift swift-proxy swift-account swift-container swift-object
memcached`` (the Makefile's APT_PACKAGES).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from helpers import free_port

SWIFT_PYTHON = "/usr/bin/python3"
#: Debian's eatmydata turns fsync into a no-op: a test cluster needs no durability, and the object
#: and container servers fsync on every write (three times the requests per second without)
NO_FSYNC = ["eatmydata"] if shutil.which("eatmydata") else []
SERVERS = ("account", "container", "object", "proxy")
PACKAGED_SWIFT_CONF = Path("/etc/swift/swift.conf")
USER, KEY = "test:tester", "testing"
#: the cluster's SLO limit on segments per manifest (Swift's default is 1000); lower here so
#: that the 1 GiB tests exercise nested manifests, as a 20 GB blob would on a default cluster
MAX_MANIFEST_SEGMENTS = 100

_RING_SCRIPT = """
import sys
from swift.common.ring import RingBuilder
etc, account, container, obj = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for name, port in (("account", account), ("container", container), ("object", obj)):
    builder = RingBuilder(10, 1, 1)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
                     "device": "d1", "weight": 100, "meta": ""})
    builder.rebalance()
    builder.save(f"{etc}/{name}.builder")
    builder.get_ring().save(f"{etc}/{name}.ring.gz")
"""


@dataclasses.dataclass
class SwiftServer:
    """A running all-in-one; ``auth_url`` is the tempauth v1 endpoint."""

    workdir: Path
    proxy_port: int
    procs: list[subprocess.Popen]
    memcache_port: int
    loop_mount: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def auth_url(self) -> str:
        return f"{self.endpoint}/auth/v1.0"

    @property
    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def log_tail(self, n: int = 3000) -> str:
        out = []
        for name in ("memcached", *SERVERS):
            log = self.workdir / "log" / f"{name}.log"
            if log.exists():
                out.append(f"--- {name}\n" + log.read_text(errors="replace")[-n:])
        return "\n".join(out)

    def forget_tokens(self) -> None:
        """Flush memcached, where tempauth keeps its tokens: every token in use stops working."""
        import socket

        with socket.create_connection(("127.0.0.1", self.memcache_port), timeout=5) as conn:
            conn.sendall(b"flush_all\r\n")
            assert conn.recv(64).startswith(b"OK")

    def stop(self) -> None:
        stop_all(self.procs)
        if self.loop_mount is not None:
            subprocess.run(["umount", "-l", str(self.loop_mount)], check=False, capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def stop_all(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM to every server at once; whatever still runs after ``grace`` seconds is killed
    (Swift's servers wait for idle keep-alive clients; a test cluster keeps nothing worth it)."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def available() -> bool:
    return all(Path(f"/usr/bin/swift-{s}-server").exists() for s in SERVERS) and bool(shutil.which("memcached"))


def _has_user_xattrs(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.swift.probe", b"1")
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()


def _loop_mount_ext4(mountpoint: Path, image: Path, size_mib: int = 4096) -> None:
    """A sparse ext4 image mounted on ``mountpoint``: where the temp filesystem lacks xattrs."""
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True, capture_output=True)


def _common_conf(port: int, workdir: Path) -> str:
    return (
        "[DEFAULT]\n"
        f"bind_ip = 127.0.0.1\nbind_port = {port}\nworkers = 0\nmount_check = false\n"
        f"devices = {workdir / 'srv'}\nswift_dir = {workdir / 'etc'}\nlog_level = WARNING\n"
        f"recon_cache_path = {workdir / 'cache'}\n"
    )


def _proxy_conf(port: int, workdir: Path, memcache_port: int, keystone: dict[str, str] | None = None) -> str:
    """tempauth, or with ``keystone`` (``url``, ``admin_password``) keystonemiddleware's authtoken
    and Swift's keystoneauth (the ``admin`` and ``member`` roles operate an account)."""
    auth = "authtoken keystoneauth" if keystone else "tempauth"
    conf = _common_conf(port, workdir) + (
        "[pipeline:main]\n"
        "pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk "
        f"tempurl {auth} copy slo dlo versioned_writes symlink proxy-logging proxy-server\n"
        "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
        "[filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = testing .admin\n"
        "user_test_reader = reading\n"
        f"[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{memcache_port}\n"
        "[filter:catch_errors]\nuse = egg:swift#catch_errors\n"
        "[filter:gatekeeper]\nuse = egg:swift#gatekeeper\n"
        "[filter:healthcheck]\nuse = egg:swift#healthcheck\n"
        "[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n"
        "[filter:listing_formats]\nuse = egg:swift#listing_formats\n"
        "[filter:bulk]\nuse = egg:swift#bulk\n"
        "[filter:tempurl]\nuse = egg:swift#tempurl\n"
        "[filter:copy]\nuse = egg:swift#copy\n"
        f"[filter:slo]\nuse = egg:swift#slo\nmax_manifest_segments = {MAX_MANIFEST_SEGMENTS}\n"
        "[filter:dlo]\nuse = egg:swift#dlo\n"
        "[filter:versioned_writes]\nuse = egg:swift#versioned_writes\n"
        "[filter:symlink]\nuse = egg:swift#symlink\n"
    )
    if keystone:
        conf += (
            "[filter:authtoken]\npaste.filter_factory = keystonemiddleware.auth_token:filter_factory\n"
            f"www_authenticate_uri = {keystone['url']}\nauth_url = {keystone['url']}\nauth_type = password\n"
            "project_domain_id = default\nuser_domain_id = default\nproject_name = admin\n"
            f"username = admin\npassword = {keystone['admin_password']}\ndelay_auth_decision = true\n"
            f"memcached_servers = 127.0.0.1:{memcache_port}\n"
            "[filter:keystoneauth]\nuse = egg:swift#keystoneauth\noperator_roles = admin, member\n"
        )
    return conf


def proxy_conf(server: "SwiftServer", port: int, keystone: dict[str, str] | None = None) -> str:
    """The config of another proxy over ``server``'s rings and storage servers."""
    return _proxy_conf(port, server.workdir, server.memcache_port, keystone)


def _server_conf(kind: str, port: int, workdir: Path, memcache_port: int) -> str:
    if kind == "proxy":
        return _proxy_conf(port, workdir, memcache_port)
    return _common_conf(port, workdir) + (
        f"[pipeline:main]\npipeline = {kind}-server\n"
        f"[app:{kind}-server]\nuse = egg:swift#{kind}\n"
        + ("[object-replicator]\n[object-updater]\n[object-auditor]\n" if kind == "object" else "")
        + (f"[{kind}-replicator]\n[{kind}-auditor]\n" if kind != "object" else "")
        + ("[container-updater]\n[container-sync]\n" if kind == "container" else "")
    )


def _wait_auth(server: SwiftServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not server.alive:
            raise RuntimeError(f"a Swift server exited:\n{server.log_tail()}")
        request = urllib.request.Request(server.auth_url, headers={"X-Auth-User": USER, "X-Auth-Key": KEY})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                if resp.status == 200 and resp.headers.get("X-Storage-Url"):
                    # and the account answers (the object and container servers are up too)
                    token = resp.headers["X-Auth-Token"]
                    probe = urllib.request.Request(
                        resp.headers["X-Storage-Url"] + "/swift-aio-probe", method="PUT",
                        headers={"X-Auth-Token": token, "Content-Length": "0"},
                    )  # fmt: skip
                    with urllib.request.urlopen(probe, timeout=5):
                        return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"Swift did not answer within {timeout}s ({last}):\n{server.log_tail()}")


def start_swift(base: Path | None = None, timeout: float = 60.0) -> SwiftServer:
    """Start memcached and the four Swift servers below a fresh directory; wait for auth."""
    workdir = Path(tempfile.mkdtemp(prefix="swift-aio-", dir=base))
    for sub in ("etc", "srv", "cache", "log", "run"):
        (workdir / sub).mkdir()
    loop_mount = None
    if not _has_user_xattrs(workdir / "srv"):
        loop_mount = workdir / "srv"
        _loop_mount_ext4(loop_mount, workdir / "srv.img")
    (workdir / "srv" / "d1").mkdir()
    etc = workdir / "etc"
    shutil.copy(PACKAGED_SWIFT_CONF, etc / "swift.conf")
    ports = {name: free_port() for name in SERVERS}
    memcache_port = free_port()
    subprocess.run(
        [SWIFT_PYTHON, "-c", _RING_SCRIPT, str(etc), str(ports["account"]), str(ports["container"]), str(ports["object"])],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    procs: list[subprocess.Popen] = []
    server = SwiftServer(workdir, ports["proxy"], procs, memcache_port, loop_mount)
    try:
        memcached = ["memcached", "-l", "127.0.0.1", "-p", str(memcache_port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            memcached += ["-u", "root"]
        procs.append(spawn(memcached, workdir, "memcached"))
        for name in SERVERS:
            conf = etc / f"{name}-server.conf"
            conf.write_text(_server_conf(name, ports[name], workdir, memcache_port))
            procs.append(spawn([f"/usr/bin/swift-{name}-server", str(conf), "-v"], workdir, name))
        _wait_auth(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def spawn(args: list[str], workdir: Path, name: str, env: dict[str, str] | None = None,
          no_fsync: bool = True) -> subprocess.Popen:  # fmt: skip
    """Start a server of the cluster (fsync turned off), its output in ``workdir/log/<name>.log``."""
    (workdir / "log").mkdir(exist_ok=True)
    log = open(workdir / "log" / f"{name}.log", "wb")
    try:
        return subprocess.Popen([*(NO_FSYNC if no_fsync else []), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, env=env)  # fmt: skip
    finally:
        log.close()
