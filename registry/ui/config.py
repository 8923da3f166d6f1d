"""Typed ``ui:`` (ours): whether the registry serves the web UI, and where."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..config import ConfigError, Section

_PATH_RE = re.compile(r"(/[A-Za-z0-9._~-]+)+/?")


@dataclasses.dataclass
class UIConfig:
    enabled: bool = True
    #: URL path of the UI under ``http.prefix``; normalised to end with ``/``
    path: str = "/ui/"

    @classmethod
    def from_raw(cls, raw: Any) -> "UIConfig":
        s = Section(raw, "ui")
        out = cls.from_section(s)
        s.finish()
        return out

    @classmethod
    def from_section(cls, s: Section) -> "UIConfig":
        path = s.str("path", cls.path)
        if not _PATH_RE.fullmatch(path) or "/." in path:
            raise ConfigError(f"ui.path: expected an absolute URL path like /ui/, got {path!r}")
        path = path.rstrip("/") + "/"
        if path in ("/v2/", "/debug/"):
            raise ConfigError(f"ui.path: {path} belongs to the registry API")
        return cls(s.bool("enabled", True), path)
