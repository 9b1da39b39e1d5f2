"""What a format declares to be held to the format contract (see ``suite.py``).

Each format has one factory file, ``test_<format>.py``, holding a ``CASE`` (a
:class:`ContractCase`) and the suite's tests (``from …suite import *``). Nothing
shared names a format: a new one adds its own file and nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy


@dataclass(frozen=True)
class Call:
    """One request and the status it must get."""

    method: str
    path: str
    status: int
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect100: bool = False  # send ``Expect: 100-continue`` and wait before the body
    answer: bytes | None = None  # the exact body the answer must carry, if given
    answer_headers: Mapping[str, str] = field(default_factory=dict)  # and these headers


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self
        return json.loads(self.body)


# Raises AssertionError unless an error answer is in the format's own shape.
ErrorShape = Callable[[Answer], None]


@dataclass(frozen=True)
class ContractCase:
    """A format, its repositories and the requests that exercise it.

    ``stores`` succeed and store something (a push, a put, a fetch through a remote);
    ``serves`` read it back, once after ``stores`` and again after a collection, so
    they must not store anything new (for a remote: a hit, ``X-Cache: HIT``).
    ``errors`` provoke 400, 404, 405 and 413; the 404 must be a lookup that finds
    nothing, since it is also what is asked while the database is down (503) and
    while a handler's bug strikes (500). ``other_errors`` are held to the shape too.
    """

    format: str
    # The ``repositories`` section, given the fake upstream's root URL ("" without one).
    repositories: Callable[[str], list[dict[str, Any]]]
    stores: Sequence[Call]
    serves: Sequence[Call]
    errors: Mapping[int, Call]
    shape: ErrorShape
    # Further errors the format answers in its shape: another route, another limit.
    other_errors: Sequence[Call] = ()
    # An upstream speaking the format's protocol, for remote repositories.
    upstream: Callable[[], web.Application] | None = None
    server: Mapping[str, Any] = field(default_factory=dict)  # the ``server`` section


def remote(name: str, fmt: str, upstream: str, **options: Any) -> dict[str, Any]:
    """A remote repository's configuration; an upstream failure is not retried."""
    options = {"upstream": upstream, "retries": 0, **options}
    return {"name": name, "format": fmt, "kind": "remote", "options": options}


_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def default_error_shape(answer: Answer) -> None:
    """The shape of :meth:`app.formats.base.Format.render_error`, which a format keeps
    unless it has clients expecting another: ``{"error": {"code", "message",
    "request_id"[, "detail"]}}``, the request id the one the answer carries."""
    body = answer.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) - {"detail"} == {"code", "message", "request_id"}, error
    assert _CODE.match(error["code"]), error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["request_id"], error  # what an operator looks for in the log
    assert error["request_id"] == answer.headers.get("X-Request-ID"), (error, answer.headers)
