"""Blob storage on a local directory.

Layout under ``root``::

    root/
      blobs/sha256/ab/abcdef…     objects, one file per key
      uploads/<uuid>              …whatever keys the callers choose
      .incoming/<random>          partial writes, renamed into place when complete

Writes go to ``.incoming`` (same filesystem, so the final ``rename`` is atomic),
are fsynced, renamed, and the parent directory is fsynced. Blocking calls run in
the default executor, and the write of one chunk overlaps the production (and
hashing) of the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.backends.storage.base import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
    check_prefix,
)

READ_CHUNK = 1024 * 1024
INCOMING = ".incoming"


class FilesystemStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._incoming = self.root / INCOMING

    async def open(self) -> FilesystemStorage:
        try:
            await asyncio.to_thread(self._incoming.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage root {self.root}: {exc}") from exc
        return self

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # check_key already forbids '..'; this also defeats symlinks planted in the tree.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKey(key, "escapes the storage root")
        return path

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final = self._path(key)
        loop = asyncio.get_running_loop()
        temp = self._incoming / uuid.uuid4().hex
        handle = await loop.run_in_executor(None, _open_exclusive, temp)
        size = 0
        pending: asyncio.Future[None] | None = None
        try:
            async for chunk in chunks:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, _write_all, handle, chunk)
                size += len(chunk)
            if pending is not None:
                await pending
                pending = None
            await loop.run_in_executor(None, _commit, handle, temp, final)
        except BaseException:
            if pending is not None:
                # The write thread cannot be interrupted; let it finish before closing.
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)
            await loop.run_in_executor(None, _discard, handle, temp)
            raise
        return size

    async def get(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._path(key)
        loop = asyncio.get_running_loop()
        try:
            handle = await loop.run_in_executor(None, open, path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        try:
            await loop.run_in_executor(None, handle.seek, offset)
            remaining = length
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await loop.run_in_executor(None, handle.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    async def list_stale(self, prefix: str, older_than: timedelta) -> AsyncIterator[ObjectInfo]:
        prefix = check_prefix(prefix)
        cutoff = (datetime.now(UTC) - older_than).timestamp()
        # Walk the smallest directory that holds every key with this prefix.
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(base_key) if base_key else self.root
        found = await asyncio.to_thread(_walk_stale, self.root, base, prefix, cutoff)
        for info in found:
            yield info

    async def copy(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        temp = self._incoming / uuid.uuid4().hex
        try:
            await asyncio.to_thread(_copy_atomic, source, temp, target)
        except FileNotFoundError:
            raise ObjectNotFound(src) from None

    async def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        try:
            await asyncio.to_thread(_rename, source, target)
        except FileNotFoundError:
            raise ObjectNotFound(src) from None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def ping(self) -> None:
        if not await asyncio.to_thread(os.access, self._incoming, os.W_OK):
            raise StorageError(f"storage root {self.root} is not writable")

    async def close(self) -> None:
        return None


def _open_exclusive(path: Path):  # type: ignore[no-untyped-def]
    return open(path, "xb", buffering=0)


def _write_all(handle, chunk: bytes) -> None:  # type: ignore[no-untyped-def]
    view = memoryview(chunk)
    while view:
        written = handle.write(view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename(temp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    _fsync_dir(final.parent)


def _commit(handle, temp: Path, final: Path) -> None:  # type: ignore[no-untyped-def]
    os.fsync(handle.fileno())
    handle.close()
    _rename(temp, final)


def _discard(handle, temp: Path) -> None:  # type: ignore[no-untyped-def]
    handle.close()
    temp.unlink(missing_ok=True)


def _copy_atomic(source: Path, temp: Path, target: Path) -> None:
    try:
        shutil.copyfile(source, temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        _rename(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _walk_stale(root: Path, base: Path, prefix: str, cutoff: float) -> list[ObjectInfo]:
    found: list[ObjectInfo] = []
    if not base.is_dir():
        return found
    for directory, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(directory, name)
            key = path.relative_to(root).as_posix()
            if not key.startswith(prefix):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_mtime < cutoff:
                found.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
    return found
