"""The cache under the store: the parts handlers call, with proxied repositories' misses sent to
the upstream. Every other operation (and every local repository) goes to the part unchanged.

``Store.blobs``, ``Store.manifests`` and ``Store.tags`` are replaced by these wrappers; the parts
keep referring to each other directly, so writes the cache makes go through the ordinary code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, RegistryError
from ..reference import Digest
from ..store.blobs import BlobInfo
from . import status
from .cache import ProxyCache, RemoteBlobInfo

if TYPE_CHECKING:
    from ..store import Store, StoredManifest


class _Wrapper:
    def __init__(self, inner: Any, cache: ProxyCache) -> None:
        self._inner = inner
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ProxyBlobs(_Wrapper):
    async def open(self, repo: str, d: Digest, *, head: bool = False) -> BlobInfo:
        route = self._cache.route(repo)
        if route is None:
            return await self._inner.open(repo, d, head=head)
        try:
            info = await self._inner.open(repo, d, head=head)
        except RegistryError as err:
            if err.code is not ErrorCode.BLOB_UNKNOWN:
                raise
            return await self._cache.open_blob(route, repo, d)
        status.note("HIT")
        return info

    async def redirect_url(self, info: BlobInfo, method: str = "GET") -> str | None:
        if isinstance(info, RemoteBlobInfo):
            return None
        return await self._inner.redirect_url(info, method)

    def local_path(self, info: BlobInfo) -> str | None:
        if isinstance(info, RemoteBlobInfo):
            return None
        return self._inner.local_path(info)

    async def read(self, info: BlobInfo, start: int = 0, length: int | None = None,
                   chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        if not isinstance(info, RemoteBlobInfo):
            async for chunk in self._inner.read(info, start, length, chunk_size=chunk_size):
                yield chunk
            return
        remaining = info.size - start if length is None else length
        if remaining <= 0:
            return
        async for chunk in self._cache.read(info, start, remaining, chunk_size):
            yield chunk


class ProxyManifests(_Wrapper):
    async def get(self, repo: str, ref: str | Digest) -> "StoredManifest":
        route = self._cache.route(repo)
        if route is None:
            return await self._inner.get(repo, ref)
        return await self._cache.get_manifest(route, repo, ref)

    async def find(self, repo: str, ref: str | Digest) -> "StoredManifest":
        """A HEAD: local repositories keep the garbage collector's protection (see ManifestStore)."""
        route = self._cache.route(repo)
        if route is None:
            return await self._inner.find(repo, ref)
        return await self._cache.get_manifest(route, repo, ref, head=True)

    async def delete(self, repo: str, ref: str | Digest) -> list[str]:
        removed = await self._inner.delete(repo, ref)
        for tag in removed:
            self._cache.forget(repo, tag)
        return removed


class ProxyTags(_Wrapper):
    async def list(self, repo: str) -> list[str]:
        route = self._cache.route(repo)
        if route is None:
            return await self._inner.list(repo)
        return await self._cache.list_tags(route, repo)


def wrap(store: "Store", cache: ProxyCache) -> None:
    """Put the cache under ``store``'s blobs, manifests and tags (once)."""
    if isinstance(store.blobs, ProxyBlobs):
        return
    store.blobs = ProxyBlobs(store.blobs, cache)  # type: ignore[assignment]
    store.manifests = ProxyManifests(store.manifests, cache)  # type: ignore[assignment]
    store.tags = ProxyTags(store.tags, cache)  # type: ignore[assignment]
