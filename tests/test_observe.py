"""Metrics, health, logs and traces of a real registry process, seen from outside.

- skopeo (a real client) pushes and pulls; ``/metrics`` on ``http.debug.addr``, parsed with
  prometheus-client's parser, moves by exactly what was pushed and pulled;
- with ``http.workers: 2`` one scrape counts the requests both workers served;
- the storage fails (the root made immutable with ``chattr``): ``/debug/health``, ``/readyz`` and
  every API request go 503 and come back when it is writable again; ``/livez`` stays 200;
- every log line is JSON with ``log.fields``, every line a request causes carries its id (also
  in ``X-Request-Id``), no upload ``_state`` appears in any line;
- ``OTEL_TRACES_EXPORTER=console``: a server span per request, child spans per driver call, the
  caller's ``traceparent`` honoured.
"""

from __future__ import annotations

import json
import os
import time
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fixtures_registry import make_image, push_image, sha256
from helpers import missing, require_module, require_tool
from observe_support import debug_section, scrape, start_server, total, wait_for

MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"


def skopeo_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "skopeo-home"
    home.mkdir()
    (home / "auth.json").write_text("{}")
    (home / "registries.conf").write_text("unqualified-search-registries = []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json"), TMPDIR=str(home),
               CONTAINERS_REGISTRIES_CONF=str(home / "registries.conf"), XDG_RUNTIME_DIR=str(home))
    return env


