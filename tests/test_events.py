"""Notifications: a real HTTP receiver gets every event of a scripted session once, in order,
across a registry kill -9 and a receiver outage; the envelope has every field distribution 2.8.2
sends (the reference itself posts to the same receiver); CloudEvents per endpoint; the outbox's
bounds; and the outbox with its delivery lease on every storage driver, two instances at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from backends import *  # noqa: F401,F403  (the <name>_storage fixtures)
from backends import BACKENDS
from fixtures_registry import (
    REFERENCE_BINARY,
    Client,
    make_image,
    push_image,
    start_or_fail,
)
from helpers import require_module, require_tool
from observe_support import Receiver, debug_section, scrape, start_server, total, wait_for


def endpoint(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", "test-endpoint"), "url": receiver.url, "timeout": "2s",
            "backoff": "100ms", "maxbackoff": "500ms", "threshold": 3, **extra}


def summary(event: dict[str, Any]) -> tuple[str, str, str, str]:
    t = event["target"]
    return (event["action"], t["repository"], t.get("digest", ""), t.get("tag", ""))


def push_events(repo: str, image: Any, tag: str) -> list[tuple[str, str, str, str]]:
    """What a push of ``image`` (blobs missing before) sends: each blob, then the manifest."""
    return [("push", repo, d, "") for d in image.blobs] + [("push", repo, image.digest, tag)]


@pytest.fixture
def receiver() -> Any:
    r = Receiver().start()
    yield r
    r.close()


def test_session_arrives_once_in_order_across_kill_and_outage(tmp_path: Path, receiver: Receiver) -> None:
    server = start_server(tmp_path, http=debug_section(), notifications={"endpoints": [endpoint(receiver)]})
    expected: list[tuple[str, str, str, str]] = []
    try:
        client = server.client
        # part 1: receiver up
        one = make_image(label="events-one")
        push_image(client, "ev/app", one, "v1")
        expected += push_events("ev/app", one, "v1")
        assert client.get_manifest("ev/app", "v1").status == 200
        expected.append(("pull", "ev/app", one.digest, "v1"))
        assert client.get_manifest("ev/app", "v1", method="HEAD").status == 200  # a HEAD is no pull
        layer = next(iter(one.blobs))
        assert client.request("GET", f"/v2/ev/app/blobs/{layer}").status == 200
        expected.append(("pull", "ev/app", layer, ""))
        mount = client.request("POST", "/v2/ev/other/blobs/uploads/", query={"mount": layer, "from": "ev/app"})
        assert mount.status == 201
        expected.append(("mount", "ev/other", layer, ""))
        wait_for(lambda: len(receiver.events()) >= len(expected), what="part 1 delivered")

        # part 2: the receiver is down; events wait in the outbox; the registry is killed
        receiver.stop()
        two = make_image(label="events-two")
        push_image(client, "ev/app", two, "v2")
        expected += push_events("ev/app", two, "v2")
        assert client.request("DELETE", "/v2/ev/app/manifests/v1").status == 202
        expected.append(("delete", "ev/app", "", "v1"))
        wait_for(lambda: total(scrape(server), "registry_notifications_status_total", code="error") > 0,
                 what="a failed delivery attempt")
        server.kill()

        # part 3: a new process on the same storage; more events while the receiver is still down
        server.start()
        client = server.client
        assert client.request("DELETE", f"/v2/ev/app/manifests/{two.digest}").status == 202
        expected += [("delete", "ev/app", two.digest, ""), ("delete", "ev/app", "", "v2")]
        assert client.request("DELETE", f"/v2/ev/other/blobs/{layer}").status == 202
        expected.append(("delete", "ev/other", layer, ""))
        time.sleep(1)
        receiver.start()
        # the killed process's delivery lease expires (15 s) before the new one delivers
        wait_for(lambda: len(receiver.events()) >= len(expected), timeout=60, what="every event")
        time.sleep(1.5)
        events = receiver.events()
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), "an event arrived twice"
        assert [summary(e) for e in events] == expected
        samples = scrape(server)
        assert total(samples, "registry_notifications_pending") == 0
        assert total(samples, "registry_notifications_dropped_total") == 0
    finally:
        server.stop()


def _paths(obj: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.add(prefix + key)
            out |= _paths(value, prefix + key + ".")
    elif isinstance(obj, list) and obj:
        out |= _paths(obj[0], prefix + "[].")
    return out


def _kind(event: dict[str, Any]) -> str:
    t = event["target"]
    what = "tag" if t.get("tag") and not t.get("digest") else (
        "blob" if t.get("mediaType", "application/octet-stream") == "application/octet-stream" and
        not t.get("references") and "manifests" not in t.get("url", "/manifests/") else "manifest")
    return f"{event['action']}:{what}"


def _session(client: Client, prefix: str) -> None:
    one = make_image(label=f"{prefix}-envelope")
    push_image(client, f"{prefix}/app", one, "v1")
    assert client.get_manifest(f"{prefix}/app", "v1").status == 200
    layer = next(iter(one.blobs))
    assert client.request("GET", f"/v2/{prefix}/app/blobs/{layer}").status == 200
    assert client.request("POST", f"/v2/{prefix}/other/blobs/uploads/",
                          query={"mount": layer, "from": f"{prefix}/app"}).status == 201
    assert client.request("DELETE", f"/v2/{prefix}/app/manifests/{one.digest}").status == 202
    assert client.request("DELETE", f"/v2/{prefix}/other/blobs/{layer}").status == 202


def test_envelope_has_every_field_distribution_sends(tmp_path: Path, receiver: Receiver) -> None:
    require_tool(REFERENCE_BINARY, hint="distribution 2.8.2: `make apt-deps` installs docker-registry")
    import yaml

    extra = yaml.safe_dump({"notifications": {"events": {"includereferences": True}, "endpoints": [
        {"name": "ref", "url": receiver.url, "timeout": "2s", "threshold": 5, "backoff": "1s",
         "headers": {"X-Test": ["reference"]}}]}})
    reference = start_or_fail("reference", tmp_path / "ref-root", tmp_path / "ref", extra_config="\n" + extra + "\n")
    try:
        _session(reference.client, "ref")
        wait_for(lambda: len(receiver.events()) >= 9, what="the reference's events")
        time.sleep(1)
    finally:
        reference.stop()
    theirs = list(receiver.events())
    their_type = {p["headers"]["Content-Type"] for p in receiver.posts}
    receiver.posts.clear()
    server = start_server(tmp_path, notifications={"events": {"includereferences": True}, "endpoints": [
        endpoint(receiver, headers={"X-Test": ["ours"]})]})
    try:
        _session(server.client, "ours")
        wait_for(lambda: len(receiver.events()) >= 9, what="our events")
    finally:
        server.stop()
    ours = receiver.events()
    assert {p["headers"]["Content-Type"] for p in receiver.posts} == their_type == {
        "application/vnd.docker.distribution.events.v1+json"}
    assert {p["headers"]["X-Test"] for p in receiver.posts} == {"ours"}
    fields_theirs: dict[str, set[str]] = {}
    for e in theirs:
        fields_theirs.setdefault(_kind(e), set()).update(_paths(e))
    fields_ours: dict[str, set[str]] = {}
    for e in ours:
        fields_ours.setdefault(_kind(e), set()).update(_paths(e))
    for kind, fields in fields_theirs.items():
        if kind == "pull:blob" and kind not in fields_ours:
            continue
        assert kind in fields_ours, f"we sent no {kind} event; they sent {sorted(fields_theirs)}"
        missing = fields - fields_ours[kind]
        assert not missing, f"{kind}: distribution sends {sorted(missing)}, we do not"
    for e in ours:
        assert e["source"]["instanceID"] and e["source"]["addr"].endswith(f":{server.port}")
        assert e["request"]["id"] and e["request"]["method"] in ("GET", "PUT", "POST", "DELETE")


def test_cloudevents_format(tmp_path: Path, receiver: Receiver) -> None:
    cloudevents_http = require_module("cloudevents.v1.http")
    server = start_server(tmp_path, notifications={"endpoints": [endpoint(receiver, format="cloudevents",
                                                                          maxbatch=1)]})
    try:
        image = make_image(label="cloudevents")
        push_image(server.client, "ce/app", image, "v1")
        wait_for(lambda: len(receiver.posts) >= len(image.blobs) + 1, what="cloud events")
    finally:
        server.stop()
    for post in receiver.posts:
        assert post["headers"]["Content-Type"] == "application/cloudevents+json"
        event = cloudevents_http.from_http(post["headers"], post["body"])  # the SDK's own parsing
        data = event.data
        assert event["specversion"] == "1.0" and event["id"] == data["id"]
        assert event["type"] == f"org.distribution.registry.{data['action']}"
        assert event["source"].startswith("//") and event["time"] == data["timestamp"]
        assert event["subject"].startswith("ce/app")
    manifest = json.loads(receiver.posts[-1]["body"])
    assert manifest["subject"] == "ce/app:v1" and manifest["data"]["target"]["digest"] == image.digest


def test_bounds_drop_the_oldest_and_a_refused_batch(tmp_path: Path) -> None:
    refuse: set[str] = set()

    def status(posted: dict[str, Any]) -> int:
        return 400 if any(e["target"]["repository"] in refuse for e in posted["events"]) else 200

    receiver = Receiver(status=status)
    server = start_server(tmp_path, http=debug_section(), notifications={"endpoints": [
        endpoint(receiver, maxevents=3, threshold=2, backoff="50ms", maxbackoff="100ms", ignore={"actions": ["pull"]})]})
    try:
        client = server.client
        blobs = [f"bounded blob {i}".encode() for i in range(5)]
        for blob in blobs:  # receiver down: five push events queue up, the bound is three
            assert client.push_blob("bound/app", blob).status == 201
        assert client.request("GET", "/v2/bound/app/tags/list").status in (200, 404)
        wait_for(lambda: total(scrape(server), "registry_notifications_dropped_total", reason="queue_full") == 2,
                 what="the two oldest dropped")
        receiver.start()
        wait_for(lambda: len(receiver.events()) == 3, what="the three newest delivered")
        from fixtures_registry import sha256

        assert [e["target"]["digest"] for e in receiver.events()] == [sha256(b) for b in blobs[2:]]
        refuse.add("bound/refused")
        assert client.push_blob("bound/refused", b"refused").status == 201
        assert client.push_blob("bound/after", b"after").status == 201
        wait_for(lambda: len(receiver.events()) == 4, what="the event after the refused one")
        assert receiver.events()[-1]["target"]["repository"] == "bound/after"
        assert total(scrape(server), "registry_notifications_dropped_total", reason="rejected") == 1
        lines = server.log_lines()
        import re

        dropped = [re.search(r"dropped (\d+) event\(s\) \(queue_full\)", json.loads(line)["msg"]) for line in lines]
        assert sum(int(m.group(1)) for m in dropped if m) == 2
        assert any("(rejected)" in json.loads(line)["msg"] for line in lines)
    finally:
        server.stop()
        receiver.close()


# --------------------------------------------------------------------------- every driver, two instances


async def _two_instances(driver_a: Any, driver_b: Any, url: str) -> None:
    from registry.events.config import EndpointConfig
    from registry.events.delivery import Delivery
    from registry.events.outbox import Lease, Outbox

    ep = EndpointConfig(name="shared", url=url, timeout=5, backoff=0.1, maxbackoff=0.2)
    instances = []
    for name, driver in (("a", driver_a), ("b", driver_b)):
        outbox = Outbox(driver, ep.key, f"writer{name}")
        instances.append((outbox, Delivery(ep, outbox, Lease(driver, ep.key, f"instance-{name}"))))
    for i in range(6):
        outbox = instances[i % 2][0]
        await outbox.append([{"id": f"event-{i}", "action": "push", "target": {"repository": "x"}}])
        await asyncio.sleep(0.002)
    for _, delivery in instances:
        delivery.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (await instances[0][0].segments()):
            await asyncio.sleep(0.1)
        assert not await instances[0][0].segments(), "the outbox was not drained"
    finally:
        for _, delivery in instances:
            await delivery.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_storage")


async def test_outbox_and_lease_on_every_driver_two_instances(storage: Any, receiver: Receiver) -> None:
    location = f"events-{time.time_ns()}"
    driver_a, driver_b = storage.make(location), storage.make(location)
    try:
        await _two_instances(driver_a, driver_b, receiver.url)
    finally:
        await driver_a.close()
        await driver_b.close()
    ids = [e["id"] for e in receiver.events()]
    assert ids == [f"event-{i}" for i in range(6)], ids  # each once, in the order written
