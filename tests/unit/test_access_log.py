"""Access-log lines are batched, and every one is written by the last flush."""

import asyncio
import io
import json

from app import access_log
from app.access_log import JsonAccessLog
from tests.waiting import until


def test_lines_wait_for_the_timer_or_a_full_buffer_then_all_go_out() -> None:
    stream = io.StringIO()

    async def run() -> None:
        log = JsonAccessLog(lambda: stream)
        log("GET", "/a", 200, 0.1, 0, 10, "id-1")
        log("PUT", "/b", 201, 2.5, 7, 0, "id-2")
        assert stream.getvalue() == ""  # batched
        await until(lambda: stream.getvalue() != "", "flushed by the timer", access_log.FLUSH + 5)
        assert len(stream.getvalue().splitlines()) == 2  # the timer wrote them, all at once
        for i in range(access_log.BUFFER // 100):
            log("GET", "/c" * 20, 200, 0.1, 0, 10, f"id-{i}")
        written = len(stream.getvalue().splitlines())
        assert 2 < written < 2 + access_log.BUFFER // 100  # a full buffer went out at once
        log.flush()

    asyncio.run(run())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2 + access_log.BUFFER // 100
    first = lines[0]
    assert first == {
        "method": "GET", "path": "/a", "status": 200, "ms": 0.1, "bytes_in": 0,
        "bytes_out": 10, "event": "request", "request_id": "id-1", "level": "info",
        "timestamp": first["timestamp"],
    }  # fmt: skip
    assert first["timestamp"].endswith("Z")
