"""What the cloud drivers (s3, gcs, azure, oss, swift) share beyond the generic fsspec driver.

- :class:`Params`: :class:`drivers.params.Params` that also registers secret values for redaction.
- Secret redaction: every secret a driver is configured with is registered, and log records of
  the SDKs and any error text we build are scrubbed of it.
- :class:`ObjectStoreDriver`: the generic driver plus the streaming multipart writer of
  :mod:`drivers.multipart`, error text without secrets, and the retry settings.

The ``swift`` driver (:mod:`drivers.swift`) is one of them too: its filesystem is our own
(:mod:`drivers.swiftfs`, aiohttp; no maintained async fsspec filesystem for Swift exists), its
parts are the segments of a Static Large Object.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from .base import FileWriter, PathNotFound, StorageError, classify
from .generic import _MISSING, FsspecDriver
from .params import Params as BaseParams
from .multipart import SIDECAR_SUFFIX, MemoryBudget, PartStore, PartWriter, memory_budget, set_memory_budget

# Keep SDKs away from cloud metadata addresses: credentials are always explicit here.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "True")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

#: how many times a request is tried on 429, 5xx, connection errors and timeouts
RETRY_ATTEMPTS = 6

class Params(BaseParams):
    """Driver parameters whose secret values are also scrubbed from SDK logs and error texts."""

    def __init__(self, driver: str, raw: Mapping[str, Any] | None, secrets: frozenset[str] = frozenset()) -> None:
        super().__init__(driver, raw, secrets)
        for key in secrets:
            value = self.raw(key)
            if isinstance(value, str) and value:
                register_secret(value)

    def budget(self) -> MemoryBudget:
        """The process-wide upload memory budget, resized by ``uploadmemorybudget``."""
        if self.has("uploadmemorybudget"):
            set_memory_budget(self.int("uploadmemorybudget", 0, minimum=1 << 20))
        return memory_budget()


# --- secret redaction ----------------------------------------------------------------------

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_SDK_LOGGERS = ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "azure", "adlfs", "urllib3", "fsspec", "aiohttp")
_installed = False


def register_secret(value: str) -> None:
    """Scrub ``value`` from SDK log records and from our error texts from now on."""
    if len(value) < 4:
        return
    with _secrets_lock:
        _secrets.add(value)
    _install_record_filter()


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "<redacted>")
    return text


def _install_record_filter() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _secrets and record.name.split(".", 1)[0] in _SDK_LOGGERS:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a broken record is the caller's bug, not ours
                return record
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)


# --- the shared driver --------------------------------------------------------------------


class ObjectStoreDriver(FsspecDriver):
    """The generic driver with streaming resumable writers and secret-free errors."""

    params_class = Params

    #: bytes per multipart part (the ``chunksize`` key)
    part_size: int = 10 << 20
    #: a writer's data is invisible until ``commit`` publishes it whole (and ``cancel`` leaves
    #: nothing): the store may write a blob whose digest it knows straight to its final key
    #: and cancel on a digest mismatch, instead of writing an upload file and copying it
    commits_atomically = True
    budget: MemoryBudget

    def _translate(self, path: str, exc: BaseException) -> BaseException:
        """As the generic translation, but secret-free: details are redacted and the SDK
        exception is not chained (it may carry request details we do not want logged)."""
        if isinstance(exc, StorageError):
            if exc.detail:
                exc.detail = redact(exc.detail)
                exc.args = (exc._text(),)
            return exc
        if not isinstance(exc, Exception):
            return exc
        if isinstance(exc, _MISSING) or self._is_missing(exc):
            failure: StorageError = PathNotFound(self.name, path)
        else:
            failure = classify(exc)(self.name, path, redact(f"{type(exc).__name__}: {exc}"))
        failure.__suppress_context__ = True  # what ``raise ... from None`` does
        return failure

    def _is_missing(self, exc: Exception) -> bool:
        """Whether an SDK exception means "no such object" (backends extend this)."""
        return False

    def _part_store(self) -> PartStore:
        raise NotImplementedError

    async def _delete_tree(self, key: str) -> None:
        """Delete every object below ``key`` (never ``key``-prefixed siblings), first aborting
        the multipart uploads whose state lies there: purging an abandoned upload must not
        leave its parts billed on the store."""
        prefix = self.fs._strip_protocol(key) + "/"
        found = [f for f in await self._call("find", key) if self.fs._strip_protocol(f).startswith(prefix)]
        sidecars = [f for f in found if f.endswith(SIDECAR_SUFFIX)]
        store = self._part_store()
        for sidecar in sidecars:
            await store.discard_leftover(self.fs._strip_protocol(sidecar)[: -len(SIDECAR_SUFFIX)])
        files = [f for f in found if not f.endswith(SIDECAR_SUFFIX)]
        if files:
            await self._call("rm", files)

    async def _open_writer(self, path: str, key: str, append: bool) -> FileWriter:
        store = self._part_store()
        if append:
            return await PartWriter.resume(store, path, key, self.part_size, self.budget)
        await store.discard_leftover(key)
        return PartWriter(store, path, key, self.part_size, budget=self.budget)
