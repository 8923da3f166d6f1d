"""Scale-out: three registry instances on one moto bucket, sharing one Redis, behind haproxy.

Proves over real HTTP what docs/scale-out.md promises: racing PATCHes of one upload on different
instances (one accepted per offset, the blob's digest right), an instance killed with -9 in the
middle of a PATCH (the upload goes on through another), the failed-login limit, the request-rate
limit and refresh tokens across instances, a delete on one instance is a 404 on the others at
once (the blob descriptor cache is on), and Redis restarted in the middle of pushes and pulls.
The fixtures (tests/scale_support.py) are session-scoped; each test leaves all three instances
and Redis running.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import socket
import threading
import time
import urllib.parse

import pytest

from fixtures_registry import Client, Response, make_image, push_image, sha256
from helpers import run_cli, wait_http

OCTETS = {"Content-Type": "application/octet-stream"}


def _post_upload(c: Client, repo: str) -> str:
    r = c.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, r
    return r.location_path()


def _all_at_once(calls: list) -> list[Response]:
    """Run ``calls`` (callables) in threads released together."""
    barrier = threading.Barrier(len(calls))

    def run(fn):  # type: ignore[no-untyped-def]
        barrier.wait()
        return fn()

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_racing_patches_on_three_instances_one_accepted_per_offset(scale_out):
    repo = f"race/r{random.randrange(1 << 30)}"
    loc = _post_upload(scale_out.client, repo)
    rng = random.Random(14)
    content = b""
    for round_ in range(6):
        # rounds 0-2: the same chunk everywhere (a client retrying); 3-5: different bytes per instance
        chunks = [rng.randbytes(300_000 + round_)] * 3 if round_ < 3 else [rng.randbytes(300_000) for _ in range(3)]
        start, end = len(content), len(content) + len(chunks[0]) - 1
        answers = _all_at_once([
            (lambda i=i: scale_out.direct(i).request(
                "PATCH", loc, body=chunks[i], headers={**OCTETS, "Content-Range": f"{start}-{end}"}))
            for i in range(3)])
        accepted = [i for i, a in enumerate(answers) if a.status == 202]
        assert len(accepted) == 1, answers
        for a in answers:
            assert a.status in (202, 416), a
            if a.status == 416:
                assert a.header("Range") == f"0-{end}", a  # the current range, after the winner
        content += chunks[accepted[0]]
    status = scale_out.client.request("GET", loc)
    assert status.status == 204 and status.header("Range") == f"0-{len(content) - 1}", status
    put = scale_out.client.request("PUT", loc, query={"digest": sha256(content)})
    assert put.status == 201, put
    for i in range(3):
        got = scale_out.direct(i).request("GET", f"/v2/{repo}/blobs/{sha256(content)}")
        assert got.status == 200 and got.body == content and got.header("Docker-Content-Digest") == sha256(content)


def _patch_without_finishing(port: int, path: str, total: int, sent: bytes) -> socket.socket:
    """A PATCH announcing ``total`` bytes of which only ``sent`` go out (the rest never comes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {total}\r\n\r\n").encode()
    s.sendall(head + sent)
    return s


def test_instance_killed_mid_patch_upload_continues_through_another(scale_out):
    repo = f"kill/r{random.randrange(1 << 30)}"
    rng = random.Random(9)
    first, second = rng.randbytes(6 << 20), rng.randbytes(14 << 20)
    holder = scale_out.instances[0]
    loc = _post_upload(holder.client, repo)
    r = holder.client.request("PATCH", loc, body=first, headers=OCTETS)
    assert r.status == 202, r
    # instance 0 takes the lease and streams 12 of the 14 MiB (one 10 MiB part reaches S3), then dies
    conn = _patch_without_finishing(holder.port, loc, len(second), second[: 12 << 20])
    time.sleep(1.5)
    scale_out.kill(0)
    conn.close()
    try:
        other = scale_out.direct(1)
        status = other.request("GET", loc)
        assert status.status == 204 and status.header("Range") == f"0-{len(first) - 1}", status
        # the dead holder's lease expires (state.leasettl 3s); instance 1 fences its state, then appends
        r = other.request("PATCH", loc, body=second, headers={**OCTETS, "Content-Range": f"{len(first)}-"
                                                              f"{len(first) + len(second) - 1}"})
        assert r.status == 202, r
        whole = first + second
        put = scale_out.direct(2).request("PUT", loc, query={"digest": sha256(whole)})
        assert put.status == 201, put
        got = scale_out.client.request("GET", f"/v2/{repo}/blobs/{sha256(whole)}")
        assert got.status == 200 and hashlib.sha256(got.body).hexdigest() == sha256(whole)[7:]
    finally:
        scale_out.restart(0)
        for _ in range(3):
            wait_http(f"{scale_out.lb.url}/v2/", timeout=20)


def _token(c: Client, user: str, password: str) -> Response:
    import base64

    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return c.request("GET", "/auth/token", query={"service": "test-registry", "scope": "repository:x:pull"},
                     headers={"Authorization": f"Basic {basic}"})


def test_failed_login_limit_and_refresh_tokens_across_instances(scale_out):
    from auth_support import PASSWORDS

    # 4 failures per (address, account) and minute, spread over the three instances...
    for i in range(4):
        r = _token(scale_out.direct(i % 3), "bob", "wrong")
        assert r.status == 401, r
    # ... and every instance refuses the next try, even with the right password
    for i in range(3):
        r = _token(scale_out.direct(i), "bob", PASSWORDS["bob"])
        assert r.status == 429 and int(r.header("Retry-After")) > 0, r
    # a refresh token issued by one instance works on another, and a revocation reaches all
    form = urllib.parse.urlencode({"grant_type": "password", "service": "test-registry", "client_id": "scale",
                                   "access_type": "offline", "username": "alice",
                                   "password": PASSWORDS["alice"]}).encode()
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    r = scale_out.direct(0).request("POST", "/auth/token", body=form, headers=form_headers)
    assert r.status == 200, r
    refresh = json.loads(r.body)["refresh_token"]
    again = urllib.parse.urlencode({"grant_type": "refresh_token", "service": "test-registry",
                                    "client_id": "scale", "refresh_token": refresh}).encode()
    r = scale_out.direct(1).request("POST", "/auth/token", body=again, headers=form_headers)
    assert r.status == 200 and json.loads(r.body)["access_token"], r
    done = run_cli("auth", "revoke", "--account", "alice", "--config", str(scale_out.instances[2].config_path))
    assert done.returncode == 0 and "revoked 1" in done.stdout, done.stdout + done.stderr
    for i in range(3):
        r = scale_out.direct(i).request("POST", "/auth/token", body=again, headers=form_headers)
        assert r.status == 401, r


def test_request_rate_limit_is_one_budget_across_instances(scale_out):
    """http.ratelimit on three instances sharing the scale-out Redis and bucket, behind their own
    haproxy: the client's budget of 6 is spent after 6 requests in total, not 6 per instance."""
    import shutil

    import yaml

    from scale_support import start_haproxy, start_instance

    budget = 6
    http_extra = yaml.safe_dump({"ratelimit": {"requests": budget, "period": "1h",
                                               "trustedproxies": ["127.0.0.1"]}})  # haproxy and this test
    workdir = scale_out.workdir / f"ratelimit-{random.randrange(1 << 30)}"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        limited = list(pool.map(lambda i: start_instance(workdir / f"instance-{i}", scale_out.storage,
                                                         scale_out.extra_config, http_extra=http_extra), range(3)))
    lb = start_haproxy(workdir, [r.hostport for r in limited])
    try:
        for _ in range(3):  # /v2/ is not limited: haproxy's health checks and this wait stay out of budgets
            wait_http(f"{lb.url}/v2/", timeout=20)
        client = {"X-Forwarded-For": f"10.{random.randrange(256)}.{random.randrange(256)}.14"}
        for n in range(budget):  # round robin: two requests on each instance
            r = lb.client.request("GET", "/v2/_catalog", headers=client)
            assert r.status == 200, (n, r)
        r = lb.client.request("GET", "/v2/_catalog", headers=client)
        assert r.status == 429 and json.loads(r.body)["errors"][0]["code"] == "TOOMANYREQUESTS", r
        assert 1 <= int(r.header("Retry-After")) <= 3601, r
        for instance in limited:  # every instance sees the spent budget (per-process counts would allow 6 each)
            r = instance.client.request("GET", "/v2/_catalog", headers=client)
            assert r.status == 429 and int(r.header("Retry-After")) > 0, r
        other = {"X-Forwarded-For": "192.0.2.77"}
        r = lb.client.request("GET", "/v2/_catalog", headers=other)
        assert r.status == 200, r
    finally:
        lb.stop()
        for instance in limited:
            instance.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_delete_on_one_instance_is_404_on_the_others_at_once(scale_out):
    repo = f"del/r{random.randrange(1 << 30)}"
    image = make_image(label=repo)
    push_image(scale_out.client, repo, image, tag="v1")
    body = json.loads(image.manifest)
    layer = body["layers"][0]["digest"]
    for i in range(3):  # every instance pulls once: the descriptors are cached in Redis now
        for _ in range(2):
            m = scale_out.direct(i).get_manifest(repo, image.digest)
            assert m.status == 200, m
            h = scale_out.direct(i).request("HEAD", f"/v2/{repo}/blobs/{layer}")
            assert h.status == 200, h
    assert "c:{repo:" + repo in scale_out.redis.cli("KEYS", "registry:c:*")
    r = scale_out.direct(0).request("DELETE", f"/v2/{repo}/manifests/{image.digest}")
    assert r.status == 202, r
    for i in (1, 2):
        assert scale_out.direct(i).get_manifest(repo, image.digest).status == 404
        assert scale_out.direct(i).get_manifest(repo, "v1").status == 404
    r = scale_out.direct(1).request("DELETE", f"/v2/{repo}/blobs/{layer}")
    assert r.status == 202, r
    for i in (0, 2):
        assert scale_out.direct(i).request("HEAD", f"/v2/{repo}/blobs/{layer}").status == 404


def test_redis_restarted_during_pushes_and_pulls(scale_out):
    repo = f"restart/r{random.randrange(1 << 30)}"
    image = make_image(label=repo)
    push_image(scale_out.client, repo, image, tag="stable")
    config_digest = json.loads(image.manifest)["config"]["digest"]
    stop = threading.Event()
    pulls: list[int] = []
    pushes: list[tuple[float, int, str | None, bytes | None]] = []
    client = scale_out.client

    def pull_loop() -> None:
        while not stop.is_set():
            pulls.append(client.get_manifest(repo, "stable").status)
            pulls.append(client.request("HEAD", f"/v2/{repo}/blobs/{config_digest}").status)

    def push_loop() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            data = os.urandom(1000) + str(n).encode()
            try:
                post = client.request("POST", f"/v2/{repo}/blobs/uploads/")
                if post.status != 202:
                    pushes.append((time.monotonic(), post.status, post.header("Retry-After"), None))
                    continue
                patch = client.request("PATCH", post.location_path(), body=data, headers=OCTETS)
                if patch.status != 202:
                    pushes.append((time.monotonic(), patch.status, patch.header("Retry-After"), None))
                    continue
                put = client.request("PUT", patch.location_path(), query={"digest": sha256(data)})
                pushes.append((time.monotonic(), put.status, put.header("Retry-After"), data))
            except OSError:
                pushes.append((time.monotonic(), 0, None, None))
            time.sleep(0.05)

    threads = [threading.Thread(target=pull_loop), threading.Thread(target=push_loop)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        scale_out.redis.stop()
        down_at = time.monotonic()
        time.sleep(3)
        scale_out.redis.start()
        up_at = time.monotonic()
        deadline = up_at + 30
        while time.monotonic() < deadline:  # the instances recover by themselves
            recent = [p for p in pushes if p[0] > time.monotonic() - 1.5]
            if len(recent) >= 2 and all(p[1] == 201 for p in recent):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert pulls and all(s == 200 for s in pulls), sorted(set(pulls))  # reads never stopped
    during = [p for p in pushes if down_at + 1 < p[0] < up_at]
    assert during and all(p[1] == 503 and p[2] for p in during), during  # a clear 503 with Retry-After
    assert all(p[1] in (201, 503) for p in pushes), [p[:3] for p in pushes]
    assert any(p[1] == 201 and p[0] > up_at for p in pushes), "pushes never recovered"
    for _, status, _, data in pushes:  # nothing acknowledged was lost or damaged
        if status == 201 and data is not None:
            got = client.request("GET", f"/v2/{repo}/blobs/{sha256(data)}")
            assert got.status == 200 and got.body == data
    assert client.get_manifest(repo, "stable").status == 200


@pytest.mark.parametrize("workers", [2])
def test_workers_without_redis_serialise_patches_with_lock_files(tmp_path, workers):
    """http.workers > 1 on one host, no Redis: the flock leases keep one PATCH per offset."""
    from fixtures_registry import start_or_fail

    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "w", http_extra=f"workers: {workers}\n")
    try:
        c = reg.client
        loc = _post_upload(c, "workers/race")
        content = b""
        for round_ in range(4):
            chunk = os.urandom(2_000_000)
            start, end = len(content), len(content) + len(chunk) - 1
            answers = _all_at_once([
                (lambda: Client("127.0.0.1", reg.port).request(
                    "PATCH", loc, body=chunk, headers={**OCTETS, "Content-Range": f"{start}-{end}"}))
                for _ in range(4)])
            assert sorted(a.status for a in answers) == [202, 416, 416, 416], answers
            content += chunk
        put = c.request("PUT", loc, query={"digest": sha256(content)})
        assert put.status == 201, put
    finally:
        reg.stop()


def test_collector_and_repo_delete_invalidate_the_shared_cache(tmp_path, redis_server):
    """``registry garbage-collect`` and ``registry repo delete`` run in their own process: with
    ``storage.cache.blobdescriptor: redis`` they drop what the serving instance cached, so what
    they deleted is a 404 there at once (a stale cache would still answer the manifest's bytes
    and the layer's size)."""
    import yaml

    from fixtures_registry import start_or_fail

    extra = yaml.safe_dump({
        "redis": {"addr": redis_server.addr, "dialtimeout": "500ms"},
        "state": {"keyprefix": f"gc{random.randrange(1 << 30)}:"},  # apart from the scale-out's keys
    })
    storage = {"filesystem": {"rootdirectory": str(tmp_path / "root")}, "redirect": {"disable": True},
               "delete": {"enabled": True}, "cache": {"blobdescriptor": "redis"}}
    reg = start_or_fail("ours", tmp_path / "root", tmp_path / "w", extra, storage=storage)
    try:
        c = reg.client
        kept, untagged, gone = (make_image(label=f"gc-cache-{n}") for n in ("kept", "untagged", "gone"))
        push_image(c, "gcc/a", kept, tag="v1")
        push_image(c, "gcc/a", untagged)
        push_image(c, "gcc/b", gone, tag="v1")

        def layer(image) -> str:  # type: ignore[no-untyped-def]
            return json.loads(image.manifest)["layers"][0]["digest"]

        def visible(repo: str, image) -> tuple[int, int]:  # type: ignore[no-untyped-def]
            return (c.get_manifest(repo, image.digest).status,
                    c.request("HEAD", f"/v2/{repo}/blobs/{layer(image)}").status)

        for _ in range(2):  # the second round is answered from the cache
            assert visible("gcc/a", kept) == visible("gcc/a", untagged) == visible("gcc/b", gone) == (200, 200)
        summary, proc = gc_cli(reg.config_path)
        assert summary["manifests_deleted"] == 1, proc.stderr
        assert visible("gcc/a", untagged) == (404, 404)
        assert visible("gcc/a", kept) == (200, 200)
        deleted = run_cli("repo", "delete", "gcc/b", "--config", str(reg.config_path))
        assert deleted.returncode == 0, deleted.stderr
        assert visible("gcc/b", gone) == (404, 404)
        assert visible("gcc/a", kept) == (200, 200)
    finally:
        reg.stop()


def gc_cli(config):  # type: ignore[no-untyped-def]
    from gc_support import gc

    return gc(config, "--offline", "-m")
