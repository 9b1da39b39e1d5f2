from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from app.config import Config
from app.errors import RangeNotSatisfiable
from app.formats.oci.errors import BlobUploadInvalid, RangeInvalid, SizeInvalid
from app.formats.oci.uploads import chunk_range, parse_content_range
from app.http import ByteRange, ExternalUrl, etag_matches, parse_range
from app.inputs import MAX_DIGITS, whole_number


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
        # Suffixes of the shortest bodies.
        ("bytes=-1", 1, ByteRange(0, 0)),
        ("bytes=-5", 1, ByteRange(0, 0)),
        ("bytes=0-" + "9" * MAX_DIGITS, 10, ByteRange(0, 9)),
        # Ignored, as RFC 9110 allows: other units, several ranges, garbage, last < first.
        ("items=0-3", 10, None),
        ("bytes=0-1,3-4", 10, None),
        ("bytes=abc", 10, None),
        ("bytes=-", 10, None),
        ("bytes=5-2", 10, None),
        ("bytes=\u00b2-", 10, None),  # a digit int() would not read as 2
    ],
)
def test_parse_range(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=-0", 10),
        ("bytes=0-", 0),
        ("bytes=-1", 0),
        ("bytes=-5", 0),
        # Longer than any stored size: refused before int() parses it.
        ("bytes=0-" + "9" * 5000, 10),
        ("bytes=" + "9" * 5000 + "-", 10),
        ("bytes=-" + "9" * 5000, 10),
        ("bytes=0-" + "0" * (MAX_DIGITS + 1), 10),
    ],
)
def test_unsatisfiable_range_is_416_with_the_size(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.headers["Content-Range"] == f"bytes */{size}"


def test_etag_matching() -> None:
    assert etag_matches('"sha256:ab"', "sha256:ab")
    assert etag_matches('W/"x", "sha256:ab"', "sha256:ab")
    assert etag_matches('W/"sha256:ab"', "sha256:ab")
    assert etag_matches('"x",W/"sha256:ab"', "sha256:ab")
    assert etag_matches("*", "anything")
    assert not etag_matches('"other"', "sha256:ab")
    assert not etag_matches(None, "sha256:ab")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("9" * MAX_DIGITS, int("9" * MAX_DIGITS)),
        ("9" * (MAX_DIGITS + 1), None),
        ("9" * 5000, None),
        ("", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1.5", None),
        ("\u00b2", None),
        ("\u0661", None),  # ARABIC-INDIC DIGIT ONE: int() reads it, no client sends it
    ],
)
def test_whole_number_is_bounded_before_it_is_parsed(text: str, expected: int | None) -> None:
    assert whole_number(text) == expected


def test_content_range_numbers_past_any_offset_are_out_of_order() -> None:
    assert parse_content_range("10-19", 10) == (10, 19)
    assert parse_content_range("bytes 0-0", 0) == (0, 0)
    for text in ("0-" + "9" * 5000, "9" * 4000 + "-" + "9" * 4000):
        with pytest.raises(RangeInvalid) as info:
            parse_content_range(text, 10)
        assert info.value.status == 416
        assert info.value.headers["Range"] == "0-9"
    for text in ("5-2", "x-1", "\u0661-\u0662", "1-"):
        with pytest.raises(BlobUploadInvalid):
            parse_content_range(text, 0)


def test_a_chunk_starts_where_the_session_ends_and_is_as_long_as_announced() -> None:
    assert chunk_range("10-19", 10, 10) == (10, 19)
    assert chunk_range("10-19", 10, None) == (10, 19)  # chunked: checked as it streams
    for text in ("0-9", "11-20", "9-18"):
        with pytest.raises(RangeInvalid) as info:
            chunk_range(text, 10, 10)
        assert info.value.headers["Range"] == "0-9"
    for announced in (0, 9, 11):
        with pytest.raises(SizeInvalid):
            chunk_range("10-19", 10, announced)


def _request(headers: dict[str, str]) -> web.Request:
    return make_mocked_request("GET", "/repository/x/demo", headers=headers)


@pytest.mark.parametrize(
    ("headers", "server", "expected"),
    [
        ({"Host": "reg.local:8080"}, {}, "http://reg.local:8080"),
        # Forwarded headers count only when the operator says a proxy sets them.
        ({"Host": "reg.local", "X-Forwarded-Proto": "https"}, {}, "http://reg.local"),
        (
            {"Host": "10.0.0.5:8080", "X-Forwarded-Proto": "https, http",
             "X-Forwarded-Host": "artifacts.example.com"},
            {"trust_forwarded": True},
            "https://artifacts.example.com",
        ),
        # Junk a client slipped in is ignored, never echoed into a URL.
        (
            {"Host": "reg.local", "X-Forwarded-Proto": "javascript",
             "X-Forwarded-Host": "evil.com/path?x=<script>"},
            {"trust_forwarded": True},
            "http://reg.local",
        ),
        ({"Host": "bad host\"><"}, {}, "http://localhost"),
        ({"Host": "[::1]:8080"}, {}, "http://[::1]:8080"),
        # A configured base URL wins over everything the request says.
        (
            {"Host": "reg.local", "X-Forwarded-Host": "other.example"},
            {"base_url": "https://artifacts.example.com/", "trust_forwarded": True},
            "https://artifacts.example.com",
        ),
    ],
)  # fmt: skip
def test_external_url(headers: dict[str, str], server: dict[str, Any], expected: str) -> None:
    config = Config.model_validate({"server": server}).server
    external_url = ExternalUrl(config.base_url, config.trust_forwarded)
    assert external_url(_request(headers)) == expected


@pytest.mark.parametrize(
    "url", ["ftp://x.example", "artifacts.example.com", "https://x.example/?a=1"]
)
def test_base_url_must_be_a_plain_http_url(url: str) -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"server": {"base_url": url}})


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (None, "private"),
        ("public, max-age=300", "private, max-age=300"),
        ("max-age=60", "private, max-age=60"),
        ("no-store", "no-store"),
        ("private, max-age=5", "private, max-age=5"),
    ],
)
def test_a_private_answer_is_for_the_clients_own_cache(sent: str | None, kept: str) -> None:
    from aiohttp import web

    from app.server import kept_private

    response = web.Response(headers={"Cache-Control": sent} if sent else {})
    kept_private(response)
    assert response.headers["Cache-Control"] == kept
