"""A StorageDriver decorator that measures every call of any backend (and traces it when asked).

``MeteredDriver(inner)`` is itself a :class:`~drivers.base.StorageDriver`: the store cannot tell
it from the backend. Each call records ``registry_storage_action_seconds{driver,action}``, and
``registry_storage_errors_total{driver,action,error}`` when it raises (PathNotFound is an
answer, not an error); bytes moved through
readers and writers (blob data) are counted in ``registry_storage_bytes_total`` (once per reader
and per writer, not per chunk). With tracing on, each call
is a span (a child of the request's span). Attributes the store probes with ``getattr``
(``commits_atomically``...) are the backend's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from drivers.base import OWN_TIMED, CallTimings, FileInfo, FileWriter, PathNotFound, StorageDriver

from . import tracing
from .metrics import FOLD_AT, METRICS

_perf = time.perf_counter


class _Call:
    """Times one driver call: ``with _Call(driver, "stat"):``."""

    __slots__ = ("driver", "action", "start", "span")

    def __init__(self, driver: str, action: str) -> None:
        self.driver = driver
        self.action = action
        self.span: Any = None

    def __enter__(self) -> "_Call":
        tracer = tracing.TRACER
        if tracer is not None:
            self.span = tracer.start_as_current_span(
                f"storage.{self.action}", attributes={"registry.storage.driver": self.driver})
            self.span.__enter__()
        self.start = _perf()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        METRICS.storage_seconds.observe((self.driver, self.action), _perf() - self.start)
        if exc is not None:
            _failed(self.driver, self.action, exc)
        if self.span is not None:
            self.span.__exit__(exc_type, exc, tb)


def _failed(driver: str, action: str, exc: BaseException) -> None:
    if not isinstance(exc, (PathNotFound, GeneratorExit)):
        # a missing path is an answer (the store asks "does it exist?" that way), not a failure
        METRICS.storage_errors.inc((driver, action, type(exc).__name__))


def _timed(call: Any, hist: Any, driver: str, action: str) -> Any:
    """``call`` (a backend method taking one path) timed into ``hist`` under ``(driver, action)``:
    a closure over everything it touches (no attribute look-ups per call) that appends the
    latency to the histogram's raw values (:meth:`~.metrics.Histogram.samples`). The store makes
    several of these calls per request."""
    key = (driver, action)
    samples = hist.samples(key)
    append, fold = samples.append, hist.fold

    async def timed(path: str) -> Any:
        start = _perf()
        try:
            return await call(path)
        except BaseException as exc:
            _failed(driver, action, exc)
            raise
        finally:
            append(_perf() - start)
            if len(samples) >= FOLD_AT:
                fold(key)

    timed.__name__ = timed.__qualname__ = action
    return timed


def _timings(hist: Any, driver: str) -> CallTimings:
    """What a backend that times its own calls records into: the histogram's raw-value lists."""
    return CallTimings({action: hist.samples((driver, action)) for action in OWN_TIMED},
                       lambda action, exc: _failed(driver, action, exc))


