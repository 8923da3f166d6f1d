"""The pull-through cache against real upstreams (registry/proxy/, docs/proxy.md).

Upstreams: the reference registry (distribution 2.8.2) with htpasswd and its access log, and our
registry with its token server (Docker Hub's bearer flow). The cache is our registry with
``proxy.upstreams``; raw HTTP requests check the protocol, skopeo and podman pull through it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures_registry import (
    ALL_MANIFEST_TYPES,
    Client,
    RunningRegistry,
    assert_pulls,
    make_image,
    make_index,
    push_image,
    sha256,
)
from helpers import RssSampler, free_port, require_tool
from proxy_support import (
    MIRROR_PASSWORD,
    MIRROR_USER,
    Tamper,
    base_config,
    basic_client,
    blob_gets,
    blob_stored,
    repo_tree,
    start,
    start_reference_upstream,
    start_token_upstream,
    token_client,
)

pytestmark = pytest.mark.requires_tool("/usr/bin/docker-registry", hint="`make apt-deps` installs docker-registry")


@pytest.fixture(scope="module")
def ref_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    reg = start_reference_upstream(tmp_path_factory.mktemp("ref-upstream"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def token_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    reg = start_token_upstream(tmp_path_factory.mktemp("token-upstream"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def tamper(ref_upstream: RunningRegistry) -> Iterator[Tamper]:
    with Tamper(ref_upstream.url) as t:
        yield t


@pytest.fixture(scope="module")
def spare_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """An upstream (reference, no auth) that a test stops."""
    reg = start_reference_upstream(tmp_path_factory.mktemp("spare-upstream"), htpasswd=False)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, ref_upstream, token_upstream, tamper,
          spare_upstream) -> Iterator[RunningRegistry]:
    """Our registry mirroring four upstreams under prefixes, with local repositories beside them."""
    work = tmp_path_factory.mktemp("cache")
    port = free_port()
    config = base_config(work / "data", port)
    config["log"]["level"] = "info"
    creds = {"username": MIRROR_USER, "password": MIRROR_PASSWORD}
    config["proxy"] = {"upstreams": [
        {"prefix": "ref", "remoteurl": ref_upstream.url, "credentials": creds},
        {"prefix": "hub", "remoteurl": token_upstream.url, "credentials": creds, "ttl": "3s", "library": True,
         "ns": ["hub.test.example", token_upstream.hostport]},
        {"prefix": "anon", "remoteurl": token_upstream.url, "ns": ["anon.test.example"]},
        {"prefix": "evil", "remoteurl": tamper.url, "credentials": creds, "ns": ["evil.test.example"]},
        {"prefix": "spare", "remoteurl": spare_upstream.url, "ns": ["spare.test.example"]},
    ]}
    reg = start("ours", config, work, "cache")
    yield reg
    reg.stop()


def seed(upstream: RunningRegistry, repo: str, image, tag: str | None = None) -> None:
    """Push ``image`` to an upstream as its admin."""
    if upstream.kind == "reference":
        client = basic_client(upstream)
    else:
        client = token_client(upstream, f"repository:{repo}:pull,push")
    push_image(client, repo, image, tag)


def test_oci_and_docker_images_pull_through_both_upstreams(cache, ref_upstream, token_upstream):
    c = cache.client
    for upstream, prefix in ((ref_upstream, "ref"), (token_upstream, "hub")):
        for kind in ("oci", "docker"):
            image = make_image(kind, label=f"raw-{prefix}-{kind}")
            seed(upstream, f"team/raw-{kind}", image, "v1")
            first = c.get_manifest(f"{prefix}/team/raw-{kind}", "v1")
            assert first.status == 200 and first.header("X-Cache-Status") == "MISS", first
            assert_pulls(c, f"{prefix}/team/raw-{kind}", image, "v1")
            for blob in image.blobs:
                assert cached(c, f"{prefix}/team/raw-{kind}", blob)
                assert blob_stored(cache.root, blob)


def cached(c: Client, repo: str, digest: str, timeout: float = 10.0) -> bool:
    """The blob is served from the cache's storage (its fetch may still be committing when the
    client has the last byte)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = c.request("GET", f"/v2/{repo}/blobs/{digest}")
        assert resp.status == 200 and sha256(resp.body) == digest, resp
        if resp.header("X-Cache-Status") == "HIT":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# --------------------------------------------------------------------------- semantics


