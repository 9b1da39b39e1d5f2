"""What a client sends, bounded before it is used.

Text: PostgreSQL's text holds no NUL, and a lone surrogate (what aiohttp keeps of a
header byte that is not UTF-8) encodes in no database; either would fail a query
deep in a handler (a 503 on PostgreSQL, a 500 on SQLite). :func:`unstorable_part`
finds them in the URL and headers, once per request, so they are a 400 first.

Numbers: ``int()`` refuses more than 4,300 digits (a ValueError deep in a handler, so
a 500) and spends quadratic time below that, so a number is measured by its length
first. No size, offset or count this service handles needs more than
:data:`MAX_DIGITS` digits (a signed 64-bit integer, what every backend records).
"""

from __future__ import annotations

import re

from aiohttp import web

# 9,223,372,036,854,775,807 (2**63 - 1) has 19 digits.
MAX_DIGITS = 19


def whole_number(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative decimal number, or None if it is not one or has
    more than ``max_digits`` digits (leading zeros count: no client needs them).

    ASCII digits only: ``str.isdigit`` also accepts "²" and other digits ``int()``
    refuses or reads differently.
    """
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether every database can hold ``text``: no NUL, no lone surrogate."""
    if text.isascii():  # the common case, without the regex
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def unstorable_part(request: web.Request) -> str | None:
    """The part of the request (path, a query parameter, a header) holding text no
    database can store, or None. Header values can only hold such text when they are
    not ASCII (the parser refuses NUL), so ASCII ones cost one check each."""
    path = request.path
    # storable()'s ASCII case inlined: this runs for every request.
    if (not path.isascii() or "\x00" in path) and not storable(path):
        return "the path"
    if request.query_string:
        for key, value in request.query.items():
            if not (storable(key) and storable(value)):
                return "a query parameter"
    for name, value in request.headers.items():
        if not value.isascii() and not storable(value):
            return f"the {name} header"
    return None
