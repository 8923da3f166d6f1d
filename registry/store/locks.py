"""Ordering of one repository's manifest and tag operations, as leases in :mod:`registry.state`.

Operations that touch one tag or one manifest take the repository *shared* plus an exclusive
lease on each name they change (``tag:<name>``), so pushes of different tags still run in
parallel; operations whose footprint is not known up front (a delete by digest removes every tag
pointing at the manifest, a collector sweeping a repository) take it *exclusive*. A waiting
exclusive holder goes first: once one waits, new shared holders queue behind it, so a stream of
pushes cannot starve a delete.

Where these leases reach depends on the state backend: this process (no ``redis:``), every
worker of this host (``http.workers > 1``: ``flock`` files), or every instance (Redis). Without
Redis, instances on other hosts rely on the order of writes and the re-checks of
:mod:`registry.store.manifests`; with Redis the one race those leave open (a tag moved by another
instance in the instant a delete removes the old manifest's tags) is closed too. The leases carry
no fencing into the storage: a holder paused past its lease (``state.leasettl``) falls back to
that same write order, which keeps every outcome consistent.

Redis unavailable: acquiring fails, and the operation answers 503 with ``Retry-After`` before it
wrote anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..errors import RegistryError
from ..state import LeaseBusy, LeaseLost, State, StateUnavailable


class RepositoryLocks:
    def __init__(self, state: State | None = None) -> None:
        if state is None:
            from ..state.config import StateConfig
            from ..state.local import LocalState

            state = LocalState(StateConfig())
        self.state = state

    @contextlib.asynccontextmanager
    async def shared(self, repo: str, *keys: str) -> AsyncIterator[None]:
        """Hold ``repo`` shared and each of ``keys`` exclusively (taken in sorted order)."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._held(f"repo:{repo}", shared=True))
            for key in sorted(set(keys)):
                await stack.enter_async_context(self._held(f"repo:{repo}:{key}"))
            yield

    @contextlib.asynccontextmanager
    async def exclusive(self, repo: str) -> AsyncIterator[None]:
        """Hold ``repo`` alone: no shared holder runs meanwhile."""
        async with self._held(f"repo:{repo}"):
            yield

    @contextlib.asynccontextmanager
    async def _held(self, name: str, *, shared: bool = False) -> AsyncIterator[None]:
        try:
            lease = await self.state.acquire(name, shared=shared)
        except StateUnavailable as exc:
            raise exc.to_registry_error("a repository write") from None
        except LeaseBusy as exc:
            raise exc.to_registry_error("this repository") from None
        try:
            yield
        except LeaseLost as exc:
            raise exc.to_registry_error() from None
        finally:
            await lease.release()

    def busy(self) -> int:
        """Lease names with a holder or a waiter in this process (for tests: 0 when everything
        was released); 0 on a shared backend, which keeps no local table."""
        busy = getattr(self.state, "busy", None)
        return busy() if busy is not None else 0


def tag_key(tag: str) -> str:
    return f"tag:{tag}"


__all__ = ["RegistryError", "RepositoryLocks", "tag_key"]
