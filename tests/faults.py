"""Fault injection for tests: a StorageDriver decorator that makes chosen calls of a REAL driver fail.

``FaultyDriver(inner)`` is a :class:`~drivers.base.StorageDriver` like ``registry.observe``'s
``MeteredDriver``: it holds the real backend in ``inner``, forwards every call of the contract (and
of the writers and readers it hands out), and passes capability probes (``commits_atomically``...)
through. Before a call runs, :meth:`FaultyDriver.fail` rules are checked: the n-th matching call of
an operation raises a fault *through the inner driver's own error translation* (its ``_errors``
context, so the real backend-to-StorageError mapping is what the registry sees), the way the
backend would raise it: a full disk, a timeout, a connection reset.

Operations: the contract's methods (``get_content``, ``put_content``, ``stat``, ``list``, ``move``,
``delete``, ``writer``, ``reader``), a writer's ``write``/``commit``/``close`` as
``writer.write``... and a reader's chunks as ``reader.next``. A rule may name a path substring.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import AsyncIterator, Callable
from typing import Any

from drivers.base import FileInfo, FileWriter, StorageDriver, StorageError, classify


def enospc() -> BaseException:
    return OSError(errno.ENOSPC, "No space left on device")


def timeout() -> BaseException:
    return TimeoutError("timed out talking to the storage backend")


def reset() -> BaseException:
    return ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


FAULTS: dict[str, Callable[[], BaseException]] = {"enospc": enospc, "timeout": timeout, "reset": reset}


@dataclasses.dataclass
class Rule:
    op: str
    nth: int  # 1-based: the nth matching call fails
    fault: Callable[[], BaseException]
    path: str = ""  # substring the call's path must contain
    times: int = 1  # consecutive matching calls that fail from the nth on
    seen: int = 0
    fired: int = 0

    def hit(self, op: str, path: str) -> bool:
        if op != self.op or self.path not in path:
            return False
        self.seen += 1
        if self.nth <= self.seen < self.nth + self.times:
            self.fired += 1
            return True
        return False


class FaultyDriver(StorageDriver):
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.rules: list[Rule] = []
        #: every operation called, with its path, in order (for tests that pick a call to fail)
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:  # backend capabilities (commits_atomically, ...)
        return getattr(self.inner, name)

    # --- rules -----------------------------------------------------------------------------------
    def fail(self, op: str, fault: str | Callable[[], BaseException] = "enospc", *, nth: int = 1,
             path: str = "", times: int = 1) -> Rule:
        rule = Rule(op, nth, FAULTS[fault] if isinstance(fault, str) else fault, path, times)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def _maybe_fail(self, op: str, path: str) -> None:
        self.calls.append((op, path))
        for rule in self.rules:
            if rule.hit(op, path):
                self._raise(path, rule.fault())

    def _raise(self, path: str, exc: BaseException) -> None:
        """Raise ``exc`` as the inner driver would: through its own error translation."""
        translate = getattr(self.inner, "_errors", None)
        if translate is not None:
            with translate(path):
                raise exc
        raise classify(exc)(self.name, path, f"{type(exc).__name__}: {exc}") from exc

    # --- the contract ----------------------------------------------------------------------------
    def check(self, path: str) -> str:
        return self.inner.check(path)

    async def get_content(self, path: str) -> bytes:
        self._maybe_fail("get_content", path)
        return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes) -> None:
        self._maybe_fail("put_content", path)
        await self.inner.put_content(path, data)

    async def stat(self, path: str) -> FileInfo:
        self._maybe_fail("stat", path)
        return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        self._maybe_fail("list", path)
        return await self.inner.list(path)

    async def move(self, source: str, dest: str) -> None:
        self._maybe_fail("move", f"{source} -> {dest}")
        await self.inner.move(source, dest)

    async def delete(self, path: str) -> None:
        self._maybe_fail("delete", path)
        await self.inner.delete(path)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        self._maybe_fail("writer", path)
        return _FaultyWriter(self, path, await self.inner.writer(path, append))

    async def reader(self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        self._maybe_fail("reader", path)
        async for chunk in self.inner.reader(path, offset, chunk_size=chunk_size):
            self._maybe_fail("reader.next", path)
            yield chunk

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return await self.inner.redirect_url(path, method)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    def walk(self, path: str, callback: Any = None, *, start_after: str | None = None) -> AsyncIterator[FileInfo]:
        return self.inner.walk(path, callback, start_after=start_after)

    async def _children(self, path: str) -> list[FileInfo]:
        return await self.inner._children(path)

    async def close(self) -> None:
        await self.inner.close()


class _FaultyWriter(FileWriter):
    """Forwards to the real writer; a fault before ``write``/``commit``/``close`` leaves the real
    writer as a failed backend call would (failed: ``close`` releases it, ``cancel`` removes it)."""

    def __init__(self, driver: FaultyDriver, path: str, inner: FileWriter) -> None:
        self._driver = driver
        self._path = path
        self.inner = inner
        self._failed = False

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def failed(self) -> bool:
        return self._failed or self.inner.failed

    def _fault(self, op: str) -> None:
        try:
            self._driver._maybe_fail(op, self._path)
        except StorageError:
            self._failed = True
            raise

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._failed:
            raise StorageError(self._driver.name, self._path, "cannot write: writer is failed")
        self._fault("writer.write")
        return await self.inner.write(data)

    async def commit(self) -> None:
        if self._failed:
            raise StorageError(self._driver.name, self._path, "cannot commit: writer is failed")
        self._fault("writer.commit")
        await self.inner.commit()

    async def close(self) -> None:
        try:
            if not self._failed:
                self._fault("writer.close")
        finally:
            await self.inner.close()

    async def cancel(self) -> None:
        await self.inner.cancel()
