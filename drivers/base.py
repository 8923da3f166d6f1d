"""The storage-driver contract: the only way the registry touches storage.

Every backend implements :class:`StorageDriver`. Paths are driver paths: absolute,
``/``-separated, each component made of ``[A-Za-z0-9._-]`` and never ``.`` or ``..``.
They are validated here, once, by :func:`check_path` (and :func:`check_dir`, which also
accepts the root ``/`` for :meth:`StorageDriver.list` and :meth:`StorageDriver.walk`).

Directories are implicit, as on an object store: a directory exists while some file lies
below it. Backends with real directories remove the ones a delete or move leaves empty, so
every backend lists the same tree. The root ``/`` always exists.

The conformance suite in :mod:`drivers.testsuite` is the executable form of this contract.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import errno
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

_COMPONENT_RE = re.compile(r"[A-Za-z0-9._-]+")
_PATH_RE = re.compile(r"(?:/[A-Za-z0-9._-]+)+")
#: deletes :meth:`StorageDriver.delete_files` runs at once (or bulk requests, on object stores)
DELETE_PARALLELISM = 16


class StorageError(Exception):
    """Base of every driver error; carries the driver's name so logs say which backend failed."""

    kind = "storage error"
    #: raised by :meth:`StorageDriver.put_contents`: the driver paths it had written (made
    #: visible) before it failed, which the caller may have to undo
    visible: frozenset[str] = frozenset()

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


class StorageFull(StorageError):
    """The backend has no room left: a full disk or quota (ENOSPC, EDQUOT), HTTP 507."""

    kind = "out of space"


class StorageUnavailable(StorageError):
    """A fault that may pass: a timeout, a refused or reset connection, a throttling or 5xx
    answer the backend's own retries did not get past. Retrying later may succeed."""

    kind = "backend unavailable"


#: errno values of a full disk or an exhausted quota
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: errno values of network faults that may pass
_TRANSIENT_ERRNOS = frozenset({
    errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET,
})
#: SDK exception classes (by name, so the contract imports no SDK) of connection faults and timeouts:
#: botocore, aiohttp's client, azure-core, google-auth/requests
_TRANSIENT_CLASSES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ProxyConnectionError", "ClientConnectionError", "ServerDisconnectedError", "ServerTimeoutError",
    "ClientPayloadError", "ServiceRequestError", "ServiceResponseError", "TransportError",
})
#: backend error codes of throttling and server faults (S3, OSS, Azure, GCS)
_TRANSIENT_CODES = frozenset({
    "SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "Throttling",
    "ThrottlingException", "ServerBusy", "OperationTimedOut", "InternalServerError",
})
_FULL_CODES = frozenset({"InsufficientStorage", "InsufficientAccountStorage"})


