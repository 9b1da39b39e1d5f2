"""Shared fixtures: real services, and per-test isolation inside them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import web

from tests import services
from tests.services import S3Settings
from tests.signin import sign_in


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    with services.postgres_dsn() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    with services.redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Settings]:
    with services.s3_settings() as settings:
        yield settings


def _with_query(dsn: str, **params: str) -> str:
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
async def postgres_dsn(postgres_server: str) -> AsyncIterator[str]:
    """A DSN whose ``search_path`` is a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_server)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    # asyncpg passes unknown DSN query parameters on as server settings.
    yield _with_query(postgres_server, search_path=schema)
    # pytest may tear this down before a test's app has closed (fixtures with no order
    # between them), and an app still writing (its audit rows, its tokens' last use)
    # can meet the DROP in a deadlock PostgreSQL resolves by aborting one side: the
    # DROP is tried again then, the app's writes having failed or finished.
    conn = await asyncpg.connect(postgres_server)
    try:
        for attempt in range(5):
            try:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                break
            except asyncpg.exceptions.DeadlockDetectedError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


@pytest.fixture
def s3_prefix() -> str:
    """A key prefix of this test's own inside the shared bucket."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'meta.db'}"


@pytest.fixture
def aiohttp_client(aiohttp_client: Any) -> Any:
    """pytest-aiohttp's, signed in: a client of an artifactapi app carries a token of the
    admin the first start made, since writes need credentials; pass ``anonymous=True``
    for one that carries none (the auth tests' own clients say who they are)."""

    async def make(target: Any, *args: Any, anonymous: bool = False, **kwargs: Any) -> Any:
        client = await aiohttp_client(target, *args, **kwargs)
        if not anonymous and isinstance(target, web.Application):
            await sign_in(client)
        return client

    return make