def test_local_repositories_stay_pushable_and_mirrors_refuse_pushes(cache):
    c = cache.client
    image = make_image("oci", label="local-beside-mirrors")
    push_image(c, "local/app", image, "v1")
    assert_pulls(c, "local/app", image, "v1")
    for name in ("hub/team/x", "ref/team/x"):
        start = c.request("POST", f"/v2/{name}/blobs/uploads/")
        assert start.status == 405 and start.error_codes() == ["UNSUPPORTED"], start
        put = c.put_manifest(name, "v1", image.manifest, image.media_type)
        assert put.status == 405 and put.error_codes() == ["UNSUPPORTED"], put


def test_tag_moved_upstream_is_seen_after_ttl(cache, token_upstream):
    """hub/ trusts a cached tag for 3 s: within it the old digest (HIT), after it the new one."""
    c = cache.client
    old, new = make_image("oci", label="moving-old"), make_image("oci", label="moving-new")
    steady = make_image("docker", label="steady")
    seed(token_upstream, "team/moving", old, "v1")
    seed(token_upstream, "team/steady", steady, "v1")
    first = c.get_manifest("hub/team/moving", "v1")
    assert first.header("Docker-Content-Digest") == old.digest and first.header("X-Cache-Status") == "MISS", first
    fetched_at = time.monotonic()
    assert c.get_manifest("hub/team/steady", "v1").header("X-Cache-Status") == "MISS"
    seed(token_upstream, "team/moving", new, "v1")
    within = c.get_manifest("hub/team/moving", "v1")
    assert time.monotonic() - fetched_at < 3, "the machine is too slow for this ttl"
    assert within.header("Docker-Content-Digest") == old.digest and within.header("X-Cache-Status") == "HIT", within
    time.sleep(max(0.0, fetched_at + 3.2 - time.monotonic()))
    after = c.get_manifest("hub/team/moving", "v1")
    assert after.status == 200 and after.header("Docker-Content-Digest") == new.digest, after
    assert after.header("X-Cache-Status") == "MISS", after
    assert_pulls(c, "hub/team/moving", new, "v1")
    unchanged = c.get_manifest("hub/team/steady", "v1")  # asked with a HEAD, kept
    assert unchanged.header("Docker-Content-Digest") == steady.digest, unchanged
    assert unchanged.header("X-Cache-Status") == "REVALIDATED", unchanged
    assert c.get_manifest("hub/team/steady", "v1").header("X-Cache-Status") == "HIT"
    # the old manifest stays reachable by digest (fetched once, never revalidated)
    assert c.get_manifest("hub/team/moving", old.digest).header("X-Cache-Status") == "HIT"


def test_upstream_errors_are_clear_oci_errors(cache, ref_upstream, tamper):
    c = cache.client
    missing = c.get_manifest("ref/team/does-not-exist", "v1")
    assert missing.status == 404 and missing.error_codes() == ["MANIFEST_UNKNOWN"], missing
    image = make_image("oci", label="errors")
    seed(ref_upstream, "team/errors", image, "v1")
    unknown_blob = c.request("GET", f"/v2/ref/team/errors/blobs/{sha256(b'never pushed')}")
    assert unknown_blob.status == 404 and unknown_blob.error_codes() == ["BLOB_UNKNOWN"], unknown_blob
    head = c.request("HEAD", f"/v2/ref/team/errors/blobs/{sha256(b'never pushed')}")
    assert head.status == 404, head
    tamper.limited.add("/team/limited/")
    try:
        limited = c.get_manifest("evil/team/limited", "v1")
        assert limited.status == 429 and limited.error_codes() == ["TOOMANYREQUESTS"], limited
        assert limited.header("Retry-After") == "42", limited
    finally:
        tamper.limited.discard("/team/limited/")


def test_anonymous_upstream_access_follows_the_upstreams_rules(cache, token_upstream):
    """anon/ has no credentials: the token server grants anonymous pulls of public/** only."""
    c = cache.client
    image = make_image("oci", label="public-image")
    seed(token_upstream, "public/tool", image, "v1")
    seed(token_upstream, "private/tool", image, "v1")
    assert_pulls(c, "anon/public/tool", image, "v1")
    refused = c.get_manifest("anon/private/tool", "v1")
    assert refused.status == 403 and refused.error_codes() == ["DENIED"], refused
    # the same private image through the upstream that has credentials
    assert_pulls(c, "hub/private/tool", image, "v1")


