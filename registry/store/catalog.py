"""The repository catalog: directories under ``repositories/`` holding ``_manifests``.

Like the reference: names nest, ``_``-prefixed directories are never entered, and the order is
path-component order (``a``, ``a/b``, ``a-c``), which is the order of a depth-first walk. Only
listings are used (no stat per entry), and subtrees entirely before ``last`` are pruned.
"""

from __future__ import annotations

from drivers.base import PathNotFound, StorageDriver

from . import paths


def _components_le(name: str, last: list[str]) -> bool:
    """Whether repository path ``name`` sorts at or before ``last`` in walk order."""
    return name.split("/") <= last


class Catalog:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def list(self, n: int, last: str | None = None) -> tuple[list[str], bool]:
        """Up to ``n`` repository names after ``last``, and whether more follow."""
        found: list[str] = []
        last_parts = last.split("/") if last else None
        await self._visit(paths.REPOSITORIES, "", n + 1, last_parts, found)
        return found[:n], len(found) > n

    async def _visit(self, directory: str, prefix: str, limit: int, last: list[str] | None, found: list[str]) -> None:
        try:
            children = await self.driver.list(directory)
        except PathNotFound:
            return
        names = [paths.leaf(c) for c in children]
        if prefix and "_manifests" in names:
            repo = prefix[:-1]
            if last is None or not _components_le(repo, last):
                found.append(repo)
                if len(found) >= limit:
                    return
        for name in sorted(names):
            if name.startswith("_"):
                continue
            sub = prefix + name
            if last is not None:
                parts = sub.split("/")
                # prune subtrees that end before `last`: none of their names can follow it
                if parts < last[: len(parts)]:
                    continue
            await self._visit(f"{directory}/{name}", sub + "/", limit, last, found)
            if len(found) >= limit:
                return
