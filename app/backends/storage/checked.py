"""The one wrapper around every storage driver: keys checked, operations tallied.

Drivers trust the keys they are given; :class:`CheckedStorage` refuses a bad one
(:func:`check_key`) before the driver sees it, and counts each operation that reaches
the backend (calls, backend failures, seconds, bytes moved) in a :class:`StorageTally`.
What is tallied is cheap on purpose: two clock reads and a dict lookup per call, and
for a read one addition per chunk. ``local_path`` (the sendfile path) and
``download_url`` (signed locally) do no I/O and are only checked.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from app.backends.storage.base import (
    BlobStorage,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
    check_prefix,
)

T = TypeVar("T")


class StorageTally(Protocol):
    def add(self, operation: str, seconds: float, size: int, failed: bool) -> None:
        """One ``operation`` that took ``seconds``, moved ``size`` bytes and, if
        ``failed``, ended in a backend failure (a missing object is no failure)."""


class _Uncounted:
    def add(self, operation: str, seconds: float, size: int, failed: bool) -> None:
        return None


class CheckedStorage:
    """A :class:`BlobStorage` around ``driver``."""

    def __init__(self, driver: BlobStorage, tally: StorageTally | None = None) -> None:
        self.driver = driver
        self.tally: StorageTally = tally if tally is not None else _Uncounted()

    async def _timed(
        self, operation: str, call: Awaitable[T], size: Callable[[T], int] | None = None
    ) -> T:
        """``call``, tallied as ``operation`` (``size`` tells the bytes its result moved)."""
        started = time.perf_counter()
        moved, failed = 0, False
        try:
            result = await call
            moved = size(result) if size is not None else 0
            return result
        except ObjectNotFound:
            raise
        except StorageError:
            failed = True
            raise
        finally:
            self.tally.add(operation, time.perf_counter() - started, moved, failed)

    async def _timed_items(
        self,
        operation: str,
        start: Callable[[], AsyncIterator[T]],
        size: Callable[[T], int] | None = None,
    ) -> AsyncIterator[T]:
        """What ``start()`` yields, tallied as ``operation`` once it ends or is abandoned.
        Started on the first read, as a driver's own iterator is: a bad key is refused
        there, not when the iterator is made."""
        items = start()
        started = time.perf_counter()
        moved, failed = 0, False
        try:
            async for item in items:
                if size is not None:
                    moved += size(item)
                yield item
        except ObjectNotFound:
            raise
        except StorageError:
            failed = True
            raise
        finally:
            # Closed now, not when collected: an abandoned S3 read holds a connection.
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
            self.tally.add(operation, time.perf_counter() - started, moved, failed)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        return await self._timed("put", self.driver.put(check_key(key), chunks), _itself)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self._timed_items(
            "get", lambda: self.driver.get(check_key(key), offset, length), len
        )

    async def stat(self, key: str) -> ObjectInfo | None:
        return await self._timed("stat", self.driver.stat(check_key(key)))

    async def delete(self, key: str) -> bool:
        return await self._timed("delete", self.driver.delete(check_key(key)))

    async def delete_many(self, keys: Sequence[str]) -> dict[str, StorageError]:
        for key in keys:
            check_key(key)  # a bad key is the caller's bug, not a failed delete
        return await self._timed("delete_many", self.driver.delete_many(keys))

    def list_stale(self, prefix: str, older_than: timedelta) -> AsyncIterator[ObjectInfo]:
        return self._timed_items(
            "list_stale", lambda: self.driver.list_stale(check_prefix(prefix), older_than)
        )

    async def reap_incomplete(
        self, older_than: timedelta, dry_run: bool = False
    ) -> list[ObjectInfo]:
        return await self._timed(
            "reap_incomplete", self.driver.reap_incomplete(older_than, dry_run)
        )

    async def copy(self, src: str, dst: str) -> None:
        call = self.driver.copy(check_key(src), check_key(dst))
        await self._timed("copy", call)

    async def move(self, src: str, dst: str) -> None:
        call = self.driver.move(check_key(src), check_key(dst))
        await self._timed("move", call)

    def local_path(self, key: str) -> Path | None:
        return self.driver.local_path(check_key(key))

    async def download_url(self, key: str, content_type: str) -> str | None:
        return await self.driver.download_url(check_key(key), content_type)

    async def ping(self) -> None:
        await self._timed("ping", self.driver.ping())

    async def close(self) -> None:
        await self.driver.close()


def _itself(size: int) -> int:
    return size
