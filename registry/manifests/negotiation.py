"""Content negotiation: which stored manifests a client's ``Accept`` headers let us serve."""

from __future__ import annotations

from .. import mediatypes as mt


#: kinds served only to clients that accept them (as the reference does for OCI types)
NEGOTIATED_MEDIA_TYPES = frozenset({mt.OCI_MANIFEST, mt.OCI_INDEX})


def accepted_types(accept_values: list[str]) -> set[str]:
    """Media types named in Accept headers (repeated headers and comma lists merged; ``q=0`` out)."""
    out: set[str] = set()
    for header in accept_values:
        for entry in header.split(","):
            base, _, params = entry.partition(";")
            base = base.strip().lower()
            if not base:
                continue
            q = 1.0
            for param in params.split(";"):
                key, _, value = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(value.strip())
                    except ValueError:
                        q = 1.0
            if q > 0:
                out.add(base)
    return out


def acceptable(media_type: str, accept_values: list[str]) -> bool:
    """Whether a stored manifest of ``media_type`` may be served to a client with this Accept.

    No Accept at all, ``*/*`` or ``application/*`` accept anything; otherwise OCI manifests and
    indexes need their type listed (else the handler answers 404 MANIFEST_UNKNOWN, as
    distribution does: "OCI manifest found, but accept header does not support OCI manifests").
    Docker schema 2, manifest lists and schema 1 are served whatever the Accept says: we never
    rewrite manifests (the reference's on-the-fly schema 1 conversion is gone in distribution v3),
    and old Docker clients that omit them still parse what they get.
    """
    types = accepted_types(accept_values)
    if not types or "*/*" in types or "application/*" in types:
        return True
    if mt.base_type(media_type) not in NEGOTIATED_MEDIA_TYPES:
        return True
    return mt.base_type(media_type) in types
