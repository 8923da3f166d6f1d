"""The pull-through cache against real upstreams (registry/proxy/, docs/proxy.md).

Upstreams: the reference registry (distribution 2.8.2) with htpasswd and its access log, and our
registry with its token server (Docker Hub's bearer flow). The cache is our registry with
``proxy.upstreams``; raw HTTP requests check the protocol, skopeo and podman pull through it.
"""

from __future__ import annotations

import json
import os
import shutil
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
from helpers import free_port
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

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                reason="docker-registry (Debian package) is not installed: `make apt-deps`")


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
        {"prefix": "spare", "remoteurl": spare_upstream.url, "ttl": "1h", "ns": ["spare.test.example"]},
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
