"""In-process ordering of one repository's manifest and tag operations.

Within one process every manifest and tag write of a repository goes through
:class:`RepositoryLocks`: operations that touch one tag or one manifest take the repository
*shared* plus an exclusive lock on each name they change (``tag:<name>``), so pushes of different
tags still run in parallel; operations whose footprint is not known up front (a delete by digest
removes every tag pointing at the manifest, a collector sweeping a repository) take it
*exclusive*. Writers of the exclusive kind are preferred: once one waits, new shared holders queue
behind it, so a stream of pushes cannot starve a delete.

Between processes (``http.workers``, several instances on one storage) this lock does not reach;
there the store relies on its order of writes and on re-checks (see :mod:`registry.store.manifests`).
A shared lock service can later stand behind this same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator


@dataclasses.dataclass
class _RepoState:
    cond: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)
    shared: int = 0
    exclusive: bool = False
    exclusive_waiting: int = 0
    keys: dict[str, tuple[asyncio.Lock, int]] = dataclasses.field(default_factory=dict)
    users: int = 0


class RepositoryLocks:
    def __init__(self) -> None:
        self._repos: dict[str, _RepoState] = {}

    def _enter(self, repo: str) -> _RepoState:
        state = self._repos.get(repo)
        if state is None:
            state = self._repos[repo] = _RepoState()
        state.users += 1
        return state

    def _leave(self, repo: str, state: _RepoState) -> None:
        state.users -= 1
        if state.users == 0 and self._repos.get(repo) is state:
            del self._repos[repo]

    @contextlib.asynccontextmanager
    async def shared(self, repo: str, *keys: str) -> AsyncIterator[None]:
        """Hold ``repo`` shared and each of ``keys`` exclusively (taken in sorted order)."""
        state = self._enter(repo)
        try:
            async with state.cond:
                await state.cond.wait_for(lambda: not state.exclusive and not state.exclusive_waiting)
                state.shared += 1
            try:
                async with contextlib.AsyncExitStack() as stack:
                    for key in sorted(set(keys)):
                        await stack.enter_async_context(self._key(state, key))
                    yield
            finally:
                async with state.cond:
                    state.shared -= 1
                    state.cond.notify_all()
        finally:
            self._leave(repo, state)

    @contextlib.asynccontextmanager
    async def exclusive(self, repo: str) -> AsyncIterator[None]:
        """Hold ``repo`` alone: no shared holder runs meanwhile."""
        state = self._enter(repo)
        try:
            async with state.cond:
                state.exclusive_waiting += 1
                try:
                    await state.cond.wait_for(lambda: not state.exclusive and state.shared == 0)
                finally:
                    state.exclusive_waiting -= 1
                    state.cond.notify_all()  # shared waiters queued behind us may go if we gave up
                state.exclusive = True
            try:
                yield
            finally:
                async with state.cond:
                    state.exclusive = False
                    state.cond.notify_all()
        finally:
            self._leave(repo, state)

    @contextlib.asynccontextmanager
    async def _key(self, state: _RepoState, key: str) -> AsyncIterator[None]:
        lock, users = state.keys.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        state.keys[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = state.keys[key]
            if users <= 1:
                del state.keys[key]
            else:
                state.keys[key] = (lock, users - 1)

    def busy(self) -> int:
        """Repositories with a holder or a waiter (for tests: 0 when everything was released)."""
        return len(self._repos)


def tag_key(tag: str) -> str:
    return f"tag:{tag}"
