"""The blob storage interface every driver implements.

Keys are relative, slash-separated names built by :mod:`app.layout` (such as
``blobs/sha256/ab/abcd…``). Drivers trust them: :class:`~app.backends.storage.checked.
CheckedStorage`, which wraps every driver the service opens, validates each key once
with :func:`check_key` before a driver sees it, so no driver can be tricked into
writing outside its root or bucket.

Every write is atomic: a reader sees the whole object or nothing. A ``put`` whose
chunk iterator raises leaves nothing behind at ``key``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """The storage backend failed (I/O error, S3 error, unreachable)."""


class ObjectNotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no object at {key!r}")
        self.key = key


class InvalidKey(StorageError, ValueError):
    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"invalid storage key {key!r}: {why}")
        self.key = key


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime  # timezone-aware, UTC


# A key: segments of a conservative alphabet, none empty or starting with a dot.
_SEGMENT = r"[A-Za-z0-9_~@+=:-][A-Za-z0-9._~@+=:-]*"
_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
MAX_KEY_LENGTH = 1024


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`InvalidKey`.

    Rejected: empty keys, absolute paths, backslashes, empty segments, segments
    starting with a dot (``.``, ``..`` and the drivers' private ``.incoming``),
    control characters and anything outside a conservative alphabet.
    Callers build keys from digests and uuids; user paths never reach storage.
    """
    if len(key) <= MAX_KEY_LENGTH and _KEY.fullmatch(key):
        return key
    raise InvalidKey(key, _why(key))


def _why(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        return "empty or too long"
    if key.startswith("/") or "\\" in key:
        return "must be relative and use '/'"
    if any(not segment or segment.startswith(".") for segment in key.split("/")):
        # Also rules out "." and ".."; dot-names are the drivers' own.
        return "empty or dot-prefixed segment"
    return "unsupported character"


def check_prefix(prefix: str) -> str:
    """A listing prefix is a key, optionally ending with '/'."""
    return check_key(prefix.rstrip("/")) + ("/" if prefix.endswith("/") else "")


@runtime_checkable
class BlobStorage(Protocol):
    """A flat namespace of immutable objects."""

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the stream at ``key`` atomically and return its size.

        If ``chunks`` raises, the exception propagates and nothing becomes visible.
        """
        ...

    def get(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (or to the end) from ``offset``.

        Raises :class:`ObjectNotFound` on first iteration if the key is absent.
        """
        ...

    async def stat(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it existed. Deleting nothing is not an error."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> dict[str, StorageError]:
        """Delete every key (absent ones are fine) in as few round trips as the backend
        allows; return the keys that could not be deleted, with why."""
        ...

    def list_stale(self, prefix: str, older_than: timedelta) -> AsyncIterator[ObjectInfo]:
        """Objects under ``prefix`` last modified more than ``older_than`` ago."""
        ...

    async def reap_incomplete(
        self, older_than: timedelta, dry_run: bool = False
    ) -> list[ObjectInfo]:
        """Writes a process never finished (it was killed mid-``put``) begun more than
        ``older_than`` ago: removed, unless ``dry_run``, and returned with the bytes
        they held. A ``put`` that fails cleans up after itself; only a dead process
        leaves these (a partial file on disk, an incomplete multipart upload on S3)."""
        ...

    async def copy(self, src: str, dst: str) -> None:
        """Server-side copy; ``dst`` appears atomically. Raises ObjectNotFound."""
        ...

    async def move(self, src: str, dst: str) -> None:
        """Copy then delete ``src`` (a rename where the backend has one)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's file on local disk if the backend has one (for sendfile)."""
        ...

    async def download_url(self, key: str, content_type: str) -> str | None:
        """A URL a client may fetch the object from itself, or None to be served by us."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StorageError` unless the backend answers."""
        ...

    async def close(self) -> None: ...
