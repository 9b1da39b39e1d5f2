import pytest

from app.errors import RangeNotSatisfiable
from app.http import ByteRange, etag_matches, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-3", 10, ByteRange(0, 3)),
        ("bytes=4-", 10, ByteRange(4, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes=2-100", 10, ByteRange(2, 9)),
        ("bytes=9-9", 10, ByteRange(9, 9)),
        # Ignored, as RFC 9110 allows: other units, several ranges, garbage, last < first.
        ("items=0-3", 10, None),
        ("bytes=0-1,3-4", 10, None),
        ("bytes=abc", 10, None),
        ("bytes=-", 10, None),
        ("bytes=5-2", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable_range_is_416_with_the_size(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.headers["Content-Range"] == f"bytes */{size}"


def test_etag_matching() -> None:
    assert etag_matches('"sha256:ab"', "sha256:ab")
    assert etag_matches('W/"x", "sha256:ab"', "sha256:ab")
    assert etag_matches("*", "anything")
    assert not etag_matches('"other"', "sha256:ab")
    assert not etag_matches(None, "sha256:ab")
