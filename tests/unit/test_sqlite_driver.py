"""What is particular to the SQLite driver (the metadata contract covers the rest)."""

from __future__ import annotations

import pytest

from app.backends.metadata import MetadataError, open_metadata


async def test_a_connection_closed_underneath_is_a_metadata_error(sqlite_url: str) -> None:
    store = await open_metadata(sqlite_url)
    try:
        await store.db.conn.close()  # type: ignore[attr-defined]  # aiosqlite's own connection
        with pytest.raises(MetadataError):
            await store.db.fetchval("SELECT 1")
    finally:
        await store.close()