def test_rate_limited_upstream_serves_the_cached_copy_stale(cache, ref_upstream, tamper):
    c = cache.client
    image = make_image("oci", label="survives-limits")
    seed(ref_upstream, "team/popular", image, "v1")
    assert_pulls(c, "evil/team/popular", image, "v1")
    tamper.limited.add("/team/popular/")
    try:
        stale = c.get_manifest("evil/team/popular", "v1")
        assert stale.status == 200 and stale.body == image.manifest, stale
        assert stale.header("X-Cache-Status") == "STALE" and "Stale" in (stale.header("Warning") or ""), stale
        uncached = c.get_manifest("evil/team/popular", "v2")
        assert uncached.status == 429 and uncached.header("Retry-After") == "42", uncached
    finally:
        tamper.limited.discard("/team/popular/")
    assert "serving the cached" in cache.log_tail(20000)


def test_containerd_ns_parameter_selects_the_upstream(cache, token_upstream):
    """containerd's hosts.toml mirror asks ``/v2/<upstream name>/...?ns=<upstream host>``."""
    c = cache.client
    image = make_image("oci", label="containerd-mirror")
    seed(token_upstream, "team/via-ns", image, "v1")
    resp = c.request("GET", "/v2/team/via-ns/manifests/v1", query={"ns": "hub.test.example"},
                     headers=[("Accept", a) for a in ALL_MANIFEST_TYPES])
    assert resp.status == 200 and resp.body == image.manifest, resp
    for digest, data in image.blobs.items():
        blob = c.request("GET", f"/v2/team/via-ns/blobs/{digest}", query={"ns": token_upstream.hostport})
        assert blob.status == 200 and blob.body == data, blob
    # the same cache entry as the prefix form
    assert c.get_manifest("hub/team/via-ns", "v1").header("X-Cache-Status") in ("HIT", "REVALIDATED")
    assert "_manifests" in "".join(repo_tree(cache.root, "hub/team/via-ns"))
    # an ns no upstream answers for: local repositories, as without ns
    assert c.request("GET", "/v2/team/via-ns/manifests/v1", query={"ns": "quay.io"}).status == 404


def test_concurrent_pulls_of_one_uncached_blob_share_one_upstream_fetch(cache, ref_upstream):
    """8 clients GET one uncached 256 MiB blob at once: the upstream's access log shows one GET,
    every client gets the right bytes, and the cache's memory stays flat."""
    import hashlib
    import http.client

    size = 256 << 20
    data = os.urandom(size)
    digest = sha256(data)
    resp = basic_client(ref_upstream).push_blob("team/big", data, digest)
    assert resp.status == 201, resp
    del data
    barrier = threading.Barrier(8)
    results: list[tuple[int, int, str]] = []

    def pull() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", cache.port, timeout=300)
        barrier.wait()
        conn.request("GET", f"/v2/ref/team/big/blobs/{digest}")
        r = conn.getresponse()
        h, n = hashlib.sha256(), 0
        while chunk := r.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
        results.append((r.status, n, "sha256:" + h.hexdigest()))
        conn.close()

    with RssSampler(cache.proc.pid, 0.02) as rss:  # fails the test if sampling fails or starves
        threads = [threading.Thread(target=pull) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
    assert results == [(200, size, digest)] * 8, results
    assert blob_gets(ref_upstream, digest) == 1, "the upstream served the blob more than once"
    grown = (rss.peak - rss.baseline) >> 20
    assert grown < 96, f"the cache grew by {grown} MiB while serving a 256 MiB blob 8 times"
    assert cached(cache.client, "ref/team/big", digest)
    assert blob_gets(ref_upstream, digest) == 1


def test_concurrent_requests_for_one_uncached_tag_share_one_upstream_request(cache, ref_upstream):
    image = make_image("oci", label="tag-flight")
    seed(ref_upstream, "team/flight", image, "v1")
    barrier = threading.Barrier(8)
    answers: list[int] = []

    def get() -> None:
        barrier.wait()
        answers.append(cache.client.get_manifest("ref/team/flight", "v1").status)

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [200] * 8
    log = ref_upstream.log_path.read_text(errors="replace")
    assert log.count('"GET /v2/team/flight/manifests/v1 HTTP/1.1" 200') == 1, "more than one upstream GET"


def test_upstream_that_corrupts_a_byte_gets_nothing_stored(cache, ref_upstream, tamper, skopeo_env, tmp_path):
    c = cache.client
    layer = os.urandom(3 << 20)
    image = make_image("oci", label="corrupted")
    seed(ref_upstream, "team/corrupted", image, "v1")
    assert basic_client(ref_upstream).push_blob("team/corrupted", layer).status == 201
    bad = sha256(layer)
    tamper.corrupt.add(bad)
    try:
        resp = c.request("GET", f"/v2/evil/team/corrupted/blobs/{bad}")
        assert resp.status == 200 and len(resp.body) < len(layer), "the client got a complete body"
        assert sha256(resp.body) != bad
        time.sleep(0.5)
        assert not blob_stored(cache.root, bad)
        assert not [p for p in repo_tree(cache.root, "evil/team/corrupted") if bad.split(":")[1] in p]
        tamper.corrupt.add("/team/corrupted/manifests/v1")
        manifest = c.get_manifest("evil/team/corrupted", "v1")
        assert manifest.status >= 400, manifest
        assert "_manifests" not in "".join(repo_tree(cache.root, "evil/team/corrupted"))
        assert not blob_stored(cache.root, image.digest)
        proc = subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                               f"docker://{cache.hostport}/evil/team/corrupted:v1", f"dir:{tmp_path / 'out'}"],
                              capture_output=True, text=True, env=skopeo_env, timeout=120)
        assert proc.returncode != 0, proc.stdout
    finally:
        tamper.corrupt.clear()
    # the damage was not cached: the honest bytes come through now
    good = c.request("GET", f"/v2/evil/team/corrupted/blobs/{bad}")
    assert good.status == 200 and good.body == layer
    assert_pulls(c, "evil/team/corrupted", image, "v1")


