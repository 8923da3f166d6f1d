"""The referrers index (OCI distribution spec 1.1): subject digest -> referrer descriptors.

One small JSON file per referrer under ``_referrers/<subject>/``, written after the referrer's
revision link and removed after it, so an entry may be stale but never missing for a visible
manifest; a stale entry (its manifest deleted, e.g. by the reference's garbage collector) is
skipped on read. The whole index can be rebuilt from the manifests.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from drivers.base import PathNotFound, StorageDriver

from ..reference import Digest
from . import paths


class ReferrerStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def add(self, repo: str, subject: Digest, referrer: Digest, descriptor: dict[str, Any]) -> None:
        body = json.dumps(descriptor, separators=(",", ":"), sort_keys=True).encode()
        await self.driver.put_content(paths.referrer_entry(repo, subject, referrer), body)

    async def remove(self, repo: str, subject: Digest, referrer: Digest) -> None:
        try:
            await self.driver.delete(paths.referrer_entry(repo, subject, referrer))
        except PathNotFound:
            pass

    async def list(self, repo: str, subject: Digest, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests in ``repo`` whose subject is ``subject``, sorted by digest."""
        try:
            entries = await self.driver.list(paths.referrers_dir(repo, subject))
        except PathNotFound:
            return []
        limit = asyncio.Semaphore(32)

        async def load(entry: str) -> dict[str, Any] | None:
            async with limit:
                return await self._load(repo, entry)

        results = await asyncio.gather(*(load(e) for e in entries))
        found = [r for r in results if r is not None]
        if artifact_type is not None:
            found = [r for r in found if r.get("artifactType") == artifact_type]
        return sorted(found, key=lambda r: str(r.get("digest")))

    async def _load(self, repo: str, entry: str) -> dict[str, Any] | None:
        d = paths.referrer_from_entry(entry)
        if d is None:
            return None
        try:
            await self.driver.stat(paths.revision_link(repo, d))
            descriptor = json.loads(await self.driver.get_content(entry))
        except (PathNotFound, ValueError):
            return None
        return descriptor if isinstance(descriptor, dict) else None
