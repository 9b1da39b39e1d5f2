"""Remembered hits: bounded by bytes, looked for again in time, aliases only to entries
that answer from memory."""

import hashlib
import os
from pathlib import Path

import pytest

from app.cas import Blob
from app.proxy import hot as hot_module
from app.proxy.entries import Entry
from app.proxy.hot import RememberedEntries


def _stored(tmp_path: Path, name: str, data: bytes) -> tuple[Entry, Blob, Path]:
    path = tmp_path / name
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return Entry(name, 200, digest, len(data), "application/x-test"), Blob(digest, len(data)), path


def test_small_bodies_are_kept_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hot_module, "HOT_BODIES", 10_000)
    hot = RememberedEntries(cas=None)  # type: ignore[arg-type]  # only still_stored() asks the CAS
    for name in ("a", "b", "c"):
        entry, blob, path = _stored(tmp_path, name, os.urandom(4000))
        hot.remember(name, entry, blob, path)
        remembered = hot.get(name)
        assert remembered is not None and hot.still_good(name, remembered)
    kept = [name for name in "abc" if (h := hot.get(name)) is not None and h.body is not None]
    assert kept == ["a", "b"]  # c did not fit: it is read from its file each time
    b = hot.get("b")
    assert b is not None and b.body == (tmp_path / "b").read_bytes()
    assert b.headers is not None and b.headers["ETag"] == f'"{b.blob.digest}"'
    hot.forget("a")
    entry, blob, path = _stored(tmp_path, "d", os.urandom(4000))
    hot.remember("d", entry, blob, path)
    d = hot.get("d")
    assert d is not None and hot.still_good("d", d) and d.body is not None  # a's room, freed


def test_a_vanished_file_is_noticed_once_the_recheck_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot = RememberedEntries(cas=None)  # type: ignore[arg-type]
    entry, blob, path = _stored(tmp_path, "a", b"x" * 100)
    hot.remember("a", entry, blob, path)
    remembered = hot.get("a")
    assert remembered is not None and hot.still_good("a", remembered)
    hot.alias(1, "a", "a")
    assert hot.for_plain_request(1, "a", {}) is remembered
    assert hot.for_plain_request(1, "a", {"Range": "bytes=0-1"}) is None  # the usual way
    assert hot.for_plain_request(2, "a", {}) is None  # another repository's path
    path.unlink()
    assert (
        hot.for_plain_request(1, "a", {}) is remembered
    )  # within HOT_RECHECK: its bytes still answer
    monkeypatch.setattr(hot_module, "HOT_RECHECK", 0.0)
    assert hot.for_plain_request(1, "a", {}) is None and hot.get("a") is None


def test_an_object_storage_blob_without_room_in_memory_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hot_module, "HOT_BODIES", 50)
    hot = RememberedEntries(cas=None)  # type: ignore[arg-type]
    entry, blob, _ = _stored(tmp_path, "a", b"y" * 100)
    hot.remember("a", entry, blob, None, b"y" * 100)
    assert hot.get("a") is None
