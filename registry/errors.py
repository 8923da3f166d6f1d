"""The OCI distribution error codes, their HTTP statuses, and the one exception that carries them.

Handlers and the store raise :class:`RegistryError`; a middleware turns it into the JSON envelope
``{"errors": [{"code", "message", "detail"}]}``. A storage fault that reaches the middleware (the
drivers' typed :class:`~drivers.base.StorageError`) becomes one through :func:`storage_error`, the
one place that maps them:

- out of space (ENOSPC, EDQUOT, HTTP 507): 507 ``STORAGE_FULL``;
- a fault that may pass (timeout, connection refused or reset, throttling, 5xx): 503
  ``UNAVAILABLE`` with ``Retry-After``;
- a path that vanished during the request (a concurrent delete the store did not expect): 503
  ``UNAVAILABLE`` with ``Retry-After``;
- any other storage error: 500 ``UNKNOWN`` naming the kind of storage error.
"""

from __future__ import annotations

import enum
from typing import Any

from drivers.base import PathNotFound, StorageError, StorageFull, StorageUnavailable

#: seconds a client is told to wait before retrying after a storage fault that may pass
STORAGE_RETRY_AFTER = 5


class ErrorCode(enum.Enum):
    # value: (HTTP status, default message)
    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (400, "manifest references a blob unknown to the registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    RANGE_INVALID = (416, "invalid content range")
    TAG_INVALID = (400, "manifest tag did not match URI")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    MANIFEST_TOO_LARGE = (413, "manifest too large")  # no spec code; sent as SIZE_INVALID-like 413
    UNKNOWN = (500, "unknown error")
    UNAVAILABLE = (503, "service unavailable")  # distribution's code: a failing health check, too many connections
    STORAGE_FULL = (507, "insufficient storage")  # ours: the storage backend is out of space

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


class RegistryError(Exception):
    """An error with an OCI code; ``headers`` are added to the response (e.g. ``Range``)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status or code.status
        self.headers = headers or {}
        super().__init__(f"{code.name}: {self.message}")

    def body(self) -> dict[str, Any]:
        code = "SIZE_INVALID" if self.code is ErrorCode.MANIFEST_TOO_LARGE else self.code.name
        entry: dict[str, Any] = {"code": code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


def storage_error(exc: StorageError) -> RegistryError:
    """The OCI error answering a storage fault (see the module docstring). Its detail names the
    driver and the kind of fault, never a storage path or a backend's message."""
    detail = {"driver": exc.driver, "fault": exc.kind}
    retry = {"Retry-After": str(STORAGE_RETRY_AFTER)}
    if isinstance(exc, StorageFull):
        return RegistryError(ErrorCode.STORAGE_FULL, "the registry's storage is out of space; nothing was stored",
                             detail=detail)
    if isinstance(exc, StorageUnavailable):
        return RegistryError(ErrorCode.UNAVAILABLE, "the registry's storage is unavailable (timeout or connection "
                             "failure); retry later", detail=detail, headers=retry)
    if isinstance(exc, PathNotFound):
        return RegistryError(ErrorCode.UNAVAILABLE, "the storage changed while the request ran; retry",
                             detail=detail, headers=retry)
    return RegistryError(ErrorCode.UNKNOWN, f"storage error: {exc.kind}", detail=detail)