# --------------------------------------------------------------------------- real clients


@pytest.fixture(scope="module")
def skopeo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tool("skopeo", hint="`make apt-deps` installs it")
    home = tmp_path_factory.mktemp("proxy-skopeo-home")
    (home / "auth.json").write_text("{}")
    (home / "registries.conf").write_text("unqualified-search-registries = []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"), TMPDIR=str(home),
               CONTAINERS_REGISTRIES_CONF=str(home / "registries.conf"), XDG_RUNTIME_DIR=str(home))
    return env


def skopeo_pull(env: dict[str, str], ref: str, dest: Path, *extra: str) -> None:
    """``skopeo copy`` into a ``dir:`` layout (it keeps every manifest kind byte for byte)."""
    proc = subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", *extra,
                           f"docker://{ref}", f"dir:{dest}"], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_dir_layout(dest: Path, image) -> None:
    assert (dest / "manifest.json").read_bytes() == image.manifest
    for child in image.children:
        assert (dest / f"{child.digest.split(':')[1]}.manifest.json").read_bytes() == child.manifest
    for d, data in image.all_blobs().items():
        assert (dest / d.split(":")[1]).read_bytes() == data


def test_skopeo_pulls_images_and_multi_arch_indexes_through_the_cache(cache, ref_upstream, token_upstream,
                                                                      skopeo_env, tmp_path):
    cases = [
        (ref_upstream, "ref", make_image("oci", label="skopeo-oci")),
        (ref_upstream, "ref", make_index("docker", label="skopeo-list")),
        (token_upstream, "hub", make_image("docker", label="skopeo-docker")),
        (token_upstream, "hub", make_index("oci", label="skopeo-index")),
    ]
    for i, (upstream, prefix, image) in enumerate(cases):
        seed(upstream, f"team/skopeo{i}", image, "v1")
        dest = tmp_path / f"pulled{i}"
        skopeo_pull(skopeo_env, f"{cache.hostport}/{prefix}/team/skopeo{i}:v1", dest, "--all")
        assert_dir_layout(dest, image)
    # a second pull is served from the cache (the upstream is not asked for blobs again)
    gets = {d: blob_gets(ref_upstream, d) for d in cases[0][2].blobs}
    skopeo_pull(skopeo_env, f"{cache.hostport}/ref/team/skopeo0:v1", tmp_path / "again")
    assert_dir_layout(tmp_path / "again", cases[0][2])
    assert {d: blob_gets(ref_upstream, d) for d in cases[0][2].blobs} == gets


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tool("podman", hint="`make apt-deps` installs it")
    home = tmp_path_factory.mktemp("proxy-podman-home")
    (home / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{home}/graph"\n'
                                       f'runroot = "{home}/run"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"), XDG_RUNTIME_DIR=str(home),
               CONTAINERS_REGISTRIES_CONF=str(home / "registries.conf"), TMPDIR=str(home),
               CONTAINERS_STORAGE_CONF=str(home / "storage.conf"))
    (home / "auth.json").write_text("{}")
    return env


def podman(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=300)


