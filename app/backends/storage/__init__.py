"""Blob storage: a local directory or an S3-compatible bucket, behind one wrapper."""

from __future__ import annotations

from app.backends.storage.base import (
    BlobStorage,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
)
from app.backends.storage.checked import CheckedStorage, StorageTally
from app.config import FilesystemStorageConfig, S3StorageConfig


async def open_storage(
    config: FilesystemStorageConfig | S3StorageConfig, tally: StorageTally | None = None
) -> CheckedStorage:
    """The configured driver, opened, inside the :class:`CheckedStorage` every caller
    goes through: no driver is used without its keys checked."""
    driver: BlobStorage
    if isinstance(config, FilesystemStorageConfig):
        from app.backends.storage.filesystem import FilesystemStorage

        driver = await FilesystemStorage(config.root).open()
    else:
        from app.backends.storage.s3 import S3Storage

        driver = await S3Storage(config).open()
    return CheckedStorage(driver, tally)


__all__ = [
    "BlobStorage",
    "CheckedStorage",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageError",
    "StorageTally",
    "open_storage",
]
