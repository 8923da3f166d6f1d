"""Template filters: sizes, digests, times, commands. Values are escaped by the templates."""

from __future__ import annotations

import datetime as dt
import json
import shlex
from typing import Any

from .model import parse_time


def human_size(value: int | None) -> str:
    """``1.5 MB`` (decimal units, as registries and docker show sizes); ``—`` when unknown."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{value} B"


def short_digest(value: str | None) -> str:
    """``sha256:0123456789ab`` (12 hex digits, as docker shows image IDs)."""
    if not value:
        return ""
    algorithm, _, hex_part = str(value).partition(":")
    return f"{algorithm}:{hex_part[:12]}" if hex_part else str(value)[:19]


def when(value: str | dt.datetime | None) -> str:
    """``2024-01-01 12:30 UTC``, or the text as given when it is no RFC 3339 time."""
    parsed = value if isinstance(value, dt.datetime) else parse_time(value)
    if parsed is None:
        return str(value) if value else "—"
    return parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: str | None) -> str:
    parsed = parse_time(value)
    return parsed.isoformat() if parsed else ""


def command(value: Any) -> str:
    """A config's ``Entrypoint``/``Cmd`` (a list, or a string) as one shell-quoted line."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(shlex.quote(str(v)) for v in value)
    return str(value)


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def string_map(value: Any) -> list[tuple[str, str]]:
    """Sorted (key, value) pairs of a labels or annotations object; values shown as text."""
    if not isinstance(value, dict):
        return []
    return sorted((str(k), v if isinstance(v, str) else as_json(v)) for k, v in value.items())


FILTERS = {
    "size": human_size,
    "short": short_digest,
    "when": when,
    "iso": iso,
    "command": command,
    "json": as_json,
    "pairs": string_map,
}
