"""The grammar of repository names, tags, digests and references: parse or raise, in one place."""

from __future__ import annotations

import dataclasses
import re

from .errors import ErrorCode, RegistryError

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255

#: supported algorithms and the exact length of their lower-hex encoding
DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX_RE = re.compile(r"^[a-f0-9]+$")


@dataclasses.dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(NAME_RE.match(name))


def parse_name(name: str) -> str:
    """A repository name, or NAME_INVALID."""
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": _printable(name)})
    return name


def is_valid_tag(tag: str) -> bool:
    return isinstance(tag, str) and bool(TAG_RE.match(tag))


def parse_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, "invalid tag", detail={"tag": _printable(tag)})
    return tag


def try_digest(value: str) -> Digest | None:
    """A supported, well-formed digest, or None."""
    if not isinstance(value, str) or len(value) > 256:
        return None
    m = _DIGEST_RE.match(value)
    if not m:
        return None
    alg, enc = m.group(1), m.group(2)
    if DIGEST_ALGORITHMS.get(alg) != len(enc) or not _HEX_RE.match(enc):
        return None
    return Digest(alg, enc)


def parse_digest(value: str, code: ErrorCode = ErrorCode.DIGEST_INVALID) -> Digest:
    d = try_digest(value)
    if d is None:
        raise RegistryError(code, "invalid or unsupported digest", detail={"digest": _printable(value)})
    return d


def parse_digest_algorithm(value: str) -> str:
    """A supported digest algorithm name (``digest-algorithm=`` of an upload), or DIGEST_INVALID."""
    if value not in DIGEST_ALGORITHMS:
        raise RegistryError(
            ErrorCode.DIGEST_INVALID,
            "unsupported digest algorithm",
            detail={"algorithm": _printable(value), "supported": sorted(DIGEST_ALGORITHMS)},
        )
    return value


def looks_like_digest(value: str) -> bool:
    """True when ``value`` is meant as a digest (has ``:``), valid or not; tags never hold ``:``."""
    return ":" in value


def parse_reference(value: str) -> str | Digest:
    """A manifest reference: a Digest when it contains ``:``, else a tag."""
    if looks_like_digest(value):
        return parse_digest(value)
    if not is_valid_tag(value):
        raise RegistryError(
            ErrorCode.TAG_INVALID, "invalid manifest reference", detail={"reference": _printable(value)}
        )
    return value


def _printable(value: object) -> str:
    text = str(value)
    if len(text) > 300:
        text = text[:300] + "..."
    return text


# --------------------------------------------------------------------------- uploads and ranges

_UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?$")
_BYTE_RANGE_RE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def parse_upload_id(value: str) -> str:
    """An upload session id (a UUID from us or the reference): a single safe path component."""
    if not isinstance(value, str) or not _UPLOAD_ID_RE.match(value):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": _printable(value)})
    return value


def parse_content_range(value: str) -> tuple[int, int]:
    """``start-end`` of an upload PATCH (no unit, as the spec says; ``bytes `` tolerated), or 416."""
    m = _CONTENT_RANGE_RE.match(value.strip()) if isinstance(value, str) else None
    if not m or int(m.group(2)) < int(m.group(1)):
        raise RegistryError(ErrorCode.RANGE_INVALID, detail={"Content-Range": _printable(value)})
    return int(m.group(1)), int(m.group(2))


def parse_byte_range(value: str, size: int) -> tuple[int, int] | None:
    """The ``(start, end)`` inclusive byte range a blob GET asks for, clipped to ``size``.

    None means "send the whole blob" (a multi-range request, which we may ignore per RFC 9110).
    A malformed or unsatisfiable range raises RANGE_INVALID (416) with the blob's size.
    """
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("bytes=") and "," in text:
        return None
    m = _BYTE_RANGE_RE.match(text)
    unsatisfiable = RegistryError(
        ErrorCode.RANGE_INVALID, detail={"Range": _printable(value)}, headers={"Content-Range": f"bytes */{size}"}
    )
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise unsatisfiable
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last != "" else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)


def parse_page_size(value: str | None, maximum: int) -> int | None:
    """``n`` of a paginated list: None when absent, capped at ``maximum``; else PAGINATION_NUMBER_INVALID."""
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": _printable(value)})
    return min(int(value), maximum)
