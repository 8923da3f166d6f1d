"""What the cloud drivers (s3, gcs, azure, oss) share beyond the generic fsspec driver.

- :class:`Params`: reads distribution's ``storage.<driver>`` keys, with the types it accepts
  (YAML or ``REGISTRY_STORAGE_*`` strings), and errors that name the key but never echo a
  secret's value.
- Secret redaction: every secret a driver is configured with is registered, and log records of
  the SDKs and any error text we build are scrubbed of it.
- :class:`ObjectStoreDriver`: the generic driver plus the streaming multipart writer of
  :mod:`drivers.multipart`, error text without secrets, and the retry settings.

Swift is not among them (yet). OpenStack Swift's own server (PyPI ``swift``) does install and
run here as an all-in-one test fixture (one-replica rings, account/container/object/proxy
servers on loopback, xattrs on the temp directory work), but its ``tempauth`` refuses every
request (503) without a memcached to talk to, so the fixture also needs Debian's ``memcached``;
and there is no maintained async fsspec filesystem for Swift (``swiftspec`` 0.0.4 dates from
2022), so the driver would be ours on aiohttp: auth v1/v3, listings, SLO segments as parts
with their state in a sidecar, COPY for moves, TempURL for redirects. Not done for lack of time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from .base import DriverConfigError, FileWriter, PathNotFound, StorageError
from .generic import _MISSING, FsspecDriver
from .multipart import SIDECAR_SUFFIX, MemoryBudget, PartStore, PartWriter, memory_budget, set_memory_budget

# Keep SDKs away from cloud metadata addresses: credentials are always explicit here.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "True")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

#: how many times a request is tried on 429, 5xx, connection errors and timeouts
RETRY_ATTEMPTS = 6

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class Params:
    """Typed access to one driver's config block; errors say ``storage.<driver>.<key>``."""

    def __init__(self, driver: str, raw: Mapping[str, Any] | None, secrets: frozenset[str] = frozenset()) -> None:
        if raw is not None and not isinstance(raw, Mapping):
            raise DriverConfigError(f"storage.{driver}: expected a mapping of parameters")
        # distribution's keys are case-insensitive (env overrides arrive lower-cased)
        self._raw = {str(k).lower(): v for k, v in (raw or {}).items()}
        self._driver = driver
        self._secrets = secrets
        for key in secrets:
            value = self._raw.get(key)
            if isinstance(value, str) and value:
                register_secret(value)

    def _where(self, key: str) -> str:
        return f"storage.{self._driver}.{key}"

    def _bad(self, key: str, expected: str, value: Any) -> DriverConfigError:
        shown = "<hidden>" if key in self._secrets else repr(value)
        return DriverConfigError(f"{self._where(key)}: expected {expected}, got {shown}")

    def has(self, key: str) -> bool:
        return self._raw.get(key) not in (None, "")

    def raw(self, key: str) -> Any:
        return self._raw.get(key)

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._raw.get(key)
        if value is None or value == "":
            if required:
                raise DriverConfigError(f"{self._where(key)} is required")
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self._bad(key, "a string", value)
        return str(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self._raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self._bad(key, "true or false", value)

    def int(self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer; strings may carry a unit (``10MiB``, ``5m``) as sizes often do."""
        value = self._raw.get(key)
        if value is None or value == "":
            return default
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            m = _SIZE_RE.match(value)
            if m:
                number = int(m.group(1)) * _UNITS[(m.group(2) or "")[:1].lower()]
        if number is None:
            raise self._bad(key, "an integer", value)
        if minimum is not None and number < minimum:
            raise DriverConfigError(f"{self._where(key)}: must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise DriverConfigError(f"{self._where(key)}: must be at most {maximum}, got {number}")
        return number

    def choice(self, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = self.str(key, default)
        if value is not None and value not in choices:
            raise DriverConfigError(f"{self._where(key)}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def root(self, key: str = "rootdirectory") -> str:
        """The key prefix inside the bucket: no leading or trailing slash, valid components."""
        value = (self.str(key, "") or "").strip("/")
        if value and any(part in ("", ".", "..") for part in value.split("/")):
            raise DriverConfigError(f"{self._where(key)}: not a clean path: {value!r}")
        return value

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

    #: bytes per multipart part (the ``chunksize`` key)
    part_size: int = 10 << 20
    #: a writer's data is invisible until ``commit`` publishes it whole (and ``cancel`` leaves
    #: nothing): the store may write a blob whose digest it knows straight to its final key
    #: and cancel on a digest mismatch, instead of writing an upload file and copying it
    commits_atomically = True
    budget: MemoryBudget

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        try:
            yield
        except StorageError as exc:
            if exc.detail:
                exc.detail = redact(exc.detail)
                exc.args = (exc._text(),)
            raise
        except _MISSING:
            raise PathNotFound(self.name, path) from None
        except Exception as exc:  # noqa: BLE001 - every backend failure becomes a StorageError
            if self._is_missing(exc):
                raise PathNotFound(self.name, path) from None
            # no chaining: the SDK exception may carry request details we do not want logged
            raise StorageError(self.name, path, redact(f"{type(exc).__name__}: {exc}")) from None

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
