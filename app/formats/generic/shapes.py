"""What local and virtual generic answers share: timestamps as they print them, and
the ``limit`` a listing takes."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from app.formats.api import BadRequest, whole_number

LIST_LIMIT_DEFAULT = 1000
LIST_LIMIT_MAX = 10000


def listing_limit(request: web.Request) -> int:
    limit = whole_number(request.query.get("limit", str(LIST_LIMIT_DEFAULT)))
    if limit is None or not 1 <= limit <= LIST_LIMIT_MAX:
        raise BadRequest(f"limit must be a whole number between 1 and {LIST_LIMIT_MAX}")
    return limit


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat().replace("+00:00", "Z")


def http_date(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
