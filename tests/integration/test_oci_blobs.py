"""OCI blob uploads and blobs, end to end in both shapes."""

from __future__ import annotations

import hashlib
import os

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from tests import shapes
from tests.integration.conftest import ConfigFactory
from tests.oci_docs import digest_of, image_manifest
from tests.services import S3Settings
from tests.waiting import until

REPOS = [
    {"name": "docker-local", "format": "oci", "kind": "local"},
    {"name": "other", "format": "oci", "kind": "local"},
    {"name": "files", "format": "generic", "kind": "local"},
]
NAME = "docker-local/team/app"


@pytest.fixture
async def registry(aiohttp_client, make_config: ConfigFactory) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


async def start(client: TestClient, name: str = NAME) -> str:
    response = await client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status == 202, await response.text()
    assert response.headers["Range"] == "0-0"
    assert response.headers["Docker-Upload-UUID"] in response.headers["Location"]
    return response.headers["Location"]


async def assert_blob(client: TestClient, digest: str, data: bytes, name: str = NAME) -> None:
    response = await client.get(f"/v2/{name}/blobs/{digest}")
    assert response.status == 200
    assert response.headers["Docker-Content-Digest"] == digest
    assert await response.read() == data


async def test_api_root(registry: TestClient) -> None:
    response = await registry.get("/v2/")
    assert response.status == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_single_patch_then_empty_put(registry: TestClient) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    location = await start(registry)
    patched = await registry.patch(location, data=data)
    assert patched.status == 202
    assert patched.headers["Range"] == f"0-{len(data) - 1}"
    done = await registry.put(f"{patched.headers['Location']}?digest={digest_of(data)}")
    assert done.status == 201, await done.text()
    assert done.headers["Docker-Content-Digest"] == digest_of(data)
    assert done.headers["Location"] == f"/v2/{NAME}/blobs/{digest_of(data)}"
    await assert_blob(registry, digest_of(data), data)
    head = await registry.head(f"/v2/{NAME}/blobs/{digest_of(data)}")
    assert head.headers["Content-Length"] == str(len(data))
    ranged = await registry.get(
        f"/v2/{NAME}/blobs/{digest_of(data)}", headers={"Range": "bytes=10-19"}
    )
    assert ranged.status == 206 and await ranged.read() == data[10:20]
    # The session is gone once finished.
    assert (await registry.get(location)).status == 404


async def test_chunked_upload_with_ranges_and_a_trailing_body(registry: TestClient) -> None:
    chunk = 1024 * 1024
    data = os.urandom(5 * chunk + 123)
    location = await start(registry)
    offset = 0
    for _ in range(5):
        piece = data[offset : offset + chunk]
        response = await registry.patch(
            location,
            data=piece,
            headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"},
        )
        assert response.status == 202, await response.text()
        offset += len(piece)
        location = response.headers["Location"]
    status = await registry.get(location)
    assert status.status == 204
    assert status.headers["Range"] == f"0-{offset - 1}"
    done = await registry.put(f"{location}?digest={digest_of(data)}", data=data[offset:])
    assert done.status == 201, await done.text()
    await assert_blob(registry, digest_of(data), data)


async def test_empty_chunks_change_nothing(registry: TestClient) -> None:
    location = await start(registry)
    assert (await registry.patch(location, data=b"")).headers["Range"] == "0-0"
    await registry.patch(location, data=b"abc")
    assert (await registry.patch(location, data=b"")).headers["Range"] == "0-2"
    done = await registry.put(f"{location}?digest={digest_of(b'abcdef')}", data=b"def")
    assert done.status == 201, await done.text()
    await assert_blob(registry, digest_of(b"abcdef"), b"abcdef")


async def test_truncated_chunk_leaves_the_session_where_it_was(registry: TestClient) -> None:
    location = await start(registry)
    await registry.patch(location, data=b"x" * 100, headers={"Content-Range": "0-99"})
    short = await registry.patch(location, data=b"y" * 10, headers={"Content-Range": "100-199"})
    assert short.status == 400
    assert (await short.json())["errors"][0]["code"] == "SIZE_INVALID"
    assert (await registry.get(location)).headers["Range"] == "0-99"


