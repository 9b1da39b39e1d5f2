"""The generic format end to end, in both shapes: PUT, GET/HEAD, ranges, DELETE, listings."""

from __future__ import annotations

import asyncio
import hashlib
import os

from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from app import keys
from app.layout import blob_key

BASE = "/repository/files"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def put(client: TestClient, path: str, data: bytes, **headers: str):  # type: ignore[no-untyped-def]
    return await client.put(f"{BASE}/{path}", data=data, headers=headers)


async def test_put_then_get_returns_the_same_bytes(
    app_client: TestClient, app: web.Application
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    response = await put(app_client, "a/b.bin", data)
    assert response.status == 201
    body = await response.json()
    assert body["size"] == len(data)
    assert body["sha256"] == sha256(data)
    assert body["checksums"]["md5"] == hashlib.md5(data).hexdigest()
    assert body["checksums"]["sha1"] == hashlib.sha1(data).hexdigest()
    assert response.headers["Location"] == f"{BASE}/a/b.bin"

    response = await app_client.get(f"{BASE}/a/b.bin")
    assert response.status == 200
    assert await response.read() == data
    assert response.headers["ETag"] == f'"sha256:{sha256(data)}"'
    assert response.headers["X-Checksum-Sha256"] == sha256(data)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "Last-Modified" in response.headers

    stored = app[keys.STORAGE]
    info = await stored.stat(blob_key("sha256:" + sha256(data)))
    assert info is not None and info.size == len(data)


async def test_head_has_length_and_no_body(app_client: TestClient) -> None:
    await put(app_client, "h.txt", b"hello")
    response = await app_client.head(f"{BASE}/h.txt")
    assert response.status == 200
    assert response.headers["Content-Length"] == "5"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert await response.read() == b""


async def test_replacing_a_file_answers_200_and_serves_the_new_content(
    app_client: TestClient,
) -> None:
    assert (await put(app_client, "f", b"one")).status == 201
    assert (await put(app_client, "f", b"two")).status == 200
    assert await (await app_client.get(f"{BASE}/f")).read() == b"two"


async def test_identical_content_is_stored_once(
    app_client: TestClient, app: web.Application
) -> None:
    data = os.urandom(4096)
    await put(app_client, "x/1", data)
    await put(app_client, "y/2", data, **{"X-Checksum-Sha256": sha256(data)})
    assert await app[keys.METADATA].blob_totals() == (1, len(data))


async def test_ranges_and_conditional_requests(app_client: TestClient) -> None:
    data = bytes(range(256)) * 40
    await put(app_client, "r.bin", data)
    url = f"{BASE}/r.bin"
    response = await app_client.get(url, headers={"Range": "bytes=100-199"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert await response.read() == data[100:200]

    response = await app_client.get(url, headers={"Range": "bytes=-10"})
    assert await response.read() == data[-10:]

    response = await app_client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"

    etag = (await app_client.head(url)).headers["ETag"]
    assert (await app_client.get(url, headers={"If-None-Match": etag})).status == 304
    stale = await app_client.get(url, headers={"Range": "bytes=0-0", "If-Range": '"other"'})
    assert stale.status == 200 and await stale.read() == data


async def test_checksum_header_is_verified(app_client: TestClient, app: web.Application) -> None:
    data = b"payload" * 1000
    good = await put(app_client, "ok", data, **{"X-Checksum-Sha256": sha256(data)})
    assert good.status == 201

    bad = await put(app_client, "bad", data + b"!", **{"X-Checksum-Sha256": sha256(data)})
    assert bad.status == 400
    error = (await bad.json())["error"]
    assert error["code"] == "DIGEST_MISMATCH"
    assert error["detail"]["actual"] == "sha256:" + sha256(data + b"!")
    assert (await app_client.get(f"{BASE}/bad")).status == 404
    assert await app[keys.METADATA].blob_totals() == (1, len(data))
    assert await app[keys.STORAGE].stat(blob_key("sha256:" + sha256(data + b"!"))) is None

    malformed = await put(app_client, "m", data, **{"X-Checksum-Sha256": "xyz"})
    assert malformed.status == 400
    assert "X-Checksum-Sha256" in (await malformed.json())["error"]["message"]


async def test_oversized_bodies_get_413_and_nothing_is_stored(
    aiohttp_client,
    make_config,  # type: ignore[no-untyped-def]
) -> None:
    from app.server import create_app

    client = await aiohttp_client(create_app(make_config(server={"max_body_size": 1000})))
    declared = await client.put(f"{BASE}/big", data=b"x" * 1001)
    assert declared.status == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"y" * 100

    streamed = await client.put(f"{BASE}/big", data=chunks())
    assert streamed.status == 413
    assert (await streamed.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert (await client.get(f"{BASE}/big")).status == 404
    app = client.server.app
    assert await app[keys.METADATA].blob_totals() == (0, 0)


async def test_unsafe_paths_are_rejected(app_client: TestClient) -> None:
    for raw in ["a/%2E%2E/b", "%2E%2E/etc/passwd", "a//b", "a/%2E/b", "a%00b", "a%5Cb"]:
        url = URL(f"{BASE}/{raw}", encoded=True)
        response = await app_client.put(url, data=b"x")
        assert response.status == 400, raw
        assert (await response.json())["error"]["code"] == "BAD_REQUEST"


async def test_delete(app_client: TestClient) -> None:
    await put(app_client, "d/file", b"bye")
    assert (await app_client.delete(f"{BASE}/d/file")).status == 204
    assert (await app_client.get(f"{BASE}/d/file")).status == 404
    assert (await app_client.delete(f"{BASE}/d/file")).status == 404


async def test_repository_options_forbid_overwrite_and_delete(
    aiohttp_client,
    make_config,  # type: ignore[no-untyped-def]
) -> None:
    from app.server import create_app

    repo = {"name": "files", "format": "generic", "options": {"overwrite": False, "delete": False}}
    client = await aiohttp_client(create_app(make_config(repositories=[repo])))
    assert (await put(client, "v1", b"release")).status == 201
    assert (await put(client, "v1", b"release")).status == 200  # same bytes: idempotent
    conflict = await put(client, "v1", b"changed")
    assert conflict.status == 409
    early = await put(client, "v1", b"changed", **{"X-Checksum-Sha256": sha256(b"changed")})
    assert early.status == 409
    assert await (await client.get(f"{BASE}/v1")).read() == b"release"
    assert (await client.delete(f"{BASE}/v1")).status == 405


async def test_listing_folders_and_pagination(app_client: TestClient) -> None:
    for path in ["top.txt", "docs/a.md", "docs/b.md", "docs/deep/c.md", "zeta/z"]:
        await put(app_client, path, path.encode())

    root = await (await app_client.get(f"{BASE}/")).json()
    assert [(c["name"], c["type"]) for c in root["children"]] == [
        ("docs", "folder"),
        ("top.txt", "file"),
        ("zeta", "folder"),
    ]
    top = root["children"][1]
    assert top["size"] == len(b"top.txt") and top["sha256"] == sha256(b"top.txt")

    docs = await (await app_client.get(f"{BASE}/docs/")).json()
    assert [c["name"] for c in docs["children"]] == ["a.md", "b.md", "deep"]
    # Without the trailing slash a folder is listed all the same.
    assert (await (await app_client.get(f"{BASE}/docs")).json())["children"] == docs["children"]

    names, url = [], f"{BASE}/docs/?limit=2"
    while url:
        response = await app_client.get(url)
        page = await response.json()
        names += [c["name"] for c in page["children"]]
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else ""
    assert names == ["a.md", "b.md", "deep"]

    assert (await app_client.get(f"{BASE}/nothing/")).status == 404
    assert (await app_client.get(f"{BASE}/?limit=0")).status == 400
    assert (await app_client.get(f"{BASE}/?limit=many")).status == 400


async def test_unknown_repository_and_method(app_client: TestClient) -> None:
    response = await app_client.get("/repository/nope/file")
    assert response.status == 404
    body = await response.json()
    assert body["error"]["code"] == "NOT_FOUND"
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]

    response = await app_client.post(f"{BASE}/file", data=b"x")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD, PUT, DELETE"


async def test_expect_100_continue_refuses_a_too_large_body_before_it_is_sent(
    aiohttp_client,
    make_config,  # type: ignore[no-untyped-def]
) -> None:
    from app.server import create_app

    client = await aiohttp_client(create_app(make_config(server={"max_body_size": 1000})))

    async def exchange(length: int) -> bytes:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            f"PUT {BASE}/e.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            f"Authorization: {authorization}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if head.startswith(b"HTTP/1.1 100"):
            writer.write(b"z" * length)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        return head

    authorization = "Basic bm9ib2R5OndoYXRldmVy"  # nobody:whatever
    unknown = await exchange(10)
    assert unknown.startswith(b"HTTP/1.1 401"), unknown  # before a byte of the body
    authorization = client.session.headers["Authorization"]
    refused = await exchange(10**9)
    assert refused.startswith(b"HTTP/1.1 413"), refused
    accepted = await exchange(10)
    assert accepted.startswith(b"HTTP/1.1 201"), accepted
    assert await (await client.get(f"{BASE}/e.bin")).read() == b"z" * 10


HUGE = "9" * 5000  # past Python's 4,300-digit int() limit


async def test_numbers_past_any_size_are_refused_before_they_are_parsed(
    app_client: TestClient,
) -> None:
    data = b"0123456789"
    await put(app_client, "n.bin", data)
    for header in (f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}"):
        response = await app_client.get(f"{BASE}/n.bin", headers={"Range": header})
        assert response.status == 416, header[:30]
        assert response.headers["Content-Range"] == f"bytes */{len(data)}"
        assert (await response.json())["error"]["code"] == "RANGE_NOT_SATISFIABLE"
    response = await app_client.get(f"{BASE}/?limit={HUGE}")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "BAD_REQUEST"


async def test_a_304_carries_the_etag_and_weak_validators_match(app_client: TestClient) -> None:
    data = b"conditional"
    await put(app_client, "c.txt", data)
    etag = f'"sha256:{sha256(data)}"'
    for condition in (etag, f"W/{etag}", f'"other", W/{etag}'):
        response = await app_client.get(f"{BASE}/c.txt", headers={"If-None-Match": condition})
        assert response.status == 304, condition
        assert response.headers["ETag"] == etag
        assert await response.read() == b""
    other = await app_client.get(f"{BASE}/c.txt", headers={"If-None-Match": 'W/"other"'})
    assert other.status == 200 and await other.read() == data


async def test_suffix_ranges_on_empty_and_one_byte_bodies(app_client: TestClient) -> None:
    await put(app_client, "empty", b"")
    await put(app_client, "one", b"x")
    for header in ("bytes=-1", "bytes=-5"):
        empty = await app_client.get(f"{BASE}/empty", headers={"Range": header})
        assert empty.status == 416 and empty.headers["Content-Range"] == "bytes */0"
        one = await app_client.get(f"{BASE}/one", headers={"Range": header})
        assert one.status == 206
        assert one.headers["Content-Range"] == "bytes 0-0/1"
        assert await one.read() == b"x"


async def test_a_range_past_the_small_body_limit_of_a_large_file(app_client: TestClient) -> None:
    data = os.urandom(300_000)
    await put(app_client, "large.bin", data)
    response = await app_client.get(f"{BASE}/large.bin", headers={"Range": "bytes=100000-"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 100000-{len(data) - 1}/{len(data)}"
    assert response.headers["Content-Length"] == str(len(data) - 100000)
    assert await response.read() == data[100000:]
