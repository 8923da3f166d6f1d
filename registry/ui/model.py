"""What the pages show, read through the store only, with bounded concurrency and a cache.

Everything here is derived from content-addressed data (a manifest and its config never change
under their digest), so summaries are cached per (repository, digest); only a tag's current
digest is read on every view. Reads of one page share a semaphore, so a repository page of many
tags never floods the storage; configs larger than :data:`MAX_CONFIG` are not read.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from .. import manifests as mf
from .. import mediatypes as mt
from ..errors import RegistryError
from ..reference import Digest, try_digest
from ..store import Store

T = TypeVar("T")

#: image configs above this size are not read (they are JSON; real ones are a few KiB)
MAX_CONFIG = 1 << 20
#: store operations the UI runs at once (all pages of this process together)
CONCURRENCY = 16
#: summaries kept, by (repository, digest)
CACHE_SIZE = 8192
IMAGE_CONFIG_TYPES = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})


@dataclasses.dataclass(frozen=True)
class Summary:
    """One manifest as a row of the tags table."""

    digest: str
    media_type: str
    #: image, index, artifact or schema1
    kind: str
    #: compressed bytes a pull transfers: config and layers (of every child for an index); None
    #: when unknown (schema 1 records no sizes)
    size: int | None
    created: str | None
    platforms: tuple[str, ...]
    artifact_type: str | None = None

    @property
    def created_at(self) -> dt.datetime | None:
        return parse_time(self.created)


@dataclasses.dataclass
class TagRow:
    tag: str
    summary: Summary | None
    #: why there is no summary (a dangling tag, a damaged manifest)
    problem: str = ""


@dataclasses.dataclass
class Layer:
    media_type: str
    digest: str
    size: int
    created_by: str = ""
    urls: list[str] = dataclasses.field(default_factory=list)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Child:
    """An entry of an index: a platform's manifest."""

    media_type: str
    digest: str
    size: int
    platform: str
    annotations: dict[str, str]
    summary: Summary | None


@dataclasses.dataclass
class Detail:
    """Everything the manifest page shows."""

    repo: str
    reference: str
    digest: str
    media_type: str
    kind: str
    manifest_size: int
    body: str
    annotations: dict[str, str]
    artifact_type: str | None
    subject: str | None
    total_size: int | None
    created: str | None
    platforms: tuple[str, ...]
    children: list[Child]
    layers: list[Layer]
    config_media_type: str | None
    config_digest: str | None
    config_size: int | None
    config: dict[str, Any] | None
    config_note: str
    tags: list[str]
    referrers: dict[str, list[dict[str, Any]]]


def parse_time(value: str | None) -> dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # Go writes nanoseconds; Python parses at most microseconds
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def platform_of(value: Any) -> str:
    """``os/architecture[/variant]`` of a platform object or an image config."""
    if not isinstance(value, dict):
        return ""
    parts = [value.get("os"), value.get("architecture"), value.get("variant")]
    text = "/".join(str(p) for p in parts if isinstance(p, str) and p)
    version = value.get("os.version")
    return f"{text} ({version})" if isinstance(version, str) and version else text


def _kind(m: mf.Manifest) -> str:
    if m.is_schema1:
        return "schema1"
    if m.is_index:
        return "index"
    if m.artifact_type or (m.config is not None and m.config.media_type not in IMAGE_CONFIG_TYPES):
        return "artifact"
    return "image"