def skopeo(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def write_oci_layout(path: Path, image, tag: str) -> None:  # type: ignore[no-untyped-def]
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for digest, data in {**image.blobs, image.digest: image.manifest}.items():
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def test_metrics_follow_skopeo_push_and_pull(tmp_path: Path, skopeo_binary: str) -> None:
    server = start_server(tmp_path, http=debug_section())
    try:
        env = skopeo_env(tmp_path)
        image = make_image(label="metrics", n_layers=3)
        write_oci_layout(tmp_path / "src", image, "v1")
        blob_bytes = sum(len(b) for b in image.blobs.values())
        before = scrape(server)
        ref = f"docker://127.0.0.1:{server.port}/observe/metrics:v1"
        skopeo(env, "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{tmp_path / 'src'}:v1", ref)
        pushed = scrape(server)

        def moved(name: str, a: dict, b: dict, **labels: str) -> float:
            return total(b, name, **labels) - total(a, name, **labels)

        assert moved("registry_pushes_total", before, pushed, kind="manifest", media_type=image.media_type) == 1
        assert moved("registry_pushes_total", before, pushed, kind="blob") == len(image.blobs)
        assert moved("registry_http_requests_total", before, pushed, route=MANIFEST_ROUTE, method="PUT",
                     code="201") == 1
        assert moved("registry_http_request_bytes_total", before, pushed) >= blob_bytes + len(image.manifest)
        assert moved("registry_storage_action_seconds_count", before, pushed, driver="filesystem",
                     action="put_contents") > 0  # small files go in batches (links, manifest)
        assert moved("registry_storage_bytes_total", before, pushed, direction="write") >= blob_bytes
        assert total(pushed, "registry_uploads_in_progress") == 0
        assert total(pushed, "registry_pulls_total") == total(before, "registry_pulls_total")
        # histogram counts equal request counts, route by route
        assert total(pushed, "registry_http_request_duration_seconds_count", route=MANIFEST_ROUTE, method="PUT") \
            == total(pushed, "registry_http_requests_total", route=MANIFEST_ROUTE, method="PUT")

        skopeo(env, "copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'back'}:v1")
        pulled = scrape(server)
        assert moved("registry_pulls_total", pushed, pulled, kind="manifest", media_type=image.media_type) == 1
        assert moved("registry_pulls_total", pushed, pulled, kind="blob") == len(image.blobs)
        assert moved("registry_http_response_bytes_total", pushed, pulled) >= blob_bytes + len(image.manifest)
        assert moved("registry_pushes_total", pushed, pulled) == 0
        assert moved("registry_storage_errors_total", before, pulled) == 0
        # OpenMetrics on request, from prometheus-client's encoder
        req = urllib.request.Request(server.debug_url + "/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert resp.read().rstrip().endswith(b"# EOF")
    finally:
        server.stop()


def test_http_metrics_with_the_access_log_off_count_every_body_byte(tmp_path: Path) -> None:
    """The observe middleware records the HTTP metrics itself (no access hook is installed when
    the access log is off): a blob GET served by sendfile is recorded once its body is out."""
    from fixtures_registry import Client

    server = start_server(tmp_path, http=debug_section(), log={"accesslog": {"disabled": True}})
    try:
        client = Client("127.0.0.1", server.port)
        blob = os.urandom(300_000)
        digest = sha256(blob)
        assert client.push_blob("observe/bytes", blob, digest).status == 201
        before = scrape(server)
        blob_route = "/v2/{name}/blobs/{digest}"
        got = client.request("GET", f"/v2/observe/bytes/blobs/{digest}")
        assert got.status == 200 and got.body == blob
        assert client.request("HEAD", f"/v2/observe/bytes/blobs/{digest}").status == 200
        missing = client.request("GET", f"/v2/observe/bytes/blobs/sha256:{'0' * 64}")
        assert missing.status == 404
        after = scrape(server)

        def moved(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        # the file's bytes, the 404's error body, nothing for the HEAD
        assert moved("registry_http_response_bytes_total", route=blob_route) == len(blob) + len(missing.body)
        assert moved("registry_http_request_duration_seconds_count", route=blob_route, method="GET", code="200") == 1
        assert moved("registry_http_request_duration_seconds_count", route=blob_route, method="HEAD", code="200") == 1
        assert moved("registry_http_requests_total", route=blob_route, method="GET", code="404") == 1
        assert moved("registry_http_request_duration_seconds_sum", route=blob_route) > 0
        assert total(after, "registry_http_request_bytes_total", route="/v2/{name}/blobs/uploads/{uuid}") >= len(blob)
        assert not [line for line in server.log_lines() if "http.request.uri" in line]  # no access lines
    finally:
        server.stop()


def test_one_scrape_sees_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, http=debug_section(workers=2), log={"accesslog": {"disabled": False}})
    try:
        def pids() -> set[int]:
            return {json.loads(line).get("pid") for line in server.log_lines()
                    if json.loads(line).get("http.request.uri") == "/v2/"}

        made = 0
        while len(pids()) < 2 and made < 400:  # the second worker may still be starting
            for _ in range(20):  # one connection each: SO_REUSEPORT spreads connections over workers
                assert server.client.request("GET", "/v2/").status == 200
            made += 20
        assert len(pids()) == 2, f"both workers should have served: {pids()}"
        time.sleep(0.5)  # each request is counted just after its response went out
        samples = scrape(server)
        served = sum(1 for line in server.log_lines() if json.loads(line).get("http.request.uri") == "/v2/")
        # exactly the requests both workers logged, summed by the one scrape
        assert total(samples, "registry_http_requests_total", route="/v2/", method="GET", code="200") == served
        assert served >= made
    finally:
        server.stop()


def _chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", "-R", flag, str(path)], capture_output=True).returncode == 0


def _status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_storage_failure_turns_api_503_and_recovery_back(tmp_path: Path) -> None:
    require_tool("chattr", hint="e2fsprogs has it; it makes the storage unwritable as root")
    root = tmp_path / "root"
    out_of_rotation = tmp_path / "maintenance"
    server = start_server(tmp_path, root=root, http=debug_section(),
                          health={"storagedriver": {"enabled": True, "interval": "300ms", "threshold": 2},
                                  "file": [{"file": str(out_of_rotation), "interval": "200ms"}]})
    base = f"http://127.0.0.1:{server.port}"
    try:
        image = make_image(label="health")
        push_image(server.client, "observe/health", image, "v1")
        assert _status(server.debug_url + "/debug/health") == (200, b"{}")
        if not _chattr("+i", root):
            missing("this filesystem or user cannot set the immutable attribute")
        try:
            status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
                _status(server.debug_url + "/debug/health")), what="/debug/health to fail")
            assert "storagedriver_filesystem" in json.loads(body)
            api = server.client.get_manifest("observe/health", "v1")
            assert api.status == 503 and api.error_codes() == ["UNAVAILABLE"], api
            assert server.client.request("GET", "/v2/").status == 503
            assert _status(base + "/readyz")[0] == 503
            assert _status(base + "/livez")[0] == 200
            assert total(scrape(server), "registry_health_check_up", check="storagedriver_filesystem") == 0
        finally:
            _chattr("-i", root)
        wait_for(lambda: _status(server.debug_url + "/debug/health")[0] == 200, what="recovery")
        assert server.client.get_manifest("observe/health", "v1").status == 200
        assert _status(base + "/readyz")[0] == 200
        # distribution's file check: a file takes the registry out of rotation
        out_of_rotation.write_text("maintenance")
        wait_for(lambda: server.client.request("GET", "/v2/").status == 503, what="file check")
        out_of_rotation.unlink()
        wait_for(lambda: server.client.request("GET", "/v2/").status == 200, what="file check recovery")
    finally:
        _chattr("-i", root)
        server.stop()


