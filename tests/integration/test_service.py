"""Health, readiness, metrics, request ids and error shaping, in both shapes."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web
from aiohttp.test_utils import TestClient

from app import keys, layout
from app.server import create_app
from tests.waiting import until


async def test_healthz_and_readyz(app_client: TestClient) -> None:
    assert await (await app_client.get("/healthz")).json() == {"status": "ok"}
    ready = await app_client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "storage": "ok", "cache": "ok"}


async def test_readyz_names_the_failing_backend(
    app_client: TestClient, app: web.Application
) -> None:
    await app[keys.METADATA].db.close()  # the database goes away under a running replica
    ready = await app_client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["failing"] == ["database"]
    assert body["checks"]["storage"] == "ok"

    # Requests that need the database get a clean 503, not a traceback.
    response = await app_client.get("/repository/files/anything")
    assert response.status == 503
    assert (await response.json())["error"]["message"] == "database unavailable, try again"


async def test_metrics_count_requests_bytes_and_blobs(app_client: TestClient) -> None:
    data = os.urandom(2048)
    await app_client.put("/repository/files/m.bin", data=data)
    await app_client.get("/repository/files/m.bin")
    await app_client.get("/repository/files/missing")
    text = await (await app_client.get("/metrics")).text()
    route = "/repository/{repository}/{path}"
    assert (
        f'artifactapi_http_requests_total{{method="PUT",route="{route}",status="201"}} 1.0' in text
    )
    assert (
        f'artifactapi_http_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    )
    assert f'artifactapi_http_request_bytes_total{{route="{route}"}} 2048.0' in text
    assert "artifactapi_blobs 1.0" in text
    assert "artifactapi_blob_bytes 2048.0" in text
    assert 'artifactapi_http_request_duration_seconds_count{method="PUT"' in text


async def test_request_id_is_echoed_or_made(app_client: TestClient) -> None:
    given = await app_client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = await app_client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(made.headers["X-Request-ID"]) == 32
    streamed = await app_client.get("/repository/files/")
    assert "X-Request-ID" in streamed.headers


async def test_unmatched_routes_and_unexpected_errors_are_clean_json(
    aiohttp_client,
    config,  # type: ignore[no-untyped-def]
) -> None:
    app = create_app(config)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    response = await client.get("/boom")
    assert response.status == 500
    text = await response.text()
    assert "secret" not in text and "Traceback" not in text
    assert (await response.json())["error"]["code"] == "INTERNAL_ERROR"

    missing = await client.get("/no/such/route")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "NOT_FOUND"
    wrong_method = await client.post("/healthz")
    assert wrong_method.status == 405
    assert "GET" in wrong_method.headers["Allow"]


async def test_client_disconnect_mid_upload_leaves_nothing(
    app_client: TestClient, app: web.Application
) -> None:
    _reader, writer = await asyncio.open_connection(app_client.host, app_client.port)
    writer.write(
        b"PUT /repository/files/cut.bin HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 10485760\r\n\r\n" + os.urandom(3 * 1024 * 1024)
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    # The server notices the lost connection asynchronously; the request is counted
    # once its handler has given up and cleaned up.
    tallies = app[keys.METRICS].http.tallies
    await until(lambda: any(method == "PUT" for _, method, _ in tallies), "the upload ended")
    assert (await app_client.get("/repository/files/cut.bin")).status == 404
    assert await app[keys.METADATA].blob_totals() == (0, 0)
    assert await _leftovers(app) == []


async def _leftovers(app: web.Application) -> list[str]:
    from datetime import timedelta

    storage = app[keys.STORAGE]
    found = []
    for prefix in (layout.TMP, layout.BLOBS):
        found += [o.key async for o in storage.list_stale(prefix, timedelta(0))]
    root = getattr(storage.driver, "root", None)  # the filesystem driver's own .incoming
    if root is not None:
        found += os.listdir(root / ".incoming")
    return found
