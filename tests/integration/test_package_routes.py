"""``/api/v1/repositories/<name>/packages``: what every format shares there (the
formats with local packages test their own answers beside their other tests): a
repository without packages, unknown repositories, permissions and bad input."""

from __future__ import annotations

from typing import Any

from app.server import create_app
from tests.integration.conftest import ConfigFactory

REPOS = [
    {"name": "files", "format": "generic", "kind": "local"},
    {"name": "public", "format": "generic", "kind": "local", "anonymous_read": True},
]


async def test_a_repository_without_packages_says_so(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(repositories=REPOS)))
    for method, path in [
        ("GET", "/api/v1/repositories/files/packages"),
        ("GET", "/api/v1/repositories/files/packages/thing"),
        ("GET", "/api/v1/repositories/files/packages/@scope/thing"),
        ("DELETE", "/api/v1/repositories/files/packages/thing/versions/1.0"),
        ("POST", "/api/v1/repositories/files/packages/thing/versions/1.0/yank"),
        ("POST", "/api/v1/repositories/files/packages/thing/versions/1.0/files/a.whl/unyank"),
    ]:
        response = await client.request(method, path)
        assert response.status == 404, (method, path)
        body = await response.json()
        assert "keeps no packages" in body["error"]["message"], body


async def test_unknown_repositories_and_bad_pages_are_refused(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(repositories=REPOS)))
    response = await client.get("/api/v1/repositories/nope/packages")
    assert response.status == 404
    assert "nope" in (await response.json())["error"]["message"]
    for limit in ("0", "10001", "x", "9" * 400):
        response = await client.get(f"/api/v1/repositories/files/packages?limit={limit}")
        assert response.status == 400, limit
    response = await client.post(
        "/api/v1/repositories/files/packages/thing/versions/1.0/yank",
        data=b"[1]",
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    response = await client.post(
        "/api/v1/repositories/files/packages/thing/versions/1.0/yank",
        json={"reason": "x" * 1001},
    )
    assert response.status == 400


async def test_reading_and_changing_take_the_repository_permissions(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(repositories=REPOS)), anonymous=True)
    response = await client.get("/api/v1/repositories/files/packages")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    # A public repository lists for anyone (here: nothing to list), changes need credentials.
    response = await client.get("/api/v1/repositories/public/packages")
    assert response.status == 404
    for method, path in [
        ("DELETE", "/api/v1/repositories/public/packages/thing"),
        ("POST", "/api/v1/repositories/public/packages/thing/versions/1.0/yank"),
    ]:
        response = await client.request(method, path)
        assert response.status == 401, (method, path)
