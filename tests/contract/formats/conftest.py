"""One service per format and shape, shared by the contract's tests in that format's
file: its repositories from the file's ``CASE``, a fake upstream if it has one, and
what its ``stores`` requests left in the blob table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from app.config import Config
from tests import shapes
from tests.contract.formats.case import ContractCase
from tests.contract.formats.service import Stored, all_blobs, ask, bug_when_asked, serving


@pytest.fixture(scope="module")
def case(request: pytest.FixtureRequest) -> ContractCase:
    found: ContractCase = request.module.CASE
    return found


@pytest.fixture(scope="module", params=["embedded", "scale-out"])
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream_url(case: ContractCase) -> AsyncIterator[str]:
    if case.upstream is None:
        yield ""
        return
    server = TestServer(case.upstream())
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def _search_path(dsn: str, schema: str) -> str:
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query)) | {"search_path": schema}
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def config(
    shape: str,
    case: ContractCase,
    upstream_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Config]:
    """The service's configuration; scale-out in a PostgreSQL schema and an S3 prefix
    of its own. Every blob is old enough to collect (``blob_grace: 0``)."""
    repositories = case.repositories(upstream_url)
    extra: dict[str, Any] = {"server": dict(case.server), "gc": {"blob_grace": 0}}
    if shape == "embedded":
        root: Path = tmp_path_factory.mktemp(f"contract-{case.format}")
        yield shapes.embedded(root, repositories, **extra)
        return
    server: str = request.getfixturevalue("postgres_server")
    schema = f"c_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    yield shapes.scale_out(
        _search_path(server, schema),
        request.getfixturevalue("redis_server"),
        request.getfixturevalue("s3_server"),
        f"c-{uuid.uuid4().hex[:12]}",
        repositories,
        **extra,
    )
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(config: Config) -> AsyncIterator[TestClient]:
    client = await serving(config, bug_when_asked)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stored(service: TestClient, case: ContractCase) -> Stored:
    """The case's stores and serves, asked once on the shared service (the tests
    assert on the answers): the only requests of the contract that store anything."""
    before = {row.digest for row in await all_blobs(service.app)}
    answers = [(call, await ask(service, call)) for call in (*case.stores, *case.serves)]
    added = [row for row in await all_blobs(service.app) if row.digest not in before]
    return Stored(answers, added)
