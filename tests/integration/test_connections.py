"""The server's connections as the runner serves them: a client slow to send its
headers is cut off, and requests the HTTP parser refuses are answered in JSON and
logged in one line."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from app.runner import make_runner
from app.server import create_app
from tests import shapes

Address = tuple[str, int]


@asynccontextmanager
async def serving(tmp_path: Path, **server: object) -> AsyncIterator[Address]:
    """The app behind the runner ``artifactapi serve`` uses, on a free port."""
    config = shapes.embedded(tmp_path, server=server)
    runner = make_runner(create_app(config), config)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


async def exchange(address: Address, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_client_trickling_its_headers_is_cut_off_while_others_are_served(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, header_timeout="2s") as address:
        reader, writer = await asyncio.open_connection(*address)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()

        async def trickle() -> None:
            for byte in b"X-Slow: " + b"a" * 30:
                await asyncio.sleep(1)  # the client's pace: one header byte a second
                writer.write(bytes([byte]))
                await writer.drain()

        trickling = asyncio.create_task(trickle())
        try:
            # Another client is answered meanwhile.
            answer = await exchange(
                address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
            closed = await asyncio.wait_for(reader.read(), 10)  # EOF once the server closes
            elapsed = time.monotonic() - started
        finally:
            trickling.cancel()
            writer.close()
        assert closed == b""  # closed, not answered
        assert 1.5 <= elapsed < 4.5, elapsed


async def test_an_idle_kept_alive_connection_is_not_cut_by_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, header_timeout="1s") as address:
        reader, writer = await asyncio.open_connection(*address)
        try:
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            # Idle past the header timeout: the keep-alive timeout governs idling.
            await asyncio.sleep(1.5)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET / HTTP/9.x\r\nHost: x\r\n\r\n", id="bad-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", id="bad-header"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",
            id="oversized-header",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: a\r\n" % i for i in range(200))
            + b"\r\n",
            id="too-many-headers",
        ),
    ],
)
async def test_requests_the_parser_refuses_are_json_and_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    async with serving(tmp_path) as address:
        with capture_logs() as logs, caplog.at_level(logging.DEBUG, logger="aiohttp"):
            answer = await exchange(address, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", answer[:200]  # an HTTP/1.0 answer: the version is unknown
    assert b"Content-Type: application/json" in head
    error = json.loads(body)["error"]
    assert error["code"] == "BAD_REQUEST" and error["message"]
    refused = [e for e in logs if e["event"] == "request refused by the HTTP parser"]
    assert len(refused) == 1 and refused[0]["log_level"] == "warning"
    assert "exc_info" not in refused[0]
    # aiohttp's own ERROR line with its traceback is gone.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:500]
