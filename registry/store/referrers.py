"""The referrers index (OCI distribution spec 1.1): subject digest -> referrer descriptors.

One small JSON file per referrer under ``_referrers/<subject>/``, written after the referrer's
revision link and removed after it, so an entry may be stale but never missing for a visible
manifest; a stale entry (its manifest deleted, e.g. by the reference's garbage collector) is
skipped on read. The whole index can be rebuilt from the manifests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.base import ContentWrite, PathNotFound, StorageDriver

from ..reference import Digest
from . import paths


#: rebuilds a referrer's descriptor from its stored manifest (repository, digest -> descriptor)
Describe = Callable[[str, Digest], Awaitable["dict[str, Any] | None"]]


class ReferrerStore:
    def __init__(self, driver: StorageDriver, describe: Describe | None = None) -> None:
        self.driver = driver
        #: repairs an entry that is empty or damaged (entries are not durable on their own: a
        #: power cut may leave one empty) from the manifest it describes
        self.describe = describe

    async def add(self, repo: str, subject: Digest, referrer: Digest, descriptor: dict[str, Any]) -> None:
        await self.driver.put_contents([[self.entry_write(repo, subject, referrer, descriptor)]])

    @staticmethod
    def entry_write(repo: str, subject: Digest, referrer: Digest, descriptor: dict[str, Any]) -> ContentWrite:
        """The entry of ``referrer``: rebuildable from the manifests (``registry reindex``), so
        not made durable on its own."""
        body = json.dumps(descriptor, separators=(",", ":"), sort_keys=True).encode()
        return ContentWrite(paths.referrer_entry(repo, subject, referrer), body, durable=False)

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
            raw = await self.driver.get_content(entry)
        except PathNotFound:
            return None
        try:
            descriptor = json.loads(raw)
        except ValueError:
            descriptor = None
        if isinstance(descriptor, dict):
            return descriptor
        if self.describe is None:
            return None
        repaired = await self.describe(repo, d)
        subject = paths.referrer_subject_of(entry)
        if repaired is not None and subject is not None:
            await self.add(repo, subject, d, repaired)
        return repaired
