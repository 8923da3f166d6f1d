"""The event model: distribution's event and envelope, and CloudEvents 1.0 as another format.

An event is kept as the JSON object distribution sends (built once, stored in the outbox as is,
so a redelivery sends the same bytes and the same ``id``). Field presence follows distribution's
``omitempty`` rules: ``request.id``, ``request.method``, ``request.useragent`` always; the rest
when known.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

ENVELOPE_V1 = "application/vnd.docker.distribution.events.v1+json"  # distribution 2.x
ENVELOPE_V2 = "application/vnd.docker.distribution.events.v2+json"  # distribution 3.x
CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENT_BATCH = "application/cloudevents-batch+json"
#: a blob's media type in distribution's events (blobs carry none of their own)
BLOB_MEDIA_TYPE = "application/octet-stream"
CLOUDEVENT_TYPE_PREFIX = "org.distribution.registry."


def timestamp(now: dt.datetime | None = None) -> str:
    """RFC 3339 with nanosecond digits, UTC (Go's time.Time JSON form)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


def new_event(action: str, target: dict[str, Any], request: dict[str, Any], actor: dict[str, Any],
              source: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": timestamp(),
        "action": action,
        "target": target,
        "request": request,
        "actor": actor,
        "source": source,
    }


def target(*, repository: str, media_type: str | None = None, digest: str | None = None, size: int | None = None,
           url: str | None = None, tag: str | None = None, from_repository: str | None = None,
           references: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if media_type:
        out["mediaType"] = media_type
    if size:
        out["size"] = size
    if digest:
        out["digest"] = digest
    if size:
        out["length"] = size
    out["repository"] = repository
    if from_repository:
        out["fromRepository"] = from_repository
    if url:
        out["url"] = url
    if tag:
        out["tag"] = tag
    if references:
        out["references"] = references
    return out


def request_record(*, request_id: str, addr: str | None, host: str | None, method: str, useragent: str
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {"id": request_id}
    if addr:
        out["addr"] = addr
    if host:
        out["host"] = host
    out["method"] = method
    out["useragent"] = useragent
    return out


def envelope(events: list[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    """The body and Content-Type of one delivery of ``events`` in ``fmt``."""
    if fmt == "cloudevents":
        converted = [cloudevent(e) for e in events]
        if len(converted) == 1:
            return _dumps(converted[0]), CLOUDEVENT
        return _dumps(converted), CLOUDEVENT_BATCH
    media_type = ENVELOPE_V2 if fmt == "distribution-v2" else ENVELOPE_V1
    return _dumps({"events": events}), media_type


def cloudevent(event: dict[str, Any]) -> dict[str, Any]:
    """CloudEvents 1.0 (structured JSON): the distribution event is the ``data``; ``id`` and
    ``time`` are the event's; ``source`` names the registry instance; ``subject`` the content."""
    target = event.get("target", {})
    source = event.get("source", {})
    subject = target.get("repository", "")
    if target.get("tag"):
        subject += f":{target['tag']}"
    elif target.get("digest"):
        subject += f"@{target['digest']}"
    out = {
        "specversion": "1.0",
        "id": event["id"],
        "source": f"//{source.get('addr') or 'registry'}",
        "type": CLOUDEVENT_TYPE_PREFIX + event["action"],
        "time": event["timestamp"],
        "datacontenttype": "application/json",
        "data": event,
    }
    if subject:
        out["subject"] = subject
    return out


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