class MeteredDriver(StorageDriver):
    """The hot calls (``get_content``, ``stat``, ``list``: several per request) are the backend's
    own methods when it times them itself (:attr:`~drivers.base.StorageDriver.times_own_calls`:
    every fsspec backend, into the :class:`~drivers.base.CallTimings` set on it here), else
    closures set on the instance by :func:`_timed`; with tracing on every call goes through
    :class:`_Call` for its span."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self._seconds = METRICS.storage_seconds.observe
        self._bytes = METRICS.storage_bytes.inc
        #: fixed at start (the CLI sets tracing up before the app exists)
        self._traced = tracing.TRACER is not None
        if not self._traced:  # instance attributes: they shadow the traced methods below
            hist = METRICS.storage_seconds
            if inner.times_own_calls:  # the backend times them: its own methods, no wrapper
                inner.timings = _timings(hist, self.name)
                self.get_content = inner.get_content  # type: ignore[method-assign]
                self.stat = inner.stat  # type: ignore[method-assign]
                self.list = inner.list  # type: ignore[method-assign]
                self._children = inner._children  # type: ignore[method-assign]
            else:
                self.get_content = _timed(inner.get_content, hist, self.name, "get_content")  # type: ignore[method-assign]
                self.stat = _timed(inner.stat, hist, self.name, "stat")  # type: ignore[method-assign]
                self.list = _timed(inner.list, hist, self.name, "list")  # type: ignore[method-assign]
        self._key_put_content = (self.name, "put_content")
        self.cheap_listing = inner.cheap_listing

    def __getattr__(self, name: str) -> Any:  # backend capabilities (commits_atomically, ...)
        return getattr(self.inner, name)

    def check(self, path: str) -> str:
        return self.inner.check(path)

    async def get_content(self, path: str) -> bytes:
        with _Call(self.name, "get_content"):
            return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes) -> None:
        if self._traced:
            with _Call(self.name, "put_content"):
                await self.inner.put_content(path, data)
        else:
            start = _perf()
            try:
                await self.inner.put_content(path, data)
            except BaseException as exc:
                self._seconds(self._key_put_content, _perf() - start)
                _failed(self.name, "put_content", exc)
                raise
            self._seconds(self._key_put_content, _perf() - start)

    async def stat(self, path: str) -> FileInfo:
        with _Call(self.name, "stat"):
            return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        with _Call(self.name, "list"):
            return await self.inner.list(path)

    async def reader(self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Timed until the first chunk (opening the object); the bytes are counted as they go."""
        chunks = self.inner.reader(path, offset, chunk_size=chunk_size)
        total = 0
        try:
            with _Call(self.name, "reader"):
                first = await anext(chunks, None)
            if first is None:
                return
            total = len(first)
            yield first
            async for chunk in chunks:
                total += len(chunk)
                yield chunk
        finally:
            self._bytes((self.name, "read"), total)
            await chunks.aclose()  # type: ignore[attr-defined]

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        with _Call(self.name, "writer"):
            inner = await self.inner.writer(path, append)
        return _MeteredWriter(inner, self.name)

    async def put_contents(self, stages: Any) -> None:
        # one call of the backend (which batches them): timed as one action
        with _Call(self.name, "put_contents"):
            await self.inner.put_contents(stages)

    async def move(self, source: str, dest: str) -> None:
        with _Call(self.name, "move"):
            await self.inner.move(source, dest)

    async def delete(self, path: str) -> None:
        with _Call(self.name, "delete"):
            await self.inner.delete(path)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        with _Call(self.name, "redirect_url"):
            return await self.inner.redirect_url(path, method)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    def walk(self, path: str, callback: Any = None, *, start_after: str | None = None) -> AsyncIterator[FileInfo]:
        return self.inner.walk(path, callback, start_after=start_after)

    async def _children(self, path: str) -> list[FileInfo]:
        with _Call(self.name, "list"):
            return await self.inner._children(path)

    async def list_files(self, path: str, *, details: bool = True) -> AsyncIterator[list[FileInfo]]:
        """The backend's bulk listing (not the base class's walk), one timed call per page."""
        pages = self.inner.list_files(path, details=details)
        try:
            while True:
                with _Call(self.name, "list_files"):
                    page = await anext(pages, None)
                if page is None:
                    return
                yield page
        finally:
            await pages.aclose()  # type: ignore[attr-defined]

    async def list_children(self, directories: Any) -> dict[str, list[str]]:
        with _Call(self.name, "list_children"):
            return await self.inner.list_children(directories)

    async def stat_many(self, paths: Any) -> dict[str, FileInfo]:
        with _Call(self.name, "stat_many"):
            return await self.inner.stat_many(paths)

    async def delete_files(self, paths: list[str]) -> None:
        with _Call(self.name, "delete_files"):
            await self.inner.delete_files(paths)

    async def close(self) -> None:
        await self.inner.close()


class _MeteredWriter(FileWriter):
    """Bytes written are counted once per writer (when it is closed, committed or cancelled: the
    growth of its size), not per write: ``write`` is the backend writer's own method, so a push
    pays nothing per piece."""

    def __init__(self, inner: FileWriter, driver: str) -> None:
        self.inner = inner
        self.driver = driver
        self._counted = inner.size
        self.write = inner.write  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def size(self) -> int:
        return self.inner.size

    async def write(self, data: bytes | bytearray | memoryview) -> int:  # shadowed in __init__
        return await self.inner.write(data)

    def _count(self) -> None:
        size = self.inner.size
        if size > self._counted:
            METRICS.storage_bytes.inc((self.driver, "write"), size - self._counted)
        self._counted = size

    async def close(self) -> None:
        self._count()
        with _Call(self.driver, "writer_close"):
            await self.inner.close()

    async def commit(self) -> None:
        self._count()
        with _Call(self.driver, "writer_commit"):
            await self.inner.commit()

    async def cancel(self) -> None:
        self._count()
        with _Call(self.driver, "writer_cancel"):
            await self.inner.cancel()


def unwrap(driver: StorageDriver) -> StorageDriver:
    """The backend under any MeteredDriver layers."""
    while isinstance(driver, MeteredDriver):
        driver = driver.inner
    return driver
