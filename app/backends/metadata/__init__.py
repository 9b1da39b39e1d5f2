"""Metadata: a :class:`MetadataStore` (the core's tables) over a PostgreSQL or
SQLite driver; :class:`Records`, the base of a format's own queries; :class:`Track`,
a format's migrations handed to :meth:`MetadataStore.migrate`."""

from __future__ import annotations

from app.backends.metadata.base import Conflict, MetadataError
from app.backends.metadata.migrator import Track
from app.backends.metadata.records import Records
from app.backends.metadata.store import BlobsGone, MetadataStore, hold_blobs, holding


async def open_metadata(url: str, pool_min: int = 1, pool_max: int = 10) -> MetadataStore:
    """Connect to the database named by ``url``; does not migrate."""
    if url.startswith("sqlite://"):
        from app.backends.metadata.sqlite import SqliteDriver

        return MetadataStore(await SqliteDriver.connect(url))
    from app.backends.metadata.postgres import PostgresDriver

    return MetadataStore(await PostgresDriver.connect(url, pool_min, pool_max))


__all__ = [
    "BlobsGone",
    "Conflict",
    "MetadataError",
    "MetadataStore",
    "Records",
    "Track",
    "hold_blobs",
    "holding",
    "open_metadata",
]