def test_podman_pulls_through_the_cache_and_as_a_registries_conf_mirror(cache, ref_upstream, token_upstream,
                                                                         podman_env):
    home = Path(podman_env["HOME"])
    (home / "registries.conf").write_text(
        'unqualified-search-registries = []\n'
        f'[[registry]]\nlocation = "{cache.hostport}"\ninsecure = true\n'
        # the upstream itself needs credentials podman does not have: only the mirror can serve it
        f'[[registry]]\nlocation = "{ref_upstream.hostport}"\ninsecure = true\n'
        f'[[registry.mirror]]\nlocation = "{cache.hostport}/ref"\ninsecure = true\n')
    mirrored = make_image("oci", label="podman-mirror")
    seed(ref_upstream, "team/podman-mirror", mirrored, "v1")
    pulled = podman(podman_env, "pull", f"{ref_upstream.hostport}/team/podman-mirror:v1")
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert "_manifests" in "".join(repo_tree(cache.root, "ref/team/podman-mirror"))
    multi = make_index("docker", label="podman-multi", arches=("amd64", "arm64"))
    seed(token_upstream, "team/podman-multi", multi, "v1")
    pulled = podman(podman_env, "pull", f"{cache.hostport}/hub/team/podman-multi:v1")
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    inspect = podman(podman_env, "image", "inspect", "--format", "{{.Digest}}", f"{cache.hostport}/hub/team/podman-multi:v1")
    assert inspect.returncode == 0 and inspect.stdout.strip() == multi.digest, inspect
    # the amd64 image's layers were fetched, the arm64 ones were not
    amd64, arm64 = multi.children
    assert all(blob_stored(cache.root, d) for d in amd64.blobs)
    assert not any(blob_stored(cache.root, d) for d in arm64.blobs if d not in amd64.blobs)


