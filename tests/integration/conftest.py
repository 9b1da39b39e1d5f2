from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.config import Config
from app.server import create_app
from tests import shapes

ConfigFactory = Callable[..., Config]


@pytest.fixture(params=["embedded", "scale-out"])
def shape(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_config(shape: str, tmp_path: Path, request: pytest.FixtureRequest) -> ConfigFactory:
    """Build a Config of the current shape; keyword arguments become config sections."""
    if shape == "embedded":
        return lambda **extra: shapes.embedded(tmp_path, **extra)
    dsn = request.getfixturevalue("postgres_dsn")
    redis = request.getfixturevalue("redis_server")
    s3 = request.getfixturevalue("s3_server")
    prefix = request.getfixturevalue("s3_prefix")
    return lambda **extra: shapes.scale_out(dsn, redis, s3, prefix, **extra)


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config()


@pytest.fixture
async def app_client(aiohttp_client: Any, config: Config) -> TestClient:
    return await aiohttp_client(create_app(config))


@pytest.fixture
def app(app_client: TestClient) -> web.Application:
    return app_client.app  # type: ignore[return-value]


RemoteFactory = Callable[..., Any]


@pytest.fixture
def remote_service(aiohttp_client: Any, make_config: ConfigFactory) -> RemoteFactory:
    """Start a service of the current shape with one remote repository: ``remote_service
    (name, format, upstream, server={...}, **options)``; ``upstream`` is a test server
    (its root) or a URL, the keyword arguments the repository's options. The repository
    is readable anonymously, as a cache of public packages usually is (so real clients
    need no credentials; ``anonymous_read=False`` for one that needs them)."""

    async def start(
        name: str,
        fmt: str,
        upstream: TestServer | str,
        server: dict[str, Any] | None = None,
        anonymous_read: bool = True,
        **options: Any,
    ) -> TestClient:
        url = upstream if isinstance(upstream, str) else str(upstream.make_url("")).rstrip("/")
        repo = {
            "name": name,
            "format": fmt,
            "kind": "remote",
            "anonymous_read": anonymous_read,
            "options": {"upstream": url, "retries": 0, **options},
        }
        config = make_config(repositories=[repo], server=server or {})
        return await aiohttp_client(create_app(config))

    return start
