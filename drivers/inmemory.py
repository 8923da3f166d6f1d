"""The ``inmemory`` driver: fsspec's MemoryFileSystem, for tests and throw-away registries.

MemoryFileSystem's store is global to the process, so each driver instance works below a
root prefix of its own (``/inmemory-<random>``) unless ``rootdirectory`` names a shared one:
two instances with the same ``rootdirectory`` see the same storage, as two processes on one
bucket would. Everything else is the generic driver; a move is a rename in the store.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem

from .base import DriverConfigError, is_valid_path
from .generic import FileObjectWriter, FsspecDriver
from .params import Params


class _MemoryFileWriter(FileObjectWriter):
    """Stamps the time of the last session on the file (MemoryFile only records creation)."""

    def _write_and_close(self, tail: bytearray, durable: bool) -> None:
        super()._write_and_close(tail, durable)
        now = dt.datetime.now(dt.timezone.utc)
        self._file.created = self._file.modified = now


class InMemoryDriver(FsspecDriver):
    name = "inmemory"
    file_writer = _MemoryFileWriter

    def __init__(self, rootdirectory: str | None = None) -> None:
        super().__init__(MemoryFileSystem(), rootdirectory or f"/inmemory-{uuid.uuid4().hex}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "InMemoryDriver":
        root = cls.params(params).path("rootdirectory")
        if root is not None and not is_valid_path(root):
            raise DriverConfigError(f"storage.inmemory.rootdirectory: must look like /name, got {root!r}")
        return cls(root)

    async def _move_file(self, src: str, dst: str) -> None:
        store = self.fs.store
        if src not in store:
            raise FileNotFoundError(src)
        moved = store.pop(src)
        moved.path = dst
        store[dst] = moved
