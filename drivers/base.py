"""The storage-driver contract: the only way the registry touches storage.

Every backend implements :class:`StorageDriver`. Paths are driver paths: absolute,
``/``-separated, each component made of ``[A-Za-z0-9._-]`` and never ``.`` or ``..``.
They are validated here, once, by :func:`check_path`.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

_PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


class StorageError(Exception):
    """Base of every driver error; carries the driver's name so logs say which backend failed."""

    def __init__(self, driver: str, path: str = "", detail: str = "") -> None:
        self.driver = driver
        self.path = path
        self.detail = detail
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"{self.driver}: {self.kind}"]
        if self.path:
            parts.append(f"path {self.path!r}")
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)

    kind = "storage error"


class PathNotFound(StorageError):
    kind = "path not found"


class InvalidPath(StorageError):
    kind = "invalid path"


class InvalidOffset(StorageError):
    kind = "invalid offset"

    def __init__(self, driver: str, path: str = "", offset: int = 0) -> None:
        self.offset = offset
        super().__init__(driver, path, f"offset {offset}")


class Unsupported(StorageError):
    kind = "unsupported operation"


def check_path(driver: str, path: str) -> str:
    """Return ``path`` if it is a valid driver path, else raise :class:`InvalidPath`."""
    if not isinstance(path, str) or not _PATH_RE.match(path):
        raise InvalidPath(driver, str(path))
    for part in path.split("/")[1:]:
        if part in (".", ".."):
            raise InvalidPath(driver, path)
    return path