def classify(exc: BaseException) -> type[StorageError]:
    """The :class:`StorageError` subclass a backend exception stands for: :class:`StorageFull`,
    :class:`StorageUnavailable`, or plain :class:`StorageError`. Looks through the exception's
    causes (SDKs and fsspec wrap the original error)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, StorageError):
            return type(current) if isinstance(current, (StorageFull, StorageUnavailable)) else StorageError
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return StorageFull
        if isinstance(current, (TimeoutError, ConnectionError)):
            return StorageUnavailable
        if isinstance(current, OSError) and current.errno in _TRANSIENT_ERRNOS:
            return StorageUnavailable
        if any(cls.__name__ in _TRANSIENT_CLASSES for cls in type(current).__mro__):
            return StorageUnavailable
        status, code = _http_status_and_code(current)
        if status == 507 or code in _FULL_CODES:
            return StorageFull
        if status in (429, 500, 502, 503, 504) or code in _TRANSIENT_CODES:
            return StorageUnavailable
        current = current.__cause__ or current.__context__
        seen += 1
    return StorageError


def _http_status_and_code(exc: BaseException) -> tuple[int | None, str]:
    """The HTTP status and error code an SDK exception carries, whatever the SDK calls them."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return (status if isinstance(status, int) else None), str(response.get("Error", {}).get("Code", ""))
    for attr in ("status_code", "status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value, str(getattr(exc, "error_code", "") or "")
    return None, str(getattr(exc, "error_code", "") or "")


class Conflict(StorageError):
    """A conditional write was refused: the object changed since this writer read it (another
    process wrote it). Nothing of this write took effect."""

    kind = "conflicting write"


class DriverConfigError(ValueError):
    """A ``storage:`` config block that names an unknown driver or holds a bad parameter."""


def is_valid_component(name: str) -> bool:
    """True for one path component: ``[A-Za-z0-9._-]+`` but not ``.`` or ``..``."""
    return bool(_COMPONENT_RE.fullmatch(name)) and name not in (".", "..")


def is_valid_path(path: object) -> bool:
    return (
        isinstance(path, str)
        and bool(_PATH_RE.fullmatch(path))
        # a "." or ".." component starts with "/." (checked first: a bulk scan checks thousands)
        and ("/." not in path or all(p not in (".", "..") for p in path.split("/")[1:]))
    )


def check_path(driver: str, path: str) -> str:
    """Return ``path`` if it is a valid driver path, else raise :class:`InvalidPath`."""
    if not is_valid_path(path):
        raise InvalidPath(driver, repr(path) if not isinstance(path, str) else path)
    return path


def check_dir(driver: str, path: str) -> str:
    """Like :func:`check_path`, but also accepts the root ``/`` (for list and walk)."""
    return path if path == "/" else check_path(driver, path)


def walk_key(path: str) -> tuple[str, ...]:
    """Sort key of walk order: depth-first, each directory's children sorted by name.

    Comparing component tuples (not strings) keeps a directory's subtree together:
    ``/a/b`` comes before ``/a-x`` although ``"/a-x" < "/a/b"``.
    """
    return tuple(path.split("/")[1:]) if path != "/" else ()


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What :meth:`StorageDriver.stat` and :meth:`StorageDriver.walk` report about a path.

    ``modified`` is timezone-aware UTC for files; directories may report None (object
    stores keep no directory times). Directories report size 0.
    """

    path: str
    size: int
    modified: dt.datetime | None
    is_dir: bool


@dataclasses.dataclass(frozen=True)
class ContentWrite:
    """One small file of :meth:`StorageDriver.put_contents`.

    ``durable=False`` marks a file the registry can rebuild from others (an index entry, a
    hint, a resumable hash state): the backend need not make it survive a power cut before
    returning (local disk: no fsync), only make it visible atomically and in order."""

    path: str
    data: bytes
    durable: bool = True


class CallTimings:
    """Where a backend that times its own hot calls (:attr:`StorageDriver.times_own_calls`)
    records them, set on it by a metering decorator: one list of latencies per action of
    :data:`OWN_TIMED` (the backend appends; the decorator's side empties them) and
    ``failed(action, error)`` for a call that raised.

    Why the backend and not the decorator: a wrapping coroutine around each of a manifest GET's
    three reads cost more CPU than the timing itself (issue 12's 3% budget)."""

    __slots__ = ("samples", "failed")

    def __init__(self, samples: dict[str, list[float]], failed: Callable[[str, BaseException], None]) -> None:
        self.samples = samples
        self.failed = failed


#: the calls a backend with ``times_own_calls`` times itself (a request makes several)
OWN_TIMED = ("get_content", "stat", "list")


class WalkAction(enum.Enum):
    CONTINUE = "continue"
    SKIP_DIR = "skip_dir"
    STOP = "stop"


WalkCallback = Callable[[FileInfo], Awaitable[WalkAction | None] | WalkAction | None]


class FileWriter(abc.ABC):
    """A resumable writer, from :meth:`StorageDriver.writer`.

    ``size`` counts every byte written so far, including bytes of earlier sessions that this
    writer resumed. The data is guaranteed to be readable at ``path`` only after
    :meth:`commit`; before that, whether a reader sees it depends on the backend.

    Life cycle: an open writer ends with exactly one of :meth:`commit` (data published),
    :meth:`close` (data kept for a later ``writer(path, append=True)``, in this or any other
    process) or :meth:`cancel` (data and any upload state removed). After that, ``write``,
    ``commit`` and ``cancel`` raise :class:`StorageError`; ``close`` is always allowed and
    does nothing more. ``async with`` closes, so an exception leaves the upload resumable.

    A writer whose ``write``, ``commit`` or ``close`` raised is *failed* (:attr:`failed`): it may
    still hold a file or a multipart upload, so ``close`` then releases it (keeping what the
    backend persisted, for a resume from its real size) and ``cancel`` removes it all; ``write``
    and ``commit`` raise. :attr:`size` of a failed writer may count bytes that never arrived.
    """

    @property
    def failed(self) -> bool:
        """Whether an operation of this writer raised (see the class docstring)."""
        return False

    @property
    @abc.abstractmethod
    def size(self) -> int: ...

    @abc.abstractmethod
    async def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns its length. The caller may reuse ``data`` afterwards."""

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
    """The async storage contract; see the module docstring for paths and directories.

    Every method validates its paths first (InvalidPath) and raises only
    :class:`StorageError` subclasses naming this driver.
    """

    #: the backend's name as written in the ``storage:`` config block
    name: str = "driver"
    #: parameters whose values never appear in messages (and, for cloud drivers, in SDK logs)
    secret_params: ClassVar[frozenset[str]] = frozenset()
    #: the reader of this driver's block: :class:`drivers.params.Params` when None, or a subclass
    params_class: ClassVar[Any] = None
    #: listing one directory costs about what a stat of one file costs (local disk), so a bulk
    #: scan that knows the layout lists directories by name (:meth:`list_children`) and stats only
    #: what it needs; False (object stores): one paginated :meth:`list_files` by prefix is fewer
    #: requests than a listing per directory
    cheap_listing: ClassVar[bool] = False
    #: the backend times its own :data:`OWN_TIMED` calls into :attr:`timings` when that is set
    #: (``list`` also covers the per-directory listings of :meth:`walk`)
    times_own_calls: ClassVar[bool] = False
    timings: CallTimings | None = None

    @classmethod
    def params(cls, raw: Any) -> Any:
        """The reader (:class:`drivers.params.Params`) of this driver's block ``raw``; ``raw``
        itself when the factory already made one (it then warns about keys nobody read)."""
        from .params import Params

        return (cls.params_class or Params).of(cls.name, raw, cls.secret_params)

    @classmethod
    def from_params(cls, params: Any) -> "StorageDriver":
        """Build the driver from its ``storage: <name>:`` block (distribution's keys).

        Read every key through ``p = cls.params(params)``, so that a key no read declared is
        warned about. Raises :class:`DriverConfigError` for a bad value."""
        cls.params(params)
        return cls()

    def check(self, path: str) -> str:
        return check_path(self.name, path)

    @abc.abstractmethod
    async def get_content(self, path: str) -> bytes:
        """Whole content of a small file (links, manifests). PathNotFound if missing."""

    @abc.abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Write a small file atomically (a reader sees the old or the new content, never a
        mix), replacing any previous content and creating parent directories."""

    async def put_contents(self, stages: Sequence[Sequence[ContentWrite]]) -> None:
        """Write small files as :meth:`put_content` does, stage after stage: every file of a stage
        becomes visible only after every file of the stages before it (within a stage, in any
        order). When it returns, every ``durable`` file survives a power cut. A failure raises
        the error of the file that failed, with ``visible`` set to the paths written before it.

        The default runs the files of a stage concurrently through :meth:`put_content`; a
        backend that can (local disk) writes everything in one pass: one worker-thread hop,
        the fsyncs of all stages at once, then the renames in stage order."""
        for stage in stages:
            for write in stage:
                self.check(write.path)
        visible: set[str] = set()

        async def one(write: ContentWrite) -> None:
            await self.put_content(write.path, write.data)
            visible.add(write.path)

        for stage in stages:
            outcomes = await asyncio.gather(*(one(w) for w in stage), return_exceptions=True)
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                if isinstance(failures[0], Exception):  # a decorator's own error too (tests' faults)
                    with contextlib.suppress(AttributeError):
                        failures[0].visible = frozenset(visible)  # type: ignore[attr-defined]
                raise failures[0]

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the file from ``offset`` in non-empty ``bytes`` chunks of at most
        ``chunk_size``. ``offset == size`` yields nothing; negative or beyond the size raises
        InvalidOffset; a missing file (or a directory) raises PathNotFound (both raised on
        the first iteration at the latest). Closing the iterator early releases the file."""

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False) -> FileWriter:
        """A writer at ``path``; with ``append`` it resumes an uncommitted writer that any
        process or driver instance left there (PathNotFound when there is none). Without
        ``append`` it starts from zero, discarding what an earlier writer left."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo:
        """Size, modification time and kind of a file or directory. PathNotFound if missing."""

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Full paths of the direct children of directory ``path``, sorted. The root ``/`` is
        allowed here (and is empty, not missing, on new storage). PathNotFound when ``path``
        does not exist or is a file."""

    @abc.abstractmethod
    async def move(self, source: str, dest: str) -> None:
        """Move a file, overwriting ``dest`` and creating its parents. PathNotFound (dest
        untouched) if source is missing."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete a file or a directory tree. PathNotFound if nothing is there. Deleting
        ``/a`` never touches ``/ab``."""

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """An absolute http(s) URL a client can ``method`` (GET or HEAD) ``path`` at directly,
        or None to serve it ourselves. Other methods raise Unsupported."""
        self.check(path)
        self.check_redirect_method(path, method)
        return None

    def check_redirect_method(self, path: str, method: str) -> None:
        if method not in ("GET", "HEAD"):
            raise Unsupported(self.name, path, f"no redirect for method {method!r}")

    def local_path(self, path: str) -> str | None:
        """The OS path of a file on local disk (lets the HTTP layer use sendfile), else None."""
        self.check(path)
        return None

    def walk(
        self,
        path: str,
        callback: WalkCallback | None = None,
        *,
        start_after: str | None = None,
    ) -> AsyncIterator[FileInfo]:
        """Walk below ``path`` (files and directories, not ``path`` itself) in walk order:
        depth-first, each directory's children sorted by name (see :func:`walk_key`).

        ``callback`` sees each entry before it is yielded and may answer SKIP_DIR for a
        directory (it is yielded, its children are not visited) or STOP (nothing more is
        yielded, this entry included). ``start_after`` yields only entries after it in walk
        order; it need not exist. PathNotFound if ``path`` is missing or a file.
        Backends override :meth:`_children` (one listing with details) or this method.
        """
        return _walk(self, path, callback, start_after)

    async def list_files(self, path: str, *, details: bool = True) -> AsyncIterator[list[FileInfo]]:
        """Every file below directory ``path`` (no directories), with size and modification
        time, in pages of any size and in no particular order; nothing when ``path`` is missing.
        With ``details=False`` a backend may skip what costs one more call per file (a stat on
        local disk): sizes are then 0 and times None.

        What a bulk scan (the garbage collector) uses: object stores override it with one
        paginated listing by prefix instead of one listing per directory. The default walks."""
        check_dir(self.name, path)
        page: list[FileInfo] = []
        try:
            async for info in self.walk(path):
                if not info.is_dir:
                    page.append(info)
                    if len(page) >= 1000:
                        yield page
                        page = []
        except PathNotFound:
            pass
        if page:
            yield page

    async def list_children(self, directories: Sequence[str]) -> dict[str, list[str]]:
        """The names (last components, unsorted) of the direct children of each directory, for
        many directories at once; a directory that is missing or a file is left out of the result.

        Batch form of :meth:`list` for a scan that knows the layout's depth (see
        :attr:`cheap_listing`); local disk answers a whole batch in one worker-thread job."""
        limit = asyncio.Semaphore(DELETE_PARALLELISM)
        out: dict[str, list[str]] = {}

        async def one(d: str) -> None:
            async with limit:
                try:
                    out[d] = [p.rsplit("/", 1)[-1] for p in await self.list(d)]
                except PathNotFound:
                    pass

        await asyncio.gather(*(one(d) for d in directories))
        return out

    async def stat_many(self, paths: Sequence[str]) -> dict[str, FileInfo]:
        """:meth:`stat` of many paths at once; missing ones are left out of the result."""
        limit = asyncio.Semaphore(DELETE_PARALLELISM)
        out: dict[str, FileInfo] = {}

        async def one(p: str) -> None:
            async with limit:
                try:
                    out[p] = await self.stat(p)
                except PathNotFound:
                    pass

        await asyncio.gather(*(one(p) for p in paths))
        return out

    async def delete_files(self, paths: list[str]) -> None:
        """Delete many files (not directories) at once; files already missing are skipped.

        Optional batch form of :meth:`delete`: backends with a bulk call use it (S3
        DeleteObjects, up to 1,000 keys per request) with bounded parallelism; the default
        deletes one by one, :data:`DELETE_PARALLELISM` at a time. Directories left empty go as
        with :meth:`delete`. Raises the first error after every other delete was tried."""
        for p in paths:
            self.check(p)
        limit = asyncio.Semaphore(DELETE_PARALLELISM)
        errors: list[BaseException] = []

        async def one(p: str) -> None:
            async with limit:
                try:
                    await self.delete(p)
                except PathNotFound:
                    pass
                except StorageError as exc:
                    errors.append(exc)

        await asyncio.gather(*(one(p) for p in paths))
        if errors:
            raise errors[0]

    async def _children(self, path: str) -> list[FileInfo]:
        """The direct children of directory ``path`` with their details, sorted (walk's
        building block). The default asks :meth:`list` then :meth:`stat` for each."""
        out = []
        for child in await self.list(path):
            try:
                out.append(await self.stat(child))
            except PathNotFound:
                continue  # deleted while we walked
        return out

    async def close(self) -> None:
        """Release connections and other resources."""


async def _walk(
    driver: StorageDriver, root: str, callback: WalkCallback | None, start_after: str | None
) -> AsyncIterator[FileInfo]:
    check_dir(driver.name, root)
    start = walk_key(check_path(driver.name, start_after)) if start_after is not None else None
    try:
        async for item in _visit(driver, root, callback, start):
            yield item
    except _StopWalk:
        return


async def _visit(
    driver: StorageDriver,
    directory: str,
    callback: WalkCallback | None,
    start: tuple[str, ...] | None,
) -> AsyncIterator[FileInfo]:
    for info in await driver._children(directory):
        key = walk_key(info.path)
        if start is not None and key <= start:
            # on the way to start (an ancestor of it, or start itself): its subtree may
            # still hold entries after start; any other earlier entry is skipped whole
            if info.is_dir and start[: len(key)] == key:
                async for sub in _visit(driver, info.path, callback, start):
                    yield sub
            continue
        action = None
        if callback is not None:
            action = callback(info)
            if hasattr(action, "__await__"):
                action = await action  # type: ignore[misc]
        if action is WalkAction.STOP:
            raise _StopWalk
        yield info
        if info.is_dir and action is not WalkAction.SKIP_DIR:
            async for sub in _visit(driver, info.path, callback, None):
                yield sub


class _StopWalk(Exception):
    pass
