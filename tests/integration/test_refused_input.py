"""What no database can hold never reaches one, and what a database driver raises is
always answered cleanly: in both shapes, in each format's error shape."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from app import keys
from app.server import create_app
from tests.integration.conftest import ConfigFactory

REPOS = [
    {"name": "files", "format": "generic", "kind": "local"},
    {"name": "docker-local", "format": "oci", "kind": "local"},
]


@pytest.fixture
async def client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient:
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


async def raw_request(client: TestClient, head: bytes) -> bytes:
    """Send bytes aiohttp's client would refuse to build (a header that is not UTF-8)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_nul_in_a_query_parameter_is_400_in_both_shapes(client: TestClient) -> None:
    assert (await client.put("/repository/files/ok/a.txt", data=b"a")).status == 201
    response = await client.get("/repository/files/ok/?after=%00")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "BAD_REQUEST"
    # The same listing without it is answered.
    assert (await client.get("/repository/files/ok/?after=")).status == 200

    oci = await client.get("/v2/docker-local/app/tags/list?n=1&last=%00")
    assert oci.status == 400
    assert "errors" in await oci.json()


@pytest.mark.parametrize(
    "path",
    [
        "/repository/files/a%00b",
        "/repository/files/ok/?limit=10&%00=x",
        "/v2/docker-local/a%00b/tags/list",
    ],
)
async def test_nul_anywhere_in_the_url_is_400(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 400
    body = await response.json()
    assert body["errors" if path.startswith("/v2/") else "error"]


async def test_a_header_that_is_not_utf8_never_reaches_the_database(client: TestClient) -> None:
    # aiohttp keeps such bytes as lone surrogates, which no database encodes.
    answer = await raw_request(
        client,
        b"PUT /repository/files/ct.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Type: text/\xed\xa0\x80\r\nConnection: close\r\n\r\nhi",
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"BAD_REQUEST"' in answer
    assert (await client.get("/repository/files/ct.txt")).status == 404


@pytest.mark.parametrize("shape", ["scale-out"])  # asyncpg is the scale-out shape's driver
async def test_a_driver_error_asyncpg_does_not_classify_is_503(
    aiohttp_client: Any, make_config: ConfigFactory, shape: str, postgres_dsn: str
) -> None:
    """A backend terminated while idle in the pool, queried at once: asyncpg raises
    ConnectionDoesNotExistError or, when the server's farewell was read first,
    InternalClientError ("cannot switch to state …"), as during a PostgreSQL restart.
    Both must be 503 "database unavailable", never 500."""
    config = make_config(repositories=REPOS, database={"url": postgres_dsn, "pool_max": 1})
    client = await aiohttp_client(create_app(config))
    db = client.app[keys.METADATA].db
    admin = await asyncpg.connect(postgres_dsn)
    seen: list[str] = []
    try:
        for _ in range(300):  # each round hits the InternalClientError about half the time
            pid = await db.fetchval("SELECT pg_backend_pid()")
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            with capture_logs() as logs:
                response = await client.get("/repository/files/some/file")
            assert response.status in (404, 503), await response.text()
            if response.status == 503:
                body = await response.json()
                assert body["error"]["message"] == "database unavailable, try again"
                seen += [e["error"] for e in logs if e.get("event") == "backend failure"]
            if any("cannot switch to state" in error for error in seen):
                break
    finally:
        await admin.close()
    assert any("cannot switch to state" in error for error in seen), seen[-3:]
