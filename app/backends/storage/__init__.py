"""Blob storage: a local directory or an S3-compatible bucket."""

from __future__ import annotations

from app.backends.storage.base import (
    BlobStorage,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
)
from app.config import FilesystemStorageConfig, S3StorageConfig


async def open_storage(config: FilesystemStorageConfig | S3StorageConfig) -> BlobStorage:
    if isinstance(config, FilesystemStorageConfig):
        from app.backends.storage.filesystem import FilesystemStorage

        return await FilesystemStorage(config.root).open()
    from app.backends.storage.s3 import S3Storage

    return await S3Storage(config).open()


__all__ = [
    "BlobStorage",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageError",
    "open_storage",
]