def test_every_log_line_is_json_with_fields_and_request_ids(tmp_path: Path) -> None:
    server = start_server(tmp_path, log={"level": "info", "formatter": "json", "fields": {"service": "registry",
                                                                                           "env": "test"}})
    try:
        client = server.client
        image = make_image(label="logs")
        push_image(client, "observe/logs", image, "v1")
        # a chunked upload committed with a sha512 digest: the registry logs (in the request) that it
        # re-reads the data; that line must carry the request's id
        data = b"log me" * 1000
        start = client.request("POST", "/v2/observe/logs/blobs/uploads/")
        state = start.location_path().split("_state=", 1)[1]
        patch = client.request("PATCH", start.location_path(), body=data,
                               headers={"Content-Type": "application/octet-stream"})
        import hashlib

        put = client.request("PUT", patch.location_path(), query={"digest": "sha512:" + hashlib.sha512(data).hexdigest()})
        assert put.status == 201, put
        request_id = put.header("X-Request-Id")
        assert request_id
        given = client.request("GET", "/v2/", headers={"X-Request-Id": "proxy-assigned-id-123"})
        assert given.header("X-Request-Id") == "proxy-assigned-id-123"
        bad = client.request("GET", "/v2/", headers={"X-Request-Id": "bad id\twith spaces"})
        assert bad.header("X-Request-Id") != "bad id\twith spaces"
    finally:
        server.stop()
    lines = server.log_lines()
    entries = [json.loads(line) for line in lines]  # every line parses
    assert all(e["service"] == "registry" and e["env"] == "test" for e in entries)
    assert all({"time", "level", "msg"} <= set(e) for e in entries)
    rehash = [e for e in entries if "re-reading" in e["msg"]]
    assert rehash and rehash[0]["http.request.id"] == request_id
    access = [e for e in entries if e.get("logger") == "registry.access"]
    assert {e["http.request.id"] for e in access if e["http.request.method"] == "PUT"} >= {request_id}
    assert any(e["http.request.id"] == "proxy-assigned-id-123" for e in access)
    assert all(e["http.response.status"] and "http.response.duration" in e for e in access)
    assert not any(state in line for line in lines), "an upload _state value reached the log"
    assert any("_state=REDACTED" in e["http.request.uri"] for e in access)


def test_logstash_and_text_formats(tmp_path: Path) -> None:
    for formatter in ("logstash", "text"):
        server = start_server(tmp_path / formatter, log={"formatter": formatter, "fields": {"service": "reg"}})
        try:
            rid = server.client.request("GET", "/v2/").header("X-Request-Id")
        finally:
            server.stop()
        lines = server.log_lines()
        if formatter == "logstash":
            entries = [json.loads(line) for line in lines]
            assert all(e["@version"] == "1" and "@timestamp" in e and "message" in e and e["service"] == "reg"
                       for e in entries)
            assert any(e.get("http.request.id") == rid for e in entries)
        else:
            assert all("service=reg" in line.split("\n")[0] for line in lines)
            assert any(f"request_id={rid}" in line and "GET /v2/" in line for line in lines)


def test_traces_for_requests_and_driver_calls(tmp_path: Path) -> None:
    require_module("opentelemetry.sdk")
    server = start_server(tmp_path, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "registry-test",
                                         "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        image = make_image(label="traces")
        push_image(server.client, "observe/traces", image, "v1")
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        got = server.client.request(
            "GET", "/v2/observe/traces/manifests/v1",
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
                     "Accept": image.media_type})
        assert got.status == 200
    finally:
        server.stop()  # SIGTERM: the batch processor flushes
    spans = []
    for line in server.log_lines():
        if line.startswith("{") and '"trace_id"' in line:
            spans.append(json.loads(line))
    mine = [s for s in spans if s["context"]["trace_id"] == "0x" + trace_id]
    [request_span] = [s for s in mine if s["kind"] == "SpanKind.SERVER"]
    assert request_span["name"] == f"GET {MANIFEST_ROUTE}"
    assert request_span["attributes"]["http.response.status_code"] == 200
    assert request_span["parent_id"] == "0x00f067aa0ba902b7"
    assert request_span["resource"]["attributes"]["service.name"] == "registry-test"
    children = [s for s in mine if s["parent_id"] == request_span["context"]["span_id"]]
    assert {s["name"] for s in children} >= {"storage.get_content"}
    assert all(s["attributes"]["registry.storage.driver"] == "filesystem" for s in children)
    assert sha256(image.manifest) == image.digest