def test_cached_pulls_work_while_the_upstream_is_down(cache, spare_upstream, skopeo_env, tmp_path):
    image = make_index("oci", label="survives-outage")
    seed(spare_upstream, "team/outage", image, "v1")
    skopeo_pull(skopeo_env, f"{cache.hostport}/spare/team/outage:v1", tmp_path / "before", "--all")
    spare_upstream.stop()
    skopeo_pull(skopeo_env, f"{cache.hostport}/spare/team/outage:v1", tmp_path / "after", "--all")
    assert_dir_layout(tmp_path / "after", image)
    c = cache.client
    assert_pulls(c, "spare/team/outage", image, "v1")
    stale = c.get_manifest("spare/team/outage", "v1")
    assert stale.status == 200 and stale.header("X-Cache-Status") == "STALE", stale
    missing = c.get_manifest("spare/team/never-cached", "v1")
    assert missing.status == 503 and missing.error_codes() == ["UNAVAILABLE"], missing
    tags = c.request("GET", "/v2/spare/team/outage/tags/list")
    assert tags.status == 200 and tags.json()["tags"] == ["v1"], tags


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A containerd daemon (Debian package) on its own root, state and socket; no CRI, no snapshots
    needed (``ctr content fetch`` only fetches)."""
    require_tool("containerd", "ctr", hint="`make apt-deps` installs containerd")
    work = tmp_path_factory.mktemp("ctd")
    sock = work / "c.sock"
    (work / "config.toml").write_text(
        f'version = 2\nroot = "{work}/root"\nstate = "{work}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        # the sockets owned by this user: containerd runs (and chowns them) without root too
        f'[grpc]\n  address = "{sock}"\n  uid = {os.getuid()}\n  gid = {os.getgid()}\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n  uid = {os.getuid()}\n  gid = {os.getgid()}\n')
    with open(work / "containerd.log", "wb") as log:
        proc = subprocess.Popen(["containerd", "--config", str(work / "config.toml")], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (work / "containerd.log").read_text()[-3000:]
            time.sleep(0.2)
        yield str(sock), work
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_containerd_pulls_through_the_cache_as_a_hosts_toml_mirror(cache, token_upstream, containerd):
    """containerd with a ``hosts.toml`` naming the cache as the mirror of a registry it cannot
    reach itself: it asks ``/v2/team/...?ns=hub.test.example``, the cache serves it from hub/."""
    sock, work = containerd
    hosts = work / "certs.d"
    (hosts / "hub.test.example").mkdir(parents=True)
    (hosts / "hub.test.example" / "hosts.toml").write_text(
        'server = "https://hub.test.example"\n'  # not resolvable: only the mirror can answer
        f'[host."http://{cache.hostport}"]\n  capabilities = ["pull", "resolve"]\n')
    image = make_index("oci", label="containerd-hosts")
    seed(token_upstream, "team/ctr", image, "v1")
    ref = "hub.test.example/team/ctr:v1"
    fetched = subprocess.run(["ctr", "--address", sock, "content", "fetch", "--hosts-dir", str(hosts),
                              "--all-platforms", ref], capture_output=True, text=True, timeout=180)
    assert fetched.returncode == 0, (fetched.stdout[-2000:], fetched.stderr[-3000:])
    listed = subprocess.run(["ctr", "--address", sock, "images", "ls"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and image.digest in listed.stdout and ref in listed.stdout, listed
    content = subprocess.run(["ctr", "--address", sock, "content", "ls", "-q"], capture_output=True, text=True,
                             timeout=60)
    have = set(content.stdout.split())
    wanted = {image.digest} | {c.digest for c in image.children} | set(image.all_blobs())
    assert wanted <= have, wanted - have
    assert "_manifests" in "".join(repo_tree(cache.root, "hub/team/ctr"))
    for d in image.all_blobs():
        assert blob_stored(cache.root, d)


# --------------------------------------------------------------------------- distribution's form


@pytest.fixture(scope="module")
def single_cache(tmp_path_factory: pytest.TempPathFactory, token_upstream) -> Iterator[RunningRegistry]:
    """distribution's ``proxy:`` block: the whole registry mirrors one upstream (Docker Hub's
    ``library/`` mapping turned on, as it is by default for Docker Hub)."""
    work = tmp_path_factory.mktemp("single-cache")
    config = base_config(work / "data", free_port())
    config["proxy"] = {"remoteurl": token_upstream.url, "username": MIRROR_USER, "password": MIRROR_PASSWORD,
                       "library": True}
    reg = start("ours", config, work, "single-cache")
    yield reg
    reg.stop()


def test_distribution_form_mirrors_everything_and_refuses_pushes(single_cache, token_upstream):
    c = single_cache.client
    official = make_image("oci", label="official-image")
    seed(token_upstream, "library/busybox", official, "1.36")
    assert_pulls(c, "busybox", official, "1.36")  # a single name is Docker Hub's library/ image
    nested = make_image("docker", label="nested-image")
    seed(token_upstream, "team/tool", nested, "v1")
    assert_pulls(c, "team/tool", nested, "v1")
    start_upload = c.request("POST", "/v2/team/tool/blobs/uploads/")
    assert start_upload.status == 405 and start_upload.error_codes() == ["UNSUPPORTED"], start_upload
    put = c.put_manifest("anything", "v1", nested.manifest, nested.media_type)
    assert put.status == 405 and put.error_codes() == ["UNSUPPORTED"], put
    # containerd naming another registry than the one mirrored: not this registry's content
    other = c.request("GET", "/v2/team/tool/manifests/v1", query={"ns": "quay.io"})
    assert other.status == 404 and other.error_codes() == ["NAME_UNKNOWN"], other
    same = c.request("GET", "/v2/team/tool/manifests/v1", query={"ns": token_upstream.hostport},
                     headers=[("Accept", a) for a in ALL_MANIFEST_TYPES])
    assert same.status == 200 and same.body == nested.manifest, same
    catalog = c.request("GET", "/v2/_catalog").json()["repositories"]
    assert "busybox" in catalog and "team/tool" in catalog, catalog


def test_blob_head_fetches_nothing_and_a_ranged_get_of_an_uncached_blob(cache, ref_upstream):
    c = cache.client
    data = os.urandom(3 << 20)
    digest = sha256(data)
    assert basic_client(ref_upstream).push_blob("team/ranged", data, digest).status == 201
    head = c.request("HEAD", f"/v2/ref/team/ranged/blobs/{digest}")
    assert head.status == 200 and head.header("Content-Length") == str(len(data)), head
    assert head.header("X-Cache-Status") == "MISS" and blob_gets(ref_upstream, digest) == 0
    assert not blob_stored(cache.root, digest)
    part = c.request("GET", f"/v2/ref/team/ranged/blobs/{digest}", headers={"Range": "bytes=1000000-1999999"})
    assert part.status == 206 and part.body == data[1000000:2000000], part
    assert part.header("Content-Range") == f"bytes 1000000-1999999/{len(data)}"
    assert cached(c, "ref/team/ranged", digest) and blob_gets(ref_upstream, digest) == 1


def test_redirects_to_another_origin_never_carry_the_upstream_credentials(cache, ref_upstream, tamper):
    """Docker Hub sends blob GETs to a CDN: the cache follows, without its Authorization header."""
    data = os.urandom(1 << 20)
    digest = sha256(data)
    assert basic_client(ref_upstream).push_blob("team/cdn", data, digest).status == 201
    tamper.redirect.add(digest)
    try:
        resp = cache.client.request("GET", f"/v2/evil/team/cdn/blobs/{digest}")
    finally:
        tamper.redirect.discard(digest)
    assert resp.status == 200 and resp.body == data, resp
    assert tamper.cdn_headers, "the CDN was not asked"
    assert not any(k.lower() == "authorization" for h in tamper.cdn_headers for k in h), tamper.cdn_headers


def test_a_credential_helper_gives_the_upstream_credentials(tmp_path_factory, ref_upstream):
    """distribution 3.x's ``proxy.exec``: a docker-credential-helpers program, run once per
    lifetime, with the upstream's host on stdin."""
    work = tmp_path_factory.mktemp("helper-cache")
    calls = work / "calls"
    helper = work / "docker-credential-test"
    helper.write_text("#!/bin/sh\n"
                      f'[ "$1" = get ] || exit 3\nread -r host || true\necho "$host" >> {calls}\n'
                      f'printf \'{{"ServerURL":"%s","Username":"{MIRROR_USER}","Secret":"{MIRROR_PASSWORD}"}}\' "$host"\n')
    helper.chmod(0o755)
    config = base_config(work / "data", free_port())
    config["proxy"] = {"remoteurl": ref_upstream.url, "exec": {"command": str(helper), "lifetime": "1h"}}
    reg = start("ours", config, work, "helper-cache")
    try:
        image = make_image("oci", label="helper-creds")
        seed(ref_upstream, "team/helper", image, "v1")
        assert_pulls(reg.client, "team/helper", image, "v1")
        assert calls.read_text().split() == ["127.0.0.1"], calls.read_text()  # once, for the upstream's host
        assert MIRROR_PASSWORD not in reg.log_tail(100000)
    finally:
        reg.stop()


