"""What is particular to the SQLite driver (the metadata contract covers the rest)."""

from __future__ import annotations

import asyncio

import pytest

from app.backends.metadata import MetadataError, open_metadata


async def test_a_connection_closed_underneath_is_a_metadata_error(sqlite_url: str) -> None:
    store = await open_metadata(sqlite_url)
    try:
        await store.db.conn.close()  # type: ignore[attr-defined]  # aiosqlite's own connection
        with pytest.raises(MetadataError):
            await store.db.execute("DELETE FROM blobs WHERE digest = 'none'")
        await store.db._reader.close()  # type: ignore[attr-defined]  # the SELECTs' one
        with pytest.raises(MetadataError):
            await store.db.fetchval("SELECT 1")
    finally:
        await store.close()


async def test_a_select_is_answered_while_a_transaction_holds_the_writer(sqlite_url: str) -> None:
    """A cache hit's lookup must not queue behind a fill's transaction (or a batch of
    hit counts waiting out another worker's lock): SELECTs have their own connection,
    which sees what was committed, not what the open transaction wrote."""
    store = await open_metadata(sqlite_url)
    try:
        await store.migrate([])
        inside, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with store.db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:held', 1, 0)"
                )
                inside.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await inside.wait()
        seen = await asyncio.wait_for(
            store.db.fetchval("SELECT COUNT(*) FROM blobs WHERE digest = 'sha256:held'"), 5
        )
        assert seen == 0  # answered at once, and only what was committed
        release.set()
        await holder
        assert (
            await store.db.fetchval("SELECT COUNT(*) FROM blobs WHERE digest = 'sha256:held'") == 1
        )
    finally:
        await store.close()
