"""The content-addressed store over both shapes' real backends."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from app.backends.metadata import open_metadata
from app.backends.storage import open_storage
from app.cas import ContentStore, blob_key
from app.config import Config
from pipelines import Digest, DigestMismatch, TooLarge


@pytest.fixture
async def cas(config: Config) -> AsyncIterator[ContentStore]:
    storage = await open_storage(config.storage)
    metadata = await open_metadata(config.database.url)
    await metadata.migrate([])  # the core's tables are all the CAS needs
    yield ContentStore(storage, metadata)
    await metadata.close()
    await storage.close()


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha256(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def read(cas: ContentStore, digest: str) -> bytes:
    return b"".join([c async for c in cas.open(digest)])


async def leftovers(cas: ContentStore) -> list[str]:
    return [o.key async for o in cas.storage.list_stale("tmp/", timedelta(0))]


@pytest.mark.parametrize("expected", [False, True], ids=["digest-unknown", "digest-given"])
async def test_ingest_stores_by_sha256(cas: ContentStore, expected: bool) -> None:
    data = os.urandom(6 * 1024 * 1024 + 3)  # several chunks, and several S3 parts
    digest = sha256(data)
    blob = await cas.ingest(chunks(data), digest if expected else None, algorithms=("md5",))
    assert blob.digest == str(digest) and blob.size == len(data)
    assert blob.digests["md5"] == "md5:" + hashlib.md5(data).hexdigest()
    assert await read(cas, blob.digest) == data
    info = await cas.storage.stat(blob_key(digest))
    assert info is not None and info.size == len(data)
    assert blob_key(digest) == f"blobs/sha256/{digest.hex[:2]}/{digest.hex}"
    assert (await cas.stat(blob.digest)).size == len(data)  # type: ignore[union-attr]
    assert await leftovers(cas) == []


async def test_existing_content_is_not_written_twice(cas: ContentStore) -> None:
    data = os.urandom(100_000)
    first = await cas.ingest(chunks(data))
    before = await cas.storage.stat(blob_key(first.digest))
    for expected in (None, sha256(data)):
        again = await cas.ingest(chunks(data), expected)
        assert again.digest == first.digest
    after = await cas.storage.stat(blob_key(first.digest))
    assert before is not None and after is not None
    assert after.modified == before.modified  # the object was not rewritten
    assert await cas.metadata.blob_totals() == (1, len(data))
    assert await leftovers(cas) == []


async def test_a_wrong_expected_digest_writes_nothing(cas: ContentStore) -> None:
    data, claimed = os.urandom(200_000), sha256(b"something else")
    with pytest.raises(DigestMismatch) as info:
        await cas.ingest(chunks(data), claimed)
    assert info.value.actual == str(sha256(data))
    assert await cas.storage.stat(blob_key(claimed)) is None
    assert await cas.storage.stat(blob_key(sha256(data))) is None
    assert await cas.metadata.blob_totals() == (0, 0)


async def test_a_lie_about_existing_content_is_still_caught(cas: ContentStore) -> None:
    real = os.urandom(1000)
    await cas.ingest(chunks(real))
    with pytest.raises(DigestMismatch):
        await cas.ingest(chunks(b"not the same bytes"), sha256(real))
    assert await read(cas, str(sha256(real))) == real


async def test_sha512_expectation_is_verified_and_stored_by_sha256(cas: ContentStore) -> None:
    data = os.urandom(5000)
    sha512 = Digest("sha512", hashlib.sha512(data).hexdigest())
    blob = await cas.ingest(chunks(data), sha512)
    assert blob.digest == str(sha256(data))
    assert blob.digests["sha512"] == str(sha512)
    with pytest.raises(DigestMismatch):
        await cas.ingest(chunks(data + b"x"), sha512)


async def test_size_limit_writes_nothing(cas: ContentStore) -> None:
    data = os.urandom(300_000)
    for expected in (None, sha256(data)):
        with pytest.raises(TooLarge):
            await cas.ingest(chunks(data), expected, max_size=299_999)
    assert await cas.metadata.blob_totals() == (0, 0)
    assert await cas.storage.stat(blob_key(sha256(data))) is None
    assert await leftovers(cas) == []


async def test_an_object_lost_under_its_row_is_written_again(cas: ContentStore) -> None:
    data = os.urandom(10_000)
    blob = await cas.ingest(chunks(data))
    await cas.storage.delete(blob_key(blob.digest))
    await cas.ingest(chunks(data), sha256(data))
    assert await read(cas, blob.digest) == data


async def test_a_failing_source_leaves_nothing(cas: ContentStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(2 * 1024 * 1024)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await cas.ingest(broken())
    assert await leftovers(cas) == []
    assert await cas.metadata.blob_totals() == (0, 0)