def is_valid_path(path: str) -> bool:
    return isinstance(path, str) and bool(_PATH_RE.match(path)) and not any(
        p in (".", "..") for p in path.split("/")[1:]
    )


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What :meth:`StorageDriver.stat` and :meth:`StorageDriver.walk` report about a path."""

    path: str
    size: int
    modified: dt.datetime | None
    is_dir: bool


class WalkAction(enum.Enum):
    CONTINUE = "continue"
    SKIP_DIR = "skip_dir"
    STOP = "stop"


WalkCallback = Callable[[FileInfo], Awaitable[WalkAction | None] | WalkAction | None]


class FileWriter(abc.ABC):
    """A resumable writer. Data becomes visible at ``path`` only after :meth:`commit`.

    ``size`` counts every byte written so far, including bytes of earlier sessions that this
    writer resumed. :meth:`close` keeps the data for a later ``writer(path, append=True)``;
    :meth:`cancel` throws it away.
    """

    @property
    @abc.abstractmethod
    def size(self) -> int: ...

    @abc.abstractmethod
    async def write(self, data: bytes | bytearray | memoryview) -> int: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> None: ...

    @abc.abstractmethod
    async def cancel(self) -> None: ...

    async def __aenter__(self) -> "FileWriter":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class StorageDriver(abc.ABC):
    """The async storage contract; see the module docstring for the path rules."""

    #: the backend's name as written in the ``storage:`` config block
    name: str = "driver"

    def check(self, path: str) -> str:
        return check_path(self.name, path)

    @abc.abstractmethod
    async def get_content(self, path: str) -> bytes:
        """Whole content of a small file (links, manifests). PathNotFound if missing."""

    @abc.abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Write a small file atomically, replacing any previous content."""

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the file from ``offset``. ``offset == size`` yields nothing; negative or
        beyond the size raises InvalidOffset; a missing file raises PathNotFound (both raised
        on the first iteration at the latest)."""

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer at ``path``; with ``append`` it resumes an uncommitted writer that any
        process or driver instance left there (PathNotFound when there is none)."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo: ...

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Full paths of the direct children of directory ``path``, sorted. The root ``/`` is
        allowed here. PathNotFound when ``path`` does not exist."""

    @abc.abstractmethod
    async def move(self, source: str, dest: str) -> None:
        """Move a file, overwriting ``dest``. PathNotFound (dest untouched) if source is missing."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete a file or a directory tree. PathNotFound if nothing is there."""

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL a client can fetch ``path`` from directly, or None to serve it ourselves."""
        self.check(path)
        return None

    def local_path(self, path: str) -> str | None:
        """The OS path of a file on local disk (lets the HTTP layer use sendfile), else None."""
        return None

    def walk(
        self,
        path: str,
        callback: WalkCallback | None = None,
        *,
        start_after: str | None = None,
    ) -> AsyncIterator[FileInfo]:
        """Depth-first, lexically ordered walk below ``path`` (files and directories).

        ``callback`` may answer SKIP_DIR for a directory (its children are not visited) or STOP.
        ``start_after`` skips every path that sorts before or equal to it in walk order.
        Backends with a recursive listing may override this.
        """
        return _walk(self, path, callback, start_after)

    async def close(self) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> None: ...

    @abc.abstractmethod
    async def cancel(self) -> None: ...

    async def __aenter__(self) -> "FileWriter":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class StorageDriver(abc.ABC):
    """The async storage contract; see the module docstring for the path rules."""

    #: the backend's name as written in the ``storage:`` config block
    name: str = "driver"

    def check(self, path: str) -> str:
        return check_path(self.name, path)

    @abc.abstractmethod
    async def get_content(self, path: str) -> bytes:
        """Whole content of a small file (links, manifests). PathNotFound if missing."""

    @abc.abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Write a small file atomically, replacing any previous content."""

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the file from ``offset``. ``offset == size`` yields nothing; negative or
        beyond the size raises InvalidOffset; a missing file raises PathNotFound (both raised
        on the first iteration at the latest)."""

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer at ``path``; with ``append`` it resumes an uncommitted writer that any
        process or driver instance left there (PathNotFound when there is none)."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo: ...

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Full paths of the direct children of directory ``path``, sorted. The root ``/`` is
        allowed here. PathNotFound when ``path`` does not exist."""

    @abc.abstractmethod
    async def move(self, source: str, dest: str) -> None:
        """Move a file, overwriting ``dest``. PathNotFound (dest untouched) if source is missing."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete a file or a directory tree. PathNotFound if nothing is there."""

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL a client can fetch ``path`` from directly, or None to serve it ourselves."""
        self.check(path)
        return None

    def local_path(self, path: str) -> str | None:
        """The OS path of a file on local disk (lets the HTTP layer use sendfile), else None."""
        return None

    async def walk(
        self,
        path: str,
        callback: WalkCallback | None = None,
        *,
        start_after: str | None = None,
    ) -> AsyncIterator[FileInfo]:
        """Depth-first, lexically ordered walk below ``path`` (files and directories).

        ``callback`` may answer SKIP_DIR for a directory (its children are not visited) or STOP.
        ``start_after`` skips every path that sorts before or equal to it in walk order.
        Backends with a recursive listing may override this.
        """
        return _walk(self, path, callback, start_after)

    async def close(self) -> None:
        """Release connections and other resources."""


async def _walk(
    driver: StorageDriver, root: str, callback: WalkCallback | None, start_after: str | None
) -> AsyncIterator[FileInfo]:
    if root != "/":
        driver.check(root)
    try:
        async for item in _visit(driver, root, callback, start_after):
            yield item
    except _StopWalk:
        return


async def _visit(
    driver: StorageDriver, directory: str, callback: WalkCallback | None, start_after: str | None
) -> AsyncIterator[FileInfo]:
    for child in await driver.list(directory):
        inside_start = start_after is not None and start_after.startswith(child + "/")
        if start_after is not None and child <= start_after and not inside_start:
            continue
        try:
            info = await driver.stat(child)
        except PathNotFound:
            continue
        action = None
        if not inside_start:
            if callback is not None:
                action = callback(info)
                if hasattr(action, "__await__"):
                    action = await action  # type: ignore[misc]
            if action is WalkAction.STOP:
                raise _StopWalk
            yield info
        if info.is_dir and action is not WalkAction.SKIP_DIR:
            async for sub in _visit(driver, child, callback, start_after):
                yield sub


class _StopWalk(Exception):
    pass
