"""The storage layout: the keys it builds, and what it reads back from them."""

from __future__ import annotations

from app import layout
from app.backends.storage.base import check_key
from pipelines import Digest

HEX = "ab" + "0" * 62


def test_a_blob_lives_under_its_first_two_hex_digits() -> None:
    expected = f"blobs/sha256/ab/{HEX}"
    assert layout.blob_key(f"sha256:{HEX}") == expected
    assert layout.blob_key(Digest("sha256", HEX)) == expected
    assert layout.blob_key(HEX) == expected
    assert check_key(expected) and expected.startswith(layout.BLOBS)


def test_parts_of_an_upload_list_in_offset_order_and_never_collide() -> None:
    keys = [layout.part_key("u1", offset) for offset in (10**12, 5, 0, 70_000)]
    assert sorted(keys) == [keys[2], keys[1], keys[3], keys[0]]
    assert layout.part_key("u1", 5) != layout.part_key("u1", 5)
    assert all(check_key(key) and layout.upload_of(key) == "u1" for key in keys)


def test_the_upload_is_told_from_a_staged_key_only() -> None:
    assert layout.upload_of("uploads/abc/00000000000000000000-1234abcd") == "abc"
    assert layout.upload_of("uploads/abc/deeper/still") == "abc"
    for key in ("uploads/abc", "uploads//x", "tmp/abc/x", f"blobs/sha256/ab/{HEX}", "uploadsx/a/b"):
        assert layout.upload_of(key) is None


def test_temp_keys_are_fresh_and_under_tmp() -> None:
    first, second = layout.temp_key(), layout.temp_key()
    assert first != second and first.startswith(layout.TMP) and check_key(first)