def test_read_only_mode_serves_what_is_cached_and_fetches_nothing(cache, ref_upstream, tmp_path):
    image, other = make_image("oci", label="ro-cached"), make_image("oci", label="ro-uncached")
    seed(ref_upstream, "team/readonly", image, "v1")
    seed(ref_upstream, "team/readonly", other, "v2")
    assert_pulls(cache.client, "ref/team/readonly", image, "v1")
    for d in image.blobs:
        assert cached(cache.client, "ref/team/readonly", d)
    config = base_config(cache.root, free_port())  # a second instance on the cache's storage
    config["storage"]["maintenance"]["readonly"] = {"enabled": True}
    config["proxy"] = {"upstreams": [{"prefix": "ref", "remoteurl": ref_upstream.url,
                                      "credentials": {"username": MIRROR_USER, "password": MIRROR_PASSWORD}}]}
    ro = start("ours", config, tmp_path, "readonly-cache")
    try:
        before = ref_upstream.log_path.read_text(errors="replace").count("/team/readonly/")
        assert_pulls(ro.client, "ref/team/readonly", image, "v1")
        assert ro.client.get_manifest("ref/team/readonly", "v2").status == 404
        assert ro.client.request("GET", f"/v2/ref/team/readonly/blobs/{next(iter(other.blobs))}").status == 404
        assert ref_upstream.log_path.read_text(errors="replace").count("/team/readonly/") == before
    finally:
        ro.stop()


def test_the_first_client_gets_the_blob_while_the_upstream_is_still_sending_it(cache, ref_upstream, tamper):
    """A slow upstream holds the rest of a blob back after its first 4 MiB: the cache streams what
    arrived to the client at once (a cache that stored first and served after would send
    nothing), stores nothing before the blob is complete, and serves the rest when it comes."""
    import http.client

    data = os.urandom(24 << 20)
    digest = sha256(data)
    assert basic_client(ref_upstream).push_blob("team/slow", data, digest).status == 201
    tamper.release.clear()
    tamper.hold.add(digest)
    conn = http.client.HTTPConnection("127.0.0.1", cache.port, timeout=60)
    try:
        conn.request("GET", f"/v2/evil/team/slow/blobs/{digest}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Length") == str(len(data))
        first = resp.read(1 << 20)
        assert first == data[: 1 << 20]
        assert not tamper.release.is_set() and not blob_stored(cache.root, digest)
        tamper.release.set()
        assert first + resp.read() == data
    finally:
        tamper.release.set()
        tamper.hold.discard(digest)
        conn.close()
    assert cached(cache.client, "evil/team/slow", digest)
    assert blob_gets(ref_upstream, digest) == 1


# --------------------------------------------------------------------------- with the lifecycle


