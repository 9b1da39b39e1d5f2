"""The storage contract on the S3 driver, and what only it must do (multipart uploads,
checksums, payload signing, presigned redirects, unreachable endpoints)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest

from app.backends.storage.base import BlobStorage, StorageError
from app.backends.storage.s3 import S3Storage
from app.config import S3StorageConfig
from tests.contract.storage.suite import PART, MiB, StorageContract, chunked, payload, read
from tests.services import S3Settings
from tests.shapes import s3_storage
from tests.waiting import until


def s3_config(s3: S3Settings, prefix: str, **overrides: Any) -> S3StorageConfig:
    return S3StorageConfig(**s3_storage(s3, prefix, **({"part_size": PART} | overrides)))


async def reopen(config: str) -> BlobStorage:
    return await S3Storage(S3StorageConfig(**json.loads(config))).open()


async def leftovers(storage: S3Storage) -> list[str]:
    """The keys of multipart uploads begun under the driver's prefix and never finished."""
    response = await storage._client.list_multipart_uploads(
        Bucket=storage.bucket, Prefix=storage.config.prefix + "/"
    )
    return sorted(upload["Key"] for upload in response.get("Uploads", []))


async def unfinished_bytes(storage: S3Storage) -> int:
    """Bytes in the parts of those uploads."""
    client, bucket = storage._client, storage.bucket
    response = await client.list_multipart_uploads(
        Bucket=bucket, Prefix=storage.config.prefix + "/"
    )
    total = 0
    for upload in response.get("Uploads", []):
        ids = {"Bucket": bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}
        total += sum(part["Size"] for part in (await client.list_parts(**ids)).get("Parts", []))
    return total


class _Unreachable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 client used: {name}")


class S3Harness:
    def __init__(self, driver: S3Storage) -> None:
        self.driver = self.storage = driver

    async def leftovers(self) -> list[str]:
        return await leftovers(self.driver)

    async def unfinished_bytes(self) -> int:
        return await unfinished_bytes(self.driver)

    @contextmanager
    def untouched(self) -> Iterator[None]:
        client, self.driver._client = self.driver._client, _Unreachable()
        try:
            yield
        finally:
            self.driver._client = client

    @property
    def reopen(self) -> tuple[str, str]:
        return (f"{__name__}:reopen", self.driver.config.model_dump_json())


@pytest.fixture
async def s3(s3_server: S3Settings, s3_prefix: str) -> AsyncIterator[S3Storage]:
    store = await S3Storage(s3_config(s3_server, s3_prefix)).open()
    yield store
    await store.close()


class TestS3(StorageContract):
    @pytest.fixture
    def harness(self, s3: S3Storage) -> S3Harness:
        return S3Harness(s3)


class _InFlight:
    """Wraps a client method and records how many calls overlapped at most."""

    def __init__(self, method: Any, delay: float = 0.05) -> None:
        self.method, self.delay, self.now, self.most, self.calls = method, delay, 0, 0, 0
        self.called, self.returned = asyncio.Event(), asyncio.Event()

    async def __call__(self, **kwargs: Any) -> Any:
        self.now, self.calls = self.now + 1, self.calls + 1
        self.most = max(self.most, self.now)
        self.called.set()
        try:
            result = await self.method(**kwargs)
            await asyncio.sleep(self.delay)  # widen the window so overlap is observable
            self.returned.set()
            return result
        finally:
            self.now -= 1


async def test_s3_large_put_uploads_parts_concurrently_but_bounded(
    s3_server: S3Settings, s3_prefix: str
) -> None:
    store = await S3Storage(s3_config(s3_server, s3_prefix, concurrency=2)).open()
    try:
        probe = store._client.upload_part = _InFlight(store._client.upload_part)
        data = payload(4 * PART + 1)
        assert await store.put("multi", chunked(data)) == len(data)
        assert (probe.calls, probe.most) == (5, 2)
        assert await read(store, "multi") == data
        head = await store._client.head_object(Bucket=store.bucket, Key=f"{s3_prefix}/multi")
        assert head["ETag"].strip('"').endswith("-5")  # a multipart object
        await store.put("one-part", chunked(payload(PART)))
        assert probe.calls == 5  # exactly one part's worth is a single PutObject
    finally:
        await store.close()


async def test_s3_put_cancelled_while_creating_the_upload_aborts_it(s3: S3Storage) -> None:
    # The server has created the upload, but its answer has not reached the driver yet.
    probe = s3._client.create_multipart_upload = _InFlight(
        s3._client.create_multipart_upload, delay=0.5
    )
    writer = asyncio.create_task(s3.put("k", chunked(payload(2 * PART))))
    await probe.called.wait()

    async def created() -> bool:
        return await leftovers(s3) == [f"{s3.config.prefix}/k"]

    await until(created, "the upload created on the server")
    assert not probe.returned.is_set()  # still within the probe's delay
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert probe.returned.is_set()  # abort waited for the upload id
    assert await leftovers(s3) == []
    assert await s3.stat("k") is None


