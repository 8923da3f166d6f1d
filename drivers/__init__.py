"""Storage drivers: one async contract (:mod:`drivers.base`) and its backends."""

from .base import (
    FileInfo,
    FileWriter,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    Unsupported,
    WalkAction,
    check_path,
)

__all__ = [
    "FileInfo",
    "FileWriter",
    "InvalidOffset",
    "InvalidPath",
    "PathNotFound",
    "StorageDriver",
    "StorageError",
    "Unsupported",
    "WalkAction",
    "check_path",
]