def _age_tree(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            os.utime(Path(dirpath) / name, (t, t))


def test_retention_expires_a_cached_tag_and_gc_keeps_the_blob_a_local_repository_shares(
        tmp_path_factory, ref_upstream):
    """Cached content is ordinary storage for registry/lifecycle (issue 16, Build 4): a mirrored
    image sharing a layer with a local repository, not pulled for 40 days, is removed by a
    retention rule on ``dockerhub/**``; the online collector (run while the cache serves) frees
    its own blobs and keeps the shared layer; a cached manifest whose blobs were never fetched is
    not taken for damage; and the cache fetches the expired image again on the next pull."""
    from gc_support import V2, blob_dirs, gc, image_using
    from helpers import run_cli

    work = tmp_path_factory.mktemp("lifecycle-cache")
    config = base_config(work / "data", free_port())
    config["storage"]["maintenance"]["gc"] = {"grace": "8s"}
    config["proxy"] = {"upstreams": [{"prefix": "dockerhub", "remoteurl": ref_upstream.url,
                                      "credentials": {"username": MIRROR_USER, "password": MIRROR_PASSWORD}}]}
    config["retention"] = {"rules": [{"repositories": ["dockerhub/**"], "tags": [{"pattern": "*", "olderthan": "30d"}],
                                      "untagged": {"olderthan": "30d"}}]}
    reg = start("ours", config, work, "lifecycle-cache")
    try:
        c = reg.client
        shared = make_image("oci", label="lc-shared-base", n_layers=1).blobs
        shared = {d: b for d, b in shared.items() if b[:2] == b"\x1f\x8b"}  # the layer, not the config
        (shared_layer,) = shared
        local = image_using("oci", "lc-local", shared)
        push_image(c, "local/app", local, "v1")
        old = image_using("oci", "lc-cached-old", shared)
        young = make_image("oci", label="lc-cached-young")
        seed(ref_upstream, "team/base", old, "v1")
        seed(ref_upstream, "team/young", young, "v1")
        assert_pulls(c, "dockerhub/team/base", old, "v1")
        for d in old.blobs:
            assert cached(c, "dockerhub/team/base", d)
        assert blob_gets(ref_upstream, shared_layer) == 0, "the layer the registry held was fetched again"
        assert c.get_manifest("dockerhub/team/young", "v1").status == 200  # its blobs never fetched
        cache_only = (set(old.blobs) - set(shared)) | {old.digest}
        assert cache_only <= blob_dirs(reg.root)
        # 40 days pass without a pull of dockerhub/team/base
        _age_tree(reg.root / V2 / "repositories" / "dockerhub" / "team" / "base", 40)
        for d in cache_only | set(shared):
            _age_tree(reg.root / V2 / "blobs" / "sha256" / d[7:9] / d[7:], 40)
        retention = run_cli("retention", "--json", str(reg.config_path))
        assert retention.returncode == 0, retention.stderr
        summary = json.loads(retention.stdout.strip().splitlines()[-1])
        assert summary["tags_deleted"] == 1 and summary["manifests_deleted"] == 1, summary
        assert c.request("GET", "/v2/local/app/tags/list").json()["tags"] == ["v1"]
        tags_dir = reg.root / V2 / "repositories" / "dockerhub" / "team"
        assert not (tags_dir / "base" / "_manifests" / "tags" / "v1").exists()
        assert (tags_dir / "young" / "_manifests" / "tags" / "v1").exists()
        summary, _ = gc(reg.config_path, "--online", "--grace", "8s")
        stored = blob_dirs(reg.root)
        assert not cache_only & stored, (cache_only & stored, summary)
        assert shared_layer in stored and young.digest in stored, summary
        assert_pulls(c, "local/app", local, "v1")
        # the young cached manifest survived although its blobs were never in its repository
        young_head = c.get_manifest("dockerhub/team/young", "v1", method="HEAD")
        assert young_head.status == 200 and young_head.header("X-Cache-Status") in ("HIT", "REVALIDATED"), young_head
        assert_pulls(c, "dockerhub/team/young", young, "v1")
        # the expired image is a miss again, fetched from the upstream; the shared layer still is not
        again = c.get_manifest("dockerhub/team/base", "v1")
        assert again.status == 200 and again.header("X-Cache-Status") == "MISS", again
        assert_pulls(c, "dockerhub/team/base", old, "v1")
        assert blob_gets(ref_upstream, shared_layer) == 0
        own = next(iter(set(old.blobs) - set(shared)))
        assert blob_gets(ref_upstream, own) == 2
    finally:
        reg.stop()