def test_auth_failures_by_reason(tmp_path: Path) -> None:
    import base64

    import bcrypt

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:" + bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode() + "\n")
    server = start_server(tmp_path, http=debug_section(),
                          auth={"htpasswd": {"realm": "test", "path": str(htpasswd)}})
    try:
        def get(password: str | None) -> int:
            headers = {}
            if password is not None:
                headers["Authorization"] = "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()
            return server.client.request("GET", "/v2/", headers=headers).status

        before = scrape(server)
        assert [get(None), get("wrong"), get("wrong"), get("right")] == [401, 401, 401, 200]
        after = scrape(server)
        for reason, count in (("missing", 1), ("invalid_credentials", 2)):
            assert total(after, "registry_auth_failures_total", reason=reason) \
                - total(before, "registry_auth_failures_total", reason=reason) == count
    finally:
        server.stop()


def test_http_and_tcp_checks(tmp_path: Path) -> None:
    """distribution's http (HEAD must answer statuscode) and tcp (a connection must open) checks."""
    import socket

    from observe_support import Receiver

    answer = {"status": 200}
    downstream = Receiver(status=lambda posted: answer["status"]).start()  # answers HEAD /events too
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    tcp_addr = f"127.0.0.1:{listener.getsockname()[1]}"
    server = start_server(tmp_path, health={
        "http": [{"uri": downstream.url, "statuscode": 200, "timeout": "1s", "interval": "200ms", "threshold": 2,
                  "headers": {"X-Probe": ["registry"]}}],
        "tcp": [{"addr": tcp_addr, "timeout": "1s", "interval": "200ms"}]})
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert server.client.request("GET", "/v2/").status == 200
        answer["status"] = 500
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(_status(base + "/readyz")),
                                what="the http check to fail")
        assert downstream.url in json.loads(body)
        answer["status"] = 200
        wait_for(lambda: _status(base + "/readyz")[0] == 200, what="the http check to pass")
        listener.close()
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(_status(base + "/readyz")),
                                what="the tcp check to fail")
        assert tcp_addr in json.loads(body)
        assert server.client.request("GET", "/v2/").status == 503
    finally:
        server.stop()
        downstream.close()
        listener.close()


def test_object_store_outage_turns_api_503_and_back(tmp_path: Path) -> None:
    """The S3 driver on a moto server that is stopped, then started again on the same port."""
    import emulators
    from helpers import stop_process

    emu = emulators.start_moto()
    port = int(emu.endpoint.rsplit(":", 1)[1])
    procs = [emu.proc]
    try:
        params = emulators.s3_params(emu)
        server = start_server(tmp_path, storage={"s3": params, "delete": {"enabled": True}},
                              health={"storagedriver": {"enabled": True, "interval": "1s", "threshold": 1}})
        try:
            wait_for(lambda: server.client.request("GET", "/v2/").status == 200, timeout=60, what="healthy")
            push_image(server.client, "observe/s3", make_image(label="s3-health"), "v1")
            stop_process(emu.proc)
            wait_for(lambda: server.client.request("GET", "/v2/").status == 503, timeout=60, what="503 on outage")
            api = server.client.get_manifest("observe/s3", "v1")
            assert api.status == 503 and api.error_codes() == ["UNAVAILABLE"]
            exe = emu.proc.args[0]
            proc, log = emulators._popen([exe, "-H", "127.0.0.1", "-p", str(port)], emu.workdir)
            procs.append(proc)
            emulators._wait_http(emu.endpoint + "/moto-api/", proc, log)
            emulators.make_s3_bucket(emu, params["bucket"])  # moto keeps nothing across a restart
            wait_for(lambda: server.client.request("GET", "/v2/").status == 200, timeout=60, what="recovery")
            push_image(server.client, "observe/s3", make_image(label="s3-after"), "v2")
        finally:
            server.stop()
    finally:
        for proc in procs:
            stop_process(proc)
        shutil.rmtree(emu.workdir, ignore_errors=True)


