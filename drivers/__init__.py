"""Storage drivers: one async contract (:mod:`drivers.base`) and its backends."""

from .base import (
    ContentWrite,
    DriverConfigError,
    FileInfo,
    FileWriter,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    Unsupported,
    WalkAction,
    check_dir,
    check_path,
    walk_key,
)

__all__ = [
    "ContentWrite",
    "DriverConfigError",
    "FileInfo",
    "FileWriter",
    "InvalidOffset",
    "InvalidPath",
    "PathNotFound",
    "StorageDriver",
    "StorageError",
    "Unsupported",
    "WalkAction",
    "check_dir",
    "check_path",
    "walk_key",
]
