"""Mark: which manifests stay, and every blob they need.

Without ``delete_untagged`` every manifest revision of every repository stays (distribution's
rule). With it, per repository, what stays is what can be reached from a root -- a tag's current
manifest, or a manifest the caller protects (young ones online, untagged ones retention keeps) --
by following an index's children and a kept manifest's referrers (manifests whose ``subject`` is
it: the signatures and SBOMs of a kept image never go). A kept manifest marks its own blob, its
config, its layers (schema 1 ``fsLayers`` too) and its children's digests.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable

from drivers.base import PathNotFound

from .. import manifests as mf
from ..reference import Digest, try_digest
from ..store.blobs import BlobStore
from .inventory import Inventory, Repository


@dataclasses.dataclass(frozen=True)
class References:
    """What a stored manifest names."""

    #: blobs it needs: config, layers, and its children's digests (their manifest blobs)
    blobs: frozenset[Digest]
    #: index / manifest-list entries
    children: tuple[Digest, ...]
    subject: Digest | None


def references_of(body: bytes) -> References:
    names, child_names, subject = mf.stored_references(body)
    children = tuple(d for d in map(try_digest, child_names) if d is not None)
    blobs = {d for d in map(try_digest, names) if d is not None} | set(children)
    return References(frozenset(blobs), children, try_digest(subject) if subject else None)


async def read_references(blobs: BlobStore, digests: Iterable[Digest], parallelism: int = 64,
                          on_read: Callable[[int], None] | None = None) -> dict[Digest, References | None]:
    """Read and parse each manifest once (a manifest shared by repositories is one blob). A
    manifest whose blob is missing maps to None: it cannot be served, and names nothing we know."""
    limit = asyncio.Semaphore(parallelism)
    out: dict[Digest, References | None] = {}

    async def one(d: Digest) -> None:
        async with limit:
            try:
                body = await blobs.get_small(d)
            except PathNotFound:
                out[d] = None
            else:
                out[d] = references_of(body)
        if on_read:
            on_read(1)

    await asyncio.gather(*(one(d) for d in set(digests)))
    return out


def reachable(repo: Repository, refs: dict[Digest, References | None], roots: Iterable[Digest]) -> set[Digest]:
    """The revisions of ``repo`` reachable from ``roots`` by children and referrers."""
    referrers: dict[Digest, list[Digest]] = {}
    for d in repo.revisions:
        r = refs.get(d)
        if r is not None and r.subject is not None:
            referrers.setdefault(r.subject, []).append(d)
    kept: set[Digest] = set()
    stack = [d for d in roots if d in repo.revisions]
    while stack:
        d = stack.pop()
        if d in kept:
            continue
        kept.add(d)
        r = refs.get(d)
        if r is not None:
            stack.extend(c for c in r.children if c in repo.revisions and c not in kept)
        stack.extend(x for x in referrers.get(d, ()) if x not in kept)
    return kept


def tag_roots(repo: Repository) -> set[Digest]:
    return {d for d in repo.tag_targets.values() if d is not None}


def mark_blobs(inventory: Inventory, kept: dict[str, set[Digest]],
               refs: dict[Digest, References | None]) -> set[Digest]:
    """Every blob a kept manifest needs, the manifests' own blobs included."""
    marked: set[Digest] = set()
    for name, digests in kept.items():
        for d in digests:
            marked.add(d)
            r = refs.get(d)
            if r is not None:
                marked |= r.blobs
    return marked