@pytest.mark.parametrize("backend", ["times-its-own-calls", "decorated"])
async def test_metered_driver_times_each_call_and_counts_writer_bytes_once(tmp_path: Path, backend: str) -> None:
    """The fast paths (get_content/stat/list timed by the backend itself, or by closures around
    a driver that does not time its calls; writer bytes counted when the writer ends rather than
    per write) record what the slow ones did: one sample per call, a failure but not a missing
    path as an error, each written byte exactly once."""
    from drivers.base import PathNotFound, StorageError
    from drivers.factory import create_driver
    from faults import FaultyDriver
    from registry.observe.metrics import METRICS
    from registry.observe.storage import MeteredDriver

    real = create_driver("filesystem", {"rootdirectory": str(tmp_path)})
    assert real.times_own_calls
    driver = MeteredDriver(real if backend == "times-its-own-calls" else FaultyDriver(real))
    assert (real.timings is not None) == (backend == "times-its-own-calls")
    name = driver.name

    def calls(action: str) -> int:
        series = METRICS.storage_seconds.values.get((name, action))
        return sum(series[:-1]) if series else 0

    def written() -> int:
        return METRICS.storage_bytes.values.get((name, "write"), 0)

    def errors(action: str) -> int:
        return sum(v for k, v in METRICS.storage_errors.values.items() if k[:2] == (name, action))

    before = {a: calls(a) for a in ("get_content", "stat", "list", "writer_commit")}
    errors_before, written_before = errors("get_content"), written()
    await driver.put_content("/a/small", b"0123456789")
    assert await driver.get_content("/a/small") == b"0123456789"
    assert (await driver.stat("/a/small")).size == 10
    with pytest.raises(PathNotFound):
        await driver.get_content("/a/missing")
    assert await driver.list("/a") == ["/a/small"]
    assert calls("get_content") - before["get_content"] == 2
    assert calls("stat") - before["stat"] == 1 and calls("list") - before["list"] == 1
    assert errors("get_content") == errors_before  # a missing path is an answer
    os.symlink("loop", tmp_path / "a" / "loop")  # ELOOP: a real failure, not a missing path
    with pytest.raises(StorageError) as failed:
        await driver.get_content("/a/loop")
    assert not isinstance(failed.value, PathNotFound)
    assert errors("get_content") == errors_before + 1 and calls("get_content") - before["get_content"] == 3
    (tmp_path / "a" / "loop").unlink()
    series = METRICS.storage_seconds.values[(name, "get_content")]
    assert series[-1] > 0 and sum(series[:-1]) >= 2

    writer = await driver.writer("/a/blob")
    for piece in (b"x" * 1000, b"y" * 24, b"z" * 3000):
        await writer.write(piece)
    assert written() == written_before  # counted when the writer ends, not per write
    await writer.close()
    assert written() - written_before == 4024
    writer = await driver.writer("/a/blob", append=True)  # appending counts only the new bytes
    await writer.write(b"w" * 76)
    await writer.commit()
    await writer.close()  # after the commit: nothing counted twice
    assert written() - written_before == 4100
    assert calls("writer_commit") - before["writer_commit"] == 1
    assert await driver.get_content("/a/blob") == b"x" * 1000 + b"y" * 24 + b"z" * 3000 + b"w" * 76
    await driver.close()


def test_counter_tallies_and_amounts_are_counted_when_read_and_stay_bounded() -> None:
    """A hot path's appends (label values to a tally, numbers to an amounts list) count exactly
    as inc() would, alongside it; the lists never grow past FOLD_AT when the hot path folds, and
    a cleared counter keeps counting through the lists hot paths hold."""
    from registry.observe.metrics import FOLD_AT, Counter

    counter = Counter("test_total", "test", ("kind", "media_type"))
    pulls = counter.tally(("manifest",))
    sent = counter.amounts(("blob", "bytes"))
    pulls.extend(["a", "b", "a"])
    sent.extend([10, 5])
    counter.inc(("manifest", "a"), 2)
    assert counter.values == {("manifest", "a"): 4, ("manifest", "b"): 1, ("blob", "bytes"): 15}
    assert pulls == [] and sent == []  # counted in place
    for _ in range(3 * FOLD_AT):
        pulls.append("c")
        if len(pulls) >= FOLD_AT:
            counter.fold_tally(("manifest",))
        assert len(pulls) < FOLD_AT
    assert counter.values[("manifest", "c")] == 3 * FOLD_AT
    assert [["manifest", "b"], 1] in counter.snapshot()
    counter.clear()
    assert counter.values == {}
    sent.append(7)
    assert counter.values == {("blob", "bytes"): 7}


