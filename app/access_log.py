"""The access log: one line per request.

In production (``logging.format: json``) a line is rendered here, with the keys every
structlog JSON line has (event, level, timestamp, request_id) and the request's own, and
written in batches: at most every ``FLUSH`` seconds or ``BUFFER`` bytes, and when the
server stops. Through structlog's processor chain, with a write per line, the access log
cost 25 µs of a cache hit's 40. A crash loses at most the last ``FLUSH`` seconds of it.
Console logging (development) writes its lines through structlog like every other line.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from collections.abc import Callable
from typing import TextIO

import structlog

FLUSH = 0.5  # seconds
BUFFER = 64 * 1024  # characters

log = structlog.get_logger("artifactapi.http")

# method, path, status, milliseconds, bytes in, bytes out, request id
AccessWriter = Callable[[str, str, int, float, int, int, str], None]


class JsonAccessLog:
    def __init__(self, stream: Callable[[], TextIO] = lambda: sys.stderr) -> None:
        self._stream = stream  # looked up at each flush, as structlog's own lines are
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def __call__(
        self,
        method: str,
        path: str,
        status: int,
        ms: float,
        bytes_in: int,
        bytes_out: int,
        request_id: str,
    ) -> None:
        now = datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")
        line = json.dumps(
            {
                "method": method,
                "path": path,
                "status": status,
                "ms": ms,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "event": "request",
                "request_id": request_id,
                "level": "info",
                "timestamp": now,
            }
        )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= BUFFER:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        stream = self._stream()
        stream.write("\n".join(lines) + "\n")
        stream.flush()


def console_access_log(
    method: str, path: str, status: int, ms: float, bytes_in: int, bytes_out: int, request_id: str
) -> None:
    # request_id comes from the ContextVar, as on every other line of the request.
    log.info(
        "request",
        method=method,
        path=path,
        status=status,
        ms=ms,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
    )