class Reader:
    """The UI's reads, over one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._cache: collections.OrderedDict[tuple[str, str], Summary] = collections.OrderedDict()

    async def _bounded(self, op: Awaitable[T]) -> T:
        """One storage operation under the shared limit (never a composite one: no nesting)."""
        async with self._limit:
            return await op

    # --- single reads ------------------------------------------------------------------------------

    async def manifest(self, repo: str, ref: str | Digest) -> tuple[Digest, mf.Manifest]:
        stored = await self._bounded(self.store.manifests.read(repo, ref))
        return stored.digest, mf.parse_stored(stored.body, str(stored.digest))

    async def config(self, repo: str, desc: mf.Descriptor | None) -> tuple[dict[str, Any] | None, str]:
        """The image config as JSON, or None and why not."""
        if desc is None:
            return None, ""
        d = try_digest(desc.digest)
        if d is None:
            return None, "the config digest is malformed"
        if desc.media_type not in IMAGE_CONFIG_TYPES:
            return None, ""
        try:
            info = await self._bounded(self.store.blobs.stat(repo, d))
        except RegistryError:
            return None, "the config blob is missing from this repository"
        if info.size > MAX_CONFIG:
            return None, f"the config is larger than {MAX_CONFIG >> 20} MiB and is not shown"
        parts = []
        async with self._limit:
            async for chunk in self.store.blobs.read(info):
                parts.append(chunk)
        try:
            obj = json.loads(b"".join(parts))
        except ValueError:
            return None, "the config is not JSON"
        return (obj, "") if isinstance(obj, dict) else (None, "the config is not a JSON object")

    # --- summaries ----------------------------------------------------------------------------------

    async def summary(self, repo: str, ref: str | Digest) -> Summary:
        d = ref if isinstance(ref, Digest) else await self._bounded(self.store.manifests.resolve(repo, ref))
        key = (repo, str(d))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        _, m = await self.manifest(repo, d)
        summary = await self._summarise(repo, m)
        self._cache[key] = summary
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return summary

    async def _summarise(self, repo: str, m: mf.Manifest) -> Summary:
        kind = _kind(m)
        if kind == "index":
            children = await asyncio.gather(*(self._child_summary(repo, c) for c in m.children))
            known = [c for c in children if c is not None]
            sizes = [c.size for c in known]
            size = sum(s for s in sizes if s is not None) if known and None not in sizes else None
            platforms = tuple(dict.fromkeys(
                p for c in m.children if (p := platform_of(c.platform)) and "unknown" not in p))
            times = [c.created_at for c in known if c.created_at is not None]
            created = max(times).isoformat().replace("+00:00", "Z") if times else m.annotations.get(
                "org.opencontainers.image.created")
            return Summary(m.digest, m.media_type, kind, size, created, platforms, m.artifact_type)
        if kind == "schema1":
            created = None
            history = m.json.get("history")
            if isinstance(history, list) and history and isinstance(history[0], dict):
                try:
                    created = json.loads(history[0].get("v1Compatibility", "{}")).get("created")
                except (ValueError, AttributeError):
                    created = None
            arch = m.json.get("architecture")
            return Summary(m.digest, m.media_type, kind, None, created if isinstance(created, str) else None,
                           (f"linux/{arch}",) if isinstance(arch, str) and arch else ())
        size = (m.config.size if m.config else 0) + sum(layer.size for layer in m.layers)
        config, _ = await self.config(repo, m.config)
        created = (config or {}).get("created")
        if not isinstance(created, str):
            created = m.annotations.get("org.opencontainers.image.created")
        platform = platform_of(config)
        artifact_type = m.artifact_type or (m.config.media_type if kind == "artifact" and m.config else None)
        return Summary(m.digest, m.media_type, kind, size, created, (platform,) if platform else (), artifact_type)

    async def _child_summary(self, repo: str, desc: mf.Descriptor) -> Summary | None:
        d = try_digest(desc.digest)
        if d is None:
            return None
        try:
            return await self.summary(repo, d)
        except RegistryError:
            return None

    async def tag_rows(self, repo: str, tags: list[str]) -> list[TagRow]:
        async def row(tag: str) -> TagRow:
            try:
                return TagRow(tag, await self.summary(repo, tag))
            except RegistryError as err:
                return TagRow(tag, None, err.message or "the manifest cannot be read")

        return list(await asyncio.gather(*(row(t) for t in tags)))

    # --- the manifest page --------------------------------------------------------------------------

    async def detail(self, repo: str, ref: str | Digest, with_referrers: bool = True) -> Detail:
        d, m = await self.manifest(repo, ref)
        summary = await self.summary(repo, d)
        config, note = await self.config(repo, m.config) if not m.is_index else (None, "")
        children: list[Child] = []
        if m.is_index:
            sums = await asyncio.gather(*(self._child_summary(repo, c) for c in m.children))
            children = [Child(c.media_type, c.digest, c.size, platform_of(c.platform), dict(c.annotations), s)
                        for c, s in zip(m.children, sums)]
        layers = [Layer(x.media_type, x.digest, x.size, urls=list(x.urls), annotations=dict(x.annotations))
                  for x in m.layers]
        if config is not None:
            steps = [h for h in config.get("history") or [] if isinstance(h, dict) and not h.get("empty_layer")]
            if len(steps) == len(layers):
                for layer, step in zip(layers, steps):
                    layer.created_by = str(step.get("created_by") or "")
        tags, referrers = await asyncio.gather(
            self._bounded(self.store.tags.tags_of(repo, d)),
            self._referrers(repo, d) if with_referrers else _nothing(),
        )
        try:
            body = json.dumps(json.loads(m.body), indent=2, ensure_ascii=False)
        except ValueError:
            body = m.body.decode("utf-8", "replace")
        return Detail(
            repo=repo, reference=str(ref), digest=str(d), media_type=m.media_type, kind=summary.kind,
            manifest_size=len(m.body), body=body, annotations=dict(m.annotations),
            artifact_type=m.artifact_type, subject=m.subject.digest if m.subject else None,
            total_size=summary.size, created=summary.created, platforms=summary.platforms,
            children=children, layers=layers,
            config_media_type=m.config.media_type if m.config else None,
            config_digest=m.config.digest if m.config else None,
            config_size=m.config.size if m.config else None,
            config=config, config_note=note, tags=sorted(tags), referrers=referrers,
        )

    async def _referrers(self, repo: str, d: Digest) -> dict[str, list[dict[str, Any]]]:
        found = await self._bounded(self.store.list_referrers(repo, d))
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in found:
            kind = r.get("artifactType") if isinstance(r.get("artifactType"), str) else ""
            groups.setdefault(kind, []).append(r)
        return dict(sorted(groups.items()))


async def _nothing() -> dict[str, list[dict[str, Any]]]:
    return {}
