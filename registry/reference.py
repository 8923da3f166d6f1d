"""The grammar of repository names, tags, digests and references: parse or raise, in one place."""

from __future__ import annotations

import dataclasses
import re
import sys

from .errors import ErrorCode, RegistryError

# Every pattern is used with fullmatch (``^...$`` with match() also accepts a trailing newline: "latest\n").
NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255

#: supported algorithms and the exact length of their lower-hex encoding
DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}
#: an encoded digest's characters (one regex match: a scan checks tens of thousands of names, and
#: building a set of each one's characters cost twice as much)
_LOWER_HEX_RE = re.compile(r"[0-9a-f]+")


@dataclasses.dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(NAME_RE.fullmatch(name))


def parse_name(name: str) -> str:
    """A repository name, or NAME_INVALID."""
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": _printable(name)})
    return name


def is_valid_tag(tag: str) -> bool:
    return isinstance(tag, str) and bool(TAG_RE.fullmatch(tag))


def parse_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise RegistryError(ErrorCode.TAG_INVALID, "invalid tag", detail={"tag": _printable(tag)})
    return tag


def try_digest(value: str) -> Digest | None:
    """A supported, well-formed digest, or None."""
    if not isinstance(value, str):
        return None
    alg, _, enc = value.partition(":")
    return digest_of_parts(alg, enc)


def digest_of_parts(algorithm: str, encoded: str) -> Digest | None:
    """The supported, well-formed digest ``algorithm:encoded``, or None (as two path components)."""
    # only the supported algorithms' names pass, so the digest grammar's algorithm rule needs no check
    if DIGEST_ALGORITHMS.get(algorithm) != len(encoded) or _LOWER_HEX_RE.fullmatch(encoded) is None:
        return None
    return Digest(algorithm, encoded)


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

_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
# ASCII digits only ([0-9], not \d: that also matches "٣")
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:([0-9]{1,19})|\*))?")
_BYTE_RANGE_RE = re.compile(r"([0-9]*)-([0-9]*)")


def parse_upload_id(value: str) -> str:
    """An upload session id (a UUID from us or the reference): a single safe path component."""
    if not isinstance(value, str) or not _UPLOAD_ID_RE.fullmatch(value):
        raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": _printable(value)})
    return value


def parse_content_range(value: str) -> tuple[int, int]:
    """``start-end`` of an upload PATCH (no unit, as the spec says; ``bytes `` tolerated), or 416.

    A complete length after ``/`` is tolerated but must exceed ``end`` (RFC 9110 14.4)."""
    m = _CONTENT_RANGE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if not m or int(m.group(2)) < int(m.group(1)) or (m.group(3) is not None and int(m.group(3)) <= int(m.group(2))):
        raise RegistryError(ErrorCode.RANGE_INVALID, detail={"Content-Range": _printable(value)})
    return int(m.group(1)), int(m.group(2))


def _position(digits: str) -> int:
    """A Range position of any length (leading zeros allowed) without building a huge integer:
    one beyond any blob's size (a signed 64-bit number) stands for it."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= len(str(sys.maxsize)) else sys.maxsize


def parse_byte_range(value: str, size: int) -> tuple[int, int] | None:
    """The ``(start, end)`` inclusive byte range a blob GET asks for, clipped to ``size``.

    None means "send the whole blob", as RFC 9110 14.2 allows or demands: a range unit other than
    ``bytes`` (compared case-insensitively; it MUST be ignored), several ranges (we may ignore
    them), or a suffix range of an empty blob (satisfiable: the whole, empty, blob).
    A malformed or unsatisfiable bytes range raises RANGE_INVALID (416) with the blob's size.
    """
    if not isinstance(value, str):
        return None
    unit, eq, spec = value.strip().partition("=")
    if unit.lower() != "bytes":
        return None
    if eq and "," in spec:
        return None
    m = _BYTE_RANGE_RE.fullmatch(spec) if eq else None
    unsatisfiable = RegistryError(
        ErrorCode.RANGE_INVALID, detail={"Range": _printable(value)}, headers={"Content-Range": f"bytes */{size}"}
    )
    if not m:
        raise unsatisfiable
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix range: the last N bytes ("bytes=-" is N = 0)
        n = _position(last)
        if n == 0:
            raise unsatisfiable
        if size == 0:
            return None
        return max(0, size - n), size - 1
    start = _position(first)
    end = _position(last) if last != "" else sys.maxsize  # "first-": to the end
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