async def test_s3_multipart_copy(s3: S3Storage) -> None:
    store = s3
    data = payload(13 * MiB + 1)
    await store.put("src", chunked(data))
    store.max_single_copy = store.copy_part_size = PART
    probe = store._client.upload_part_copy = _InFlight(store._client.upload_part_copy)
    await store.copy("src", "dst")
    assert probe.calls == 3 and probe.most >= 2
    assert await read(store, "dst") == data
    await store.move("dst", "moved")
    assert await read(store, "moved") == data and await store.stat("dst") is None
    assert await leftovers(store) == []


async def test_s3_multipart_with_checksums(s3_server: S3Settings, s3_prefix: str) -> None:
    store = await S3Storage(s3_config(s3_server, s3_prefix, checksums="when_supported")).open()
    try:
        data = payload(2 * PART + 3)
        await store.put("k", chunked(data))
        assert await read(store, "k") == data
        assert await read(store, "k", PART - 1, 3) == data[PART - 1 : PART + 2]
        head = await store._client.head_object(
            Bucket=store.bucket, Key=f"{s3_prefix}/k", ChecksumMode="ENABLED"
        )
        # Only declared at creation does the server keep the parts' checksums.
        assert head["ChecksumCRC32"].endswith("-3")
        await store.put("small", chunked(b"validated on the way back"))
        assert await read(store, "small") == b"validated on the way back"
    finally:
        await store.close()


async def test_s3_ping_unreachable_endpoint_raises(s3_prefix: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    dead = S3Settings(f"http://127.0.0.1:{port}", "key", "secret", "bucket")
    store = await S3Storage(s3_config(dead, s3_prefix)).open()
    try:
        with pytest.raises(StorageError):
            await asyncio.wait_for(store.ping(), 30)
        with pytest.raises(StorageError):
            await store.stat("k")
    finally:
        await store.close()


async def test_s3_create_bucket(s3_server: S3Settings) -> None:
    bucket = f"created-{random.randrange(16**8):08x}"
    config = s3_config(s3_server, "", bucket=bucket, create_bucket=True)
    store = await S3Storage(config).open()
    try:
        await store.ping()
        await store.put("k", chunked(b"in a new bucket"))
        assert await read(store, "k") == b"in a new bucket"
        again = await S3Storage(config).open()  # an existing bucket is fine
        await again.close()
    finally:
        await store.close()


@pytest.mark.parametrize("sign", [False, True])
async def test_s3_payload_signing_is_configurable(
    s3_server: S3Settings, s3_prefix: str, sign: bool
) -> None:
    store = await S3Storage(s3_config(s3_server, s3_prefix, sign_payload=sign)).open()
    sent: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.headers["X-Amz-Content-SHA256"].decode())

    store._client.meta.events.register("before-send.s3.PutObject", capture)
    try:
        await store.put("signed", chunked(b"body"))
        assert await read(store, "signed") == b"body"
    finally:
        await store.close()
    expected = hashlib.sha256(b"body").hexdigest() if sign else "UNSIGNED-PAYLOAD"
    assert sent == [expected]


@pytest.mark.parametrize("public", [False, True], ids=["endpoint", "public-endpoint"])
async def test_s3_redirect_urls_are_presigned_and_fetchable(
    s3_server: S3Settings, s3_prefix: str, public: bool
) -> None:
    # A public endpoint is another name for the same server, as a CDN or DNS alias is.
    alias = s3_server.endpoint.replace("127.0.0.1", "localhost") if public else None
    config = s3_config(s3_server, s3_prefix, redirect_downloads=True, public_endpoint=alias)
    store = await S3Storage(config).open()
    data = payload(2 * MiB + 11)
    try:
        await store.put("blobs/x", chunked(data))
        url = await store.download_url("blobs/x", "text/plain")
        assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=900" in url
        assert url.startswith((alias or s3_server.endpoint) + "/")
        async with aiohttp.ClientSession() as client:
            async with client.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/plain"
                assert await response.read() == data
            async with client.get(url, headers={"Range": "bytes=5-9"}) as response:
                assert response.status == 206 and await response.read() == data[5:10]
            tampered = url.replace("blobs/x", "blobs/y")  # the signature covers the key
            async with client.get(tampered) as response:
                assert response.status == 403
    finally:
        await store.close()
