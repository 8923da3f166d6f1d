"""Strict validation of manifest fields: JSON as Go reads it, descriptors, annotations, URLs.

The building blocks every kind's parser shares; each defect is a MANIFEST_INVALID naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import urllib.parse
from typing import Any

from .. import mediatypes as mt
from ..errors import ErrorCode, RegistryError
from ..reference import try_digest
from .model import Descriptor

_MAX_INT64 = 2**63 - 1


def invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message, detail=detail)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(body: bytes) -> Any:
    """JSON as Go reads it: UTF-8 only, no BOM, no NaN/Infinity; raises ValueError."""
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def load_object(body: bytes) -> dict[str, Any]:
    try:
        obj = load_json(body)
    except ValueError as exc:
        raise invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise invalid("manifest must be a JSON object")
    return obj


def shape_media_type(obj: dict[str, Any]) -> str:
    """The kind a body without ``mediaType`` has, judged from its fields."""
    if obj.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED if "signatures" in obj else mt.DOCKER_SCHEMA1
    if "manifests" in obj:
        return mt.OCI_INDEX
    return mt.OCI_MANIFEST


def digest_of(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def list_field(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"{key} must be an array")
    return value


def optional_str(obj: dict[str, Any], key: str, where: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{where or key} must be a string")
    return value or None


def optional_descriptor(obj: dict[str, Any], key: str) -> Descriptor | None:
    value = obj.get(key)
    return None if value is None else descriptor(value, key)


def annotations_field(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid(f"{where} must be an object of string values")
    return dict(value)


def check_url(url: Any, where: str) -> str:
    if not isinstance(url, str):
        raise invalid(f"{where} must be a string")
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.fragment:
        raise invalid(f"{where} {url[:200]!r} is not an http(s) URL without fragment")
    return url


def descriptor(value: Any, where: str) -> Descriptor:
    """A strictly validated descriptor; ``where`` names it in error messages (``layers[2]``)."""
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or "/" not in media_type:
        raise invalid(f"{where}.mediaType must be a media type string such as 'type/subtype'")
    digest = value.get("digest")
    if try_digest(digest) is None:
        shown = digest[:200] if isinstance(digest, str) else digest
        raise invalid(f"{where}.digest {shown!r} is not a valid sha256 or sha512 digest")
    size = value.get("size")
    if not is_int(size) or not 0 <= size <= _MAX_INT64:
        raise invalid(f"{where}.size must be a non-negative integer")
    urls_value = value.get("urls")
    if urls_value is not None and not isinstance(urls_value, list):
        raise invalid(f"{where}.urls must be an array of URLs")
    urls = [check_url(u, f"{where}.urls[{i}]") for i, u in enumerate(urls_value)] if urls_value else []
    platform = value.get("platform")
    if platform is not None:
        _check_platform(platform, f"{where}.platform")
    data = value.get("data")
    if data is not None:
        _check_data(data, digest, size, f"{where}.data")
    annotations = value.get("annotations")
    artifact_type = value.get("artifactType")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=urls,
        # error labels are built only when needed: a 4 MiB manifest holds ~25k descriptors
        annotations={} if annotations is None else annotations_field(annotations, f"{where}.annotations"),
        artifact_type=None if artifact_type is None else optional_str(value, "artifactType", f"{where}.artifactType"),
        platform=platform,
        data=data,
    )


def _check_platform(platform: Any, where: str) -> None:
    if not isinstance(platform, dict):
        raise invalid(f"{where} must be an object")
    for key in ("architecture", "os", "os.version", "variant"):
        if key in platform and not isinstance(platform[key], str):
            raise invalid(f"{where}.{key} must be a string")
    for key in ("os.features", "features"):
        items = platform.get(key)
        if items is not None and not (isinstance(items, list) and all(isinstance(x, str) for x in items)):
            raise invalid(f"{where}.{key} must be an array of strings")


def _check_data(data: Any, digest: str, size: int, where: str) -> None:
    """Embedded content (image spec 1.1): base64 that must match the descriptor."""
    if not isinstance(data, str):
        raise invalid(f"{where} must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where} is not valid base64") from None
    parsed = try_digest(digest)
    assert parsed is not None
    if len(raw) != size or digest_of(raw, parsed.algorithm) != digest:
        raise invalid(f"{where} does not match the descriptor's digest and size")
