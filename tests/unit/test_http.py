from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from app import keys
from app.config import Config
from app.errors import RangeNotSatisfiable
from app.http import ByteRange, etag_matches, external_url, parse_range


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


def _request(headers: dict[str, str], **server: Any) -> web.Request:
    app = web.Application()
    app[keys.CONFIG] = Config.model_validate({"server": server})
    return make_mocked_request("GET", "/repository/x/demo", headers=headers, app=app)


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
    assert external_url(_request(headers, **server)) == expected


@pytest.mark.parametrize(
    "url", ["ftp://x.example", "artifacts.example.com", "https://x.example/?a=1"]
)
def test_base_url_must_be_a_plain_http_url(url: str) -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"server": {"base_url": url}})
