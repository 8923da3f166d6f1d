"""The hook that keeps a running garbage collection off what a push uses.

The store calls :func:`guarded` around every use of something that already exists -- a blob
found with HEAD, mounted or uploaded again, the blobs, children and tags a manifest PUT names, a
manifest found with HEAD -- with the claim keys it relies on (:func:`blob_key`, :func:`tag_key`).
The barrier behind it is :class:`registry.lifecycle.Barrier` (the store does not import the
lifecycle package: anything with its ``claim`` and ``refresh_link`` fits); without one, a use is
just run. docs/gc.md has the protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

from ..reference import Digest

T = TypeVar("T")

#: a use redone this often at most when collections keep starting during it
_ATTEMPTS = 3


class Claim(Protocol):
    async def confirm(self) -> bool: ...


class Barrier(Protocol):
    refresh: float

    async def claim(self, keys: Iterable[str]) -> Claim: ...

    async def refresh_link(self, path: str, modified_age: float | None, content: bytes) -> None: ...


def blob_key(d: Digest | str) -> str:
    """The claim key of a blob or manifest: its digest."""
    return str(d)


def tag_key(repo: str, tag: str) -> str:
    return f"tag:{repo}:{tag}"


async def guarded(barrier: Barrier | None, keys: Iterable[str], use: Callable[[], Awaitable[T]]) -> T:
    """Run ``use`` (idempotent) so that no collection deletes ``keys`` under it: claim, use,
    confirm; redone when a collection that started during a slow use had doomed a key."""
    if barrier is None:
        return await use()
    keys = list(keys)
    result: Any = None
    for _ in range(_ATTEMPTS):
        claim = await barrier.claim(keys)
        result = await use()
        if await claim.confirm():
            break
    return result