async def test_out_of_order_chunk_is_416_with_the_current_range(registry: TestClient) -> None:
    location = await start(registry)
    await registry.patch(location, data=b"a" * 10, headers={"Content-Range": "0-9"})
    response = await registry.patch(location, data=b"b" * 5, headers={"Content-Range": "20-24"})
    assert response.status == 416
    assert response.headers["Range"] == "0-9"
    assert (await response.json())["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    # The session is intact and continues from its real end.
    ok = await registry.patch(location, data=b"c" * 5, headers={"Content-Range": "10-14"})
    assert ok.status == 202 and ok.headers["Range"] == "0-14"


async def _chunked_body(data: bytes):  # type: ignore[no-untyped-def]
    yield data  # sent with Transfer-Encoding: chunked, so no Content-Length


async def test_the_closing_put_checks_its_content_range_as_a_patch_does(
    registry: TestClient,
) -> None:
    data = os.urandom(30_000)
    digest = digest_of(data)
    location = await start(registry)
    patched = await registry.patch(
        location, data=data[:10_000], headers={"Content-Range": "0-9999"}
    )
    assert patched.status == 202
    upload_id = patched.headers["Docker-Upload-UUID"]
    # The last chunk out of order: 416, saying where the session is and ends; nothing added.
    for wrong in ("20000-39999", "0-19999", "9999-29998"):
        refused = await registry.put(
            f"{location}?digest={digest}", data=data[10_000:], headers={"Content-Range": wrong}
        )
        assert refused.status == 416, wrong
        assert refused.headers["Range"] == "0-9999"
        assert refused.headers["Docker-Upload-UUID"] == upload_id
        assert refused.headers["Location"] == location
        assert (await refused.json())["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    # A range whose length is not the body's: refused as on PATCH, before anything is read.
    for body, content_range in (
        (data[10_000:], "10000-19999"),
        (data[10_000:20_000], "10000-29999"),
    ):
        short = await registry.put(
            f"{location}?digest={digest}", data=body, headers={"Content-Range": content_range}
        )
        assert short.status == 400
        assert (await short.json())["errors"][0]["code"] == "SIZE_INVALID"
    # Nor when the length is only known at the end (a chunked body).
    for body in (data[10_000:29_999], data[10_000:] + b"x"):
        chunked = await registry.put(
            f"{location}?digest={digest}",
            data=_chunked_body(body),
            headers={"Content-Range": "10000-29999"},
        )
        assert chunked.status == 400
        assert (await chunked.json())["errors"][0]["code"] == "SIZE_INVALID"
    assert (await registry.get(location)).headers["Range"] == "0-9999"
    assert (await registry.head(f"/v2/{NAME}/blobs/{digest}")).status == 404
    # The right range finishes the blob, with or without a length up front.
    done = await registry.put(
        f"{location}?digest={digest}",
        data=_chunked_body(data[10_000:]),
        headers={"Content-Range": "10000-29999"},
    )
    assert done.status == 201, await done.text()
    await assert_blob(registry, digest, data)
    again = await start(registry)
    whole = await registry.put(
        f"{again}?digest={digest}", data=data, headers={"Content-Range": "0-29999"}
    )
    assert whole.status == 201, await whole.text()


async def test_an_out_of_order_patch_says_where_the_session_is(registry: TestClient) -> None:
    location = await start(registry)
    await registry.patch(location, data=b"a" * 10)
    refused = await registry.patch(location, data=b"b" * 5, headers={"Content-Range": "5-9"})
    assert refused.status == 416 and refused.headers["Range"] == "0-9"
    assert refused.headers["Location"] == location
    assert refused.headers["Docker-Upload-UUID"] in location


async def test_wrong_digest_commits_nothing(registry: TestClient) -> None:
    data = b"layer bytes" * 1000
    location = await start(registry)
    await registry.patch(location, data=data)
    wrong = digest_of(b"something else")
    response = await registry.put(f"{location}?digest={wrong}")
    assert response.status == 400
    assert (await response.json())["errors"][0]["code"] == "DIGEST_INVALID"
    assert (await registry.head(f"/v2/{NAME}/blobs/{wrong}")).status == 404
    assert (await registry.head(f"/v2/{NAME}/blobs/{digest_of(data)}")).status == 404


async def test_monolithic_upload_and_cross_repository_mount(registry: TestClient) -> None:
    data = os.urandom(4096)
    response = await registry.post(f"/v2/{NAME}/blobs/uploads/?digest={digest_of(data)}", data=data)
    assert response.status == 201
    await assert_blob(registry, digest_of(data), data)

    target = "other/elsewhere"
    mounted = await registry.post(
        f"/v2/{target}/blobs/uploads/?mount={digest_of(data)}&from={NAME}"
    )
    assert mounted.status == 201
    await assert_blob(registry, digest_of(data), data, name=target)

    missing = digest_of(b"never pushed")
    fallback = await registry.post(f"/v2/{target}/blobs/uploads/?mount={missing}&from={NAME}")
    assert fallback.status == 202  # a normal session instead
    assert (await registry.head(f"/v2/{target}/blobs/{missing}")).status == 404


async def test_cancel_and_unknown_sessions(registry: TestClient) -> None:
    location = await start(registry)
    await registry.patch(location, data=b"partial")
    assert (await registry.delete(location)).status == 204
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = await registry.request(method, location)
        assert response.status == 404, method
        assert (await response.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    bogus = await registry.get(f"/v2/{NAME}/blobs/uploads/not-a-session")
    assert bogus.status == 404
    # A session belongs to the name it was started for.
    other = await start(registry)
    moved = other.replace(NAME, "docker-local/someone/else")
    assert (await registry.get(moved)).status == 404


async def test_blob_delete(registry: TestClient) -> None:
    data = b"delete me"
    await registry.post(f"/v2/{NAME}/blobs/uploads/?digest={digest_of(data)}", data=data)
    url = f"/v2/{NAME}/blobs/{digest_of(data)}"
    assert (await registry.delete(url)).status == 202
    missing = await registry.get(url)
    assert missing.status == 404
    assert (await missing.json())["errors"][0]["code"] == "BLOB_UNKNOWN"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/docker-local/Team/app/blobs/uploads/", "NAME_INVALID"),
        ("/v2/docker-local/a/%2E%2E/b/blobs/uploads/", "NAME_INVALID"),
        ("/v2/docker-local/blobs/uploads/", "NAME_INVALID"),
        ("/v2/nowhere/app/blobs/uploads/", "NAME_UNKNOWN"),
        ("/v2/files/app/blobs/uploads/", "NAME_UNKNOWN"),
    ],
)
async def test_bad_names(registry: TestClient, path: str, code: str) -> None:
    from yarl import URL

    response = await registry.post(URL(path, encoded=True))
    assert (await response.json())["errors"][0]["code"] == code


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "G" * 64, "nonsense"]
)
async def test_malformed_digests_are_400(registry: TestClient, digest: str) -> None:
    response = await registry.get(f"/v2/{NAME}/blobs/{digest}")
    assert response.status == 400
    assert (await response.json())["errors"][0]["code"] == "DIGEST_INVALID"


