"""Blob storage on a local directory.

Under ``root``, one file per key (the keys :mod:`app.layout` builds), and::

    root/
      .incoming/<random>          partial writes, renamed into place when complete

No key can name ``.incoming``: keys are checked (no dot-prefixed segment) by the
:class:`~app.backends.storage.checked.CheckedStorage` around this driver.

Writes go to ``.incoming`` (same filesystem, so the final ``rename`` is atomic),
are fsynced, renamed, and the parent directory is fsynced. Blocking calls run in
the default executor, and the write of one chunk overlaps the production (and
hashing) of the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.backends.storage.base import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
)

READ_CHUNK = 1024 * 1024
# Pieces are gathered into one writev of about this many bytes.
WRITE_BATCH = 1024 * 1024
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
        path = (self.root / key).resolve()
        # Keys come checked (no '..'); this also defeats symlinks planted in the tree.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKey(key, "escapes the storage root")
        return path

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final = self._path(key)
        loop = asyncio.get_running_loop()
        temp = self._incoming / uuid.uuid4().hex
        opening = loop.run_in_executor(None, _open_exclusive, temp)
        # The thread call in progress. Awaited only through a shield: cancelling the
        # future would not stop the thread, only lose track of it.
        pending: asyncio.Future[Any] = opening
        size = 0
        batch: list[bytes] = []
        batched = 0
        try:
            handle = await _finish(opening)
            async for chunk in chunks:
                batch.append(chunk)
                batched += len(chunk)
                size += len(chunk)
                if batched >= WRITE_BATCH:
                    # One writev per MiB or so, while the next pieces arrive and hash.
                    await _finish(pending)
                    pending = loop.run_in_executor(None, _write_all, handle, batch, batched)
                    batch, batched = [], 0
            await _finish(pending)
            if batch:
                pending = loop.run_in_executor(None, _write_all, handle, batch, batched)
                await _finish(pending)
            pending = loop.run_in_executor(None, _commit, handle, temp, final)
            await _finish(pending)
        except BaseException:
            # Shielded so that a second cancellation cannot leave the temp file behind.
            await asyncio.shield(_abandon(opening, pending, temp))
            raise
        return size

    async def get(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._path(key)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        loop = asyncio.get_running_loop()
        with _os_errors(key):
            handle = await loop.run_in_executor(None, open, path, "rb")
        try:
            with _os_errors(key):
                await loop.run_in_executor(None, handle.seek, offset)
            remaining = length
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                with _os_errors(key):
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
            with _os_errors(key):
                st = await asyncio.to_thread(path.stat)
        except ObjectNotFound:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            with _os_errors(key):
                await asyncio.to_thread(path.unlink)
        except ObjectNotFound:
            return False
        return True

    async def delete_many(self, keys: Sequence[str]) -> dict[str, StorageError]:
        return await asyncio.to_thread(self._delete_all, list(keys))

    def _delete_all(self, keys: list[str]) -> dict[str, StorageError]:
        # One thread hop for the whole batch: a hop per file costs more than the unlink.
        failed: dict[str, StorageError] = {}
        for key in keys:
            try:
                path = self._path(key)
                with contextlib.suppress(ObjectNotFound), _os_errors(key):
                    path.unlink()
            except StorageError as exc:
                failed[key] = exc
        return failed

    async def list_stale(self, prefix: str, older_than: timedelta) -> AsyncIterator[ObjectInfo]:
        cutoff = (datetime.now(UTC) - older_than).timestamp()
        # Walk the smallest directory that holds every key with this prefix.
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(base_key) if base_key else self.root
        with _os_errors():
            found = await asyncio.to_thread(_walk_stale, self.root, base, prefix, cutoff)
        for info in found:
            yield info

    async def reap_incomplete(
        self, older_than: timedelta, dry_run: bool = False
    ) -> list[ObjectInfo]:
        cutoff = (datetime.now(UTC) - older_than).timestamp()
        with _os_errors():
            return await asyncio.to_thread(_reap_incoming, self._incoming, cutoff, dry_run)

    async def copy(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        temp = self._incoming / uuid.uuid4().hex
        with _os_errors(src):
            await asyncio.to_thread(_copy_atomic, source, temp, target)

    async def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        with _os_errors(src):
            await asyncio.to_thread(_move, source, target)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def download_url(self, key: str, content_type: str) -> str | None:
        self._path(key)  # the key is still checked
        return None

    async def ping(self) -> None:
        if not await asyncio.to_thread(os.access, self._incoming, os.W_OK):
            raise StorageError(f"storage root {self.root} is not writable")

    async def close(self) -> None:
        return None


_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


@contextlib.contextmanager
def _os_errors(key: str | None = None) -> Iterator[None]:
    """OS failures become StorageError; a missing (or non-file) ``key`` ObjectNotFound."""
    try:
        yield
    except _MISSING as exc:
        if key is None:
            raise StorageError(str(exc)) from exc
        raise ObjectNotFound(key) from None
    except OSError as exc:
        raise StorageError(str(exc)) from exc


async def _finish(work: asyncio.Future[Any]) -> Any:
    with _os_errors():
        return await asyncio.shield(work)


async def _abandon(opening: asyncio.Future[Any], pending: asyncio.Future[Any], temp: Path) -> None:
    """Wait for the thread still touching ``temp`` (if any), then close and remove it."""
    await asyncio.wait({opening, pending})
    for work in (opening, pending):
        if not work.cancelled():
            work.exception()  # seen: the error that aborted the put is the one to report
    handle = None if opening.cancelled() or opening.exception() else opening.result()
    await asyncio.to_thread(_discard, handle, temp)


def _open_exclusive(path: Path):  # type: ignore[no-untyped-def]
    return open(path, "xb", buffering=0)


def _write_all(handle, pieces: list[bytes], total: int) -> None:  # type: ignore[no-untyped-def]
    fd = handle.fileno()
    start = handle.tell()
    written = os.writev(fd, pieces)
    if written < total:  # a short write: finish piece by piece
        rest = memoryview(b"".join(pieces))[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]
    _start_writeback(fd, start, total)


def _load_sync_file_range() -> Callable[[int, int, int], None]:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE), else a no-op.

    Starting writeback of each chunk as it is written spreads the disk work over
    the upload, so the fsync at the end has little left to wait for.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    write_only = 2  # SYNC_FILE_RANGE_WRITE: start writeback, do not wait for it

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, write_only)  # advisory: a failure only loses the head start

    return start


_start_writeback = _load_sync_file_range()


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


def _move(source: Path, target: Path) -> None:
    if not source.is_file():  # a directory would rename, taking every key below it along
        raise FileNotFoundError(source)
    _rename(source, target)
    _fsync_dir(source.parent)


def _commit(handle, temp: Path, final: Path) -> None:  # type: ignore[no-untyped-def]
    os.fsync(handle.fileno())
    handle.close()
    _rename(temp, final)


def _discard(handle, temp: Path) -> None:  # type: ignore[no-untyped-def]
    if handle is not None:
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


def _reap_incoming(incoming: Path, cutoff: float, dry_run: bool) -> list[ObjectInfo]:
    found: list[ObjectInfo] = []
    for path in incoming.iterdir() if incoming.is_dir() else ():
        try:
            st = path.stat()
            if st.st_mtime >= cutoff:
                continue  # a put in progress touches its file with every write
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            continue  # finished (renamed into place) meanwhile
        when = datetime.fromtimestamp(st.st_mtime, UTC)
        found.append(ObjectInfo(f"{INCOMING}/{path.name}", st.st_size, when))
    return found