def test_histogram_counts_recorded_values_into_le_buckets_and_stays_bounded() -> None:
    """Hot paths append raw values; reading folds them: a value equal to a bound counts in that
    bound's bucket (Prometheus' ``le``), every value in the sum, the pending list never grows
    past FOLD_AT, and a cleared histogram keeps counting through the lists hot paths hold."""
    from registry.observe.metrics import FOLD_AT, Histogram

    hist = Histogram("test_seconds", "test", ("action",), buckets=(0.1, 1.0))
    hot = hist.samples(("get",))
    hot.extend([0.05, 0.1, 0.5, 1.0, 2.0])
    hist.observe(("put",), 0.2)
    assert hist.values[("get",)] == [2, 2, 1, pytest.approx(3.65)]
    assert hist.values[("put",)] == [0, 1, 0, pytest.approx(0.2)]
    assert hot == []  # folded in place
    for _ in range(3 * FOLD_AT):
        hist.observe(("put",), 5.0)
        assert len(hist.pending[("put",)]) < FOLD_AT
    assert hist.values[("put",)][2] == 3 * FOLD_AT
    hist.clear()
    assert hist.values == {}
    hot.append(0.01)  # the same list object still feeds the histogram
    assert hist.values[("get",)] == [1, 0, 0, pytest.approx(0.01)]
    assert [["get"], [1, 0, 0, pytest.approx(0.01)]] in hist.snapshot()


@pytest.mark.parametrize("backed", [True, False])
async def test_request_recorder_counts_the_same_through_attributes_or_properties(
        aiohttp_client, monkeypatch, backed: bool) -> None:
    """The recorder reads aiohttp's backing attributes (``_status``, ``_body``, ``_route``) when
    this aiohttp has them, else the public properties: either way, through the real observe
    middleware, one latency sample under the route's pattern, method and code per request, and
    the bodies' bytes sent."""
    from aiohttp import web

    from registry.observe import http
    from registry.observe.metrics import METRICS
    from registry.observe.setup import observe_middleware

    assert http._properties_are_backed()  # the aiohttp this project installs: the fast reads run
    monkeypatch.setattr(http, "_BACKED", backed)
    label = f"/v2/{{name}}/recorded-{backed}"

    async def handler(request: web.Request) -> web.Response:
        if request.query.get("answer") == "404":
            raise web.HTTPNotFound(text="none here")
        return web.Response(status=201, body=b"12345")

    app = web.Application(middlewares=[observe_middleware(metrics_on=True)])
    app.router.add_get(label, handler)
    client = await aiohttp_client(app)
    for query in ("", "?answer=404", ""):
        async with client.get(f"/v2/x/recorded-{backed}{query}") as resp:
            await resp.read()

    def requests(code: int) -> int:
        return sum(METRICS.http_duration.values.get((label, "GET", code), [0])[:-1])

    assert requests(201) == 2 and requests(404) == 1
    assert METRICS.http_sent.values[(label,)] == 2 * 5 + len("none here")


async def test_a_serving_process_counts_appended_values_every_few_seconds() -> None:
    """The hot paths append without a length check; fold_periodically counts every metric's
    appended values in place, so the lists stay bounded by time without a scrape."""
    import asyncio

    from registry.observe.metrics import Metrics

    metrics = Metrics()
    latencies = metrics.storage_seconds.samples(("filesystem", "stat"))
    pulls = metrics.pulls.tally(("manifest",))
    latencies.extend([0.001, 0.002])
    pulls.extend(["application/vnd.oci.image.manifest.v1+json"] * 3)
    folding = asyncio.create_task(metrics.fold_periodically(0.01))
    try:
        for _ in range(200):
            if not latencies and not pulls:
                break
            await asyncio.sleep(0.01)
    finally:
        folding.cancel()
    assert latencies == [] and pulls == []  # counted in place, without anyone reading the values
    assert sum(metrics.storage_seconds._series[("filesystem", "stat")][:-1]) == 2
    assert metrics.pulls._counts[("manifest", "application/vnd.oci.image.manifest.v1+json")] == 3