async def test_a_client_dropping_mid_patch_leaves_a_resumable_session(
    registry: TestClient,
) -> None:
    import asyncio

    location = await start(registry)
    first = os.urandom(50_000)
    await registry.patch(location, data=first)
    _reader, writer = await asyncio.open_connection(registry.host, registry.port)
    writer.write(
        f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n".encode()
        + os.urandom(1_000_000)
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def back_at_the_first_part() -> bool:  # noticed asynchronously by the server
        status = await registry.get(location)
        return bool(status.headers["Range"] == f"0-{len(first) - 1}")

    await until(back_at_the_first_part, "back at the first part's end")
    rest = os.urandom(30_000)
    resumed = await registry.patch(
        location, data=rest, headers={"Content-Range": f"{len(first)}-{len(first) + len(rest) - 1}"}
    )
    assert resumed.status == 202
    data = first + rest
    assert (await registry.put(f"{location}?digest={digest_of(data)}")).status == 201
    await assert_blob(registry, digest_of(data), data)


async def test_sha512_digests_are_accepted(registry: TestClient) -> None:
    data = os.urandom(70_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    location = await start(registry)
    await registry.patch(location, data=data)
    done = await registry.put(f"{location}?digest={digest}")
    assert done.status == 201, await done.text()
    await assert_blob(registry, digest, data)
    wrong = "sha512:" + hashlib.sha512(b"other").hexdigest()
    again = await start(registry)
    await registry.patch(again, data=data)
    assert (await registry.put(f"{again}?digest={wrong}")).status == 400


async def test_s3_redirects_blob_downloads_but_not_heads_or_manifests(
    aiohttp_client,  # type: ignore[no-untyped-def]
    postgres_dsn: str,
    redis_server: str,
    s3_server: S3Settings,
    s3_prefix: str,
) -> None:
    storage = shapes.s3_storage(s3_server, s3_prefix, redirect_downloads=True)
    config = shapes.scale_out(
        postgres_dsn, redis_server, s3_server, s3_prefix, repositories=REPOS, storage=storage
    )
    registry = await aiohttp_client(create_app(config))
    data = os.urandom(1024 * 1024 + 3)
    digest = digest_of(data)
    assert (
        await registry.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=data)
    ).status == 201

    response = await registry.get(f"/v2/{NAME}/blobs/{digest}", allow_redirects=False)
    assert response.status == 307
    assert response.headers["Docker-Content-Digest"] == digest
    location = response.headers["Location"]
    assert location.startswith(s3_server.endpoint) and "X-Amz-Signature=" in location
    async with aiohttp.ClientSession() as direct:  # the client fetches from S3 itself
        async with direct.get(location, headers={"Range": "bytes=10-19"}) as fetched:
            assert fetched.status == 206 and await fetched.read() == data[10:20]
        async with direct.get(location) as fetched:
            assert await fetched.read() == data

    head = await registry.head(f"/v2/{NAME}/blobs/{digest}", allow_redirects=False)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    cached = await registry.get(
        f"/v2/{NAME}/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'}
    )
    assert cached.status == 304
    # Only blobs this repository links are redirected: no URL leaks for others.
    assert (
        await registry.get(f"/v2/other/app/blobs/{digest}", allow_redirects=False)
    ).status == 404

    config_blob = b"{}"
    await registry.post(
        f"/v2/{NAME}/blobs/uploads/?digest={digest_of(config_blob)}", data=config_blob
    )
    manifest = image_manifest(config_blob, [data])
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    assert (
        await registry.put(f"/v2/{NAME}/manifests/v1", data=manifest, headers=headers)
    ).status == 201
    served = await registry.get(f"/v2/{NAME}/manifests/v1", allow_redirects=False)
    assert served.status == 200 and await served.read() == manifest

    # Generic files redirect too, and S3 answers with the file's own content type.
    put = await registry.put(
        "/repository/files/notes.txt", data=b"plain text", headers={"Content-Type": "text/plain"}
    )
    assert put.status == 201
    moved = await registry.get("/repository/files/notes.txt", allow_redirects=False)
    assert moved.status == 307
    async with aiohttp.ClientSession() as direct, direct.get(moved.headers["Location"]) as fetched:
        assert fetched.headers["Content-Type"] == "text/plain"
        assert await fetched.read() == b"plain text"


HUGE = "9" * 5000  # past Python's 4,300-digit int() limit


async def test_numbers_past_any_size_are_refused_before_they_are_parsed(
    registry: TestClient,
) -> None:
    data = b"0123456789"
    digest = digest_of(data)
    assert (
        await registry.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=data)
    ).status == 201
    for header in (f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}"):
        response = await registry.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": header})
        assert response.status == 416, header[:30]
        assert response.headers["Content-Range"] == f"bytes */{len(data)}"
        assert (await response.json())["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"

    location = await start(registry)
    await registry.patch(location, data=b"a" * 10, headers={"Content-Range": "0-9"})
    for content_range in (f"0-{HUGE}", f"{HUGE[:4000]}-{HUGE[:4000]}", f"10-{HUGE}"):
        response = await registry.patch(
            location, data=b"b" * 5, headers={"Content-Range": content_range}
        )
        assert response.status == 416, content_range[:30]
        assert response.headers["Range"] == "0-9"
        assert (await response.json())["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert (await registry.get(location)).headers["Range"] == "0-9"


async def test_a_range_past_the_small_body_limit_of_a_large_blob(registry: TestClient) -> None:
    data = os.urandom(300_000)
    digest = digest_of(data)
    assert (
        await registry.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=data)
    ).status == 201
    response = await registry.get(f"/v2/{NAME}/blobs/{digest}", headers={"Range": "bytes=100000-"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 100000-{len(data) - 1}/{len(data)}"
    assert response.headers["Content-Length"] == str(len(data) - 100000)
    assert await response.read() == data[100000:]
