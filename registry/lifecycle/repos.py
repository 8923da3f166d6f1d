"""Repositories as an operator sees them: list with sizes, delete whole.

Deleting a repository removes its ``_``-prefixed areas -- every tag, manifest link, layer link,
upload and our indexes -- but never a nested repository (``a/b`` lives inside ``a``'s directory).
``_manifests`` goes first, so a crash leaves a repository that is already gone from the catalog;
its blobs are reclaimed by the next garbage collection.
"""

from __future__ import annotations

import dataclasses
import logging

from drivers.base import PathNotFound, StorageDriver

from ..errors import ErrorCode, RegistryError
from ..state import StateUnavailable
from ..store import Store, paths
from ..store.catalog import entry_name
from .inventory import Inventory, scan
from .rules import ImmutabilityPolicy

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RepositoryUsage:
    name: str
    tags: int
    manifests: int
    layers: int
    #: bytes of the distinct blobs the repository links or holds manifests of
    size: int
    uploads: int


def usage(inventory: Inventory) -> list[RepositoryUsage]:
    out = []
    for name in sorted(inventory.repositories):
        repo = inventory.repositories[name]
        if not (repo.revisions or repo.tags or repo.layers or repo.uploads):
            continue
        digests = set(repo.layers) | set(repo.revisions)
        size = sum(inventory.blobs[d].size for d in digests if d in inventory.blobs)
        out.append(RepositoryUsage(name, len(repo.tags), len(repo.revisions), len(repo.layers), size, len(repo.uploads)))
    return out


async def list_usage(driver: StorageDriver) -> tuple[list[RepositoryUsage], int]:
    """Every repository with its size, and the bytes of all blobs (each counted once)."""
    inventory = await scan(driver)
    total = sum(b.size for b in inventory.blobs.values())
    return usage(inventory), total


async def delete_repository(store: Store, name: str, immutability: ImmutabilityPolicy,
                            *, force: bool = False, dry_run: bool = False) -> list[str]:
    """Remove ``name``'s areas; NAME_UNKNOWN when it has none. Refuses (DENIED) when immutable
    tags would go, unless ``force``. Returns the areas removed (or that would be).

    Holds the repository's exclusive lock (across instances with Redis) and makes every instance
    forget what it cached about ``name`` before and after; UNAVAILABLE, deleting nothing, when
    the shared state cannot be reached."""
    if dry_run:
        return await _delete_areas(store.driver, name, immutability, force=force, dry_run=True)
    async with store.locks.exclusive(name):
        try:
            await store.forget_repository(name)
        except StateUnavailable as exc:
            raise exc.to_registry_error("a repository delete") from None
        try:
            areas = await _delete_areas(store.driver, name, immutability, force=force, dry_run=False)
        finally:
            try:
                await store.forget_repository(name)
            except StateUnavailable:
                log.warning("repo delete: %s: the cache invalidation after the delete did not reach Redis; "
                            "instances may serve %s from their cache until its entries expire", name, name)
        try:
            await store.catalog.forget(name)
        except StateUnavailable:
            log.warning("repo delete: %s: instances did not hear that its catalog entry is gone; "
                        "a push within 10 minutes may not write it again (`registry reindex` does)", name)
    return areas


async def _delete_areas(driver: StorageDriver, name: str, immutability: ImmutabilityPolicy,
                        *, force: bool, dry_run: bool) -> list[str]:
    try:
        children = await driver.list(paths.repo(name))
    except PathNotFound:
        children = []
    areas = [c for c in children if paths.is_repository_area(c)]
    if not areas:
        raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name})
    if immutability and not force:
        try:
            tags = [paths.leaf(t) for t in await driver.list(paths.tags_dir(name))]
        except PathNotFound:
            tags = []
        locked = immutability.immutable_tags(name, tags)
        if locked:
            raise RegistryError(
                ErrorCode.DENIED, f"repository {name} has immutable tags ({', '.join(locked[:5])}); use --force",
                detail={"name": name, "tags": locked[:20]},
            )
    areas.sort(key=lambda a: paths.leaf(a) != "_manifests")  # _manifests first: gone from the catalog
    if not dry_run:
        for area in areas:
            try:
                await driver.delete(area)
            except PathNotFound:
                pass
        # and from the catalog index (an entry would only be stale; the UI's counts read it)
        await driver.delete_files([paths.catalog_entry(entry_name(name))])
    return areas
