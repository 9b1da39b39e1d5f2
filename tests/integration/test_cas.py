"""The content-addressed store over both shapes' real backends: ingest, and the
staging of chunked uploads (stage, commit, drop)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from app import layout
from app.backends.metadata import open_metadata
from app.backends.storage import open_storage
from app.cas import ContentStore, Staged
from app.config import Config
from app.layout import blob_key
from app.metrics import StorageTallies
from pipelines import Digest, DigestMismatch, TooLarge


@pytest.fixture
def tallies() -> StorageTallies:
    return StorageTallies()


@pytest.fixture
async def cas(config: Config, tallies: StorageTallies) -> AsyncIterator[ContentStore]:
    storage = await open_storage(config.storage, tallies)
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


# --- staging: stage, commit, drop ------------------------------------------------------

UPLOAD = "0123456789abcdef0123456789abcdef"


async def staged_keys(cas: ContentStore) -> list[str]:
    return sorted([o.key async for o in cas.storage.list_stale(layout.UPLOADS, timedelta(0))])


def operations(tallies: StorageTallies, name: str) -> tuple[int, int]:
    """How often ``name`` reached the storage, and the bytes it moved."""
    tally = tallies.tallies.get(name)
    return (tally.count, tally.bytes) if tally is not None else (0, 0)


async def test_stage_stores_a_part_hashed_on_the_way(cas: ContentStore) -> None:
    data = os.urandom(300_000)
    part = await cas.stage(UPLOAD, 1000, chunks(data), max_size=1000 + len(data))
    assert (part.offset, part.size, part.sha256) == (1000, len(data), sha256(data).hex)
    assert part.storage_key.startswith(f"{layout.UPLOADS}{UPLOAD}/00000000000000001000-")
    assert layout.upload_of(part.storage_key) == UPLOAD
    assert b"".join([c async for c in cas.storage.get(part.storage_key)]) == data
    again = await cas.stage(UPLOAD, 1000, chunks(data), max_size=1000 + len(data))
    assert again.storage_key != part.storage_key  # two racing appends never share a key
    assert await cas.metadata.blob_totals() == (0, 0)  # a part is no blob


async def test_stage_past_the_size_limit_stores_nothing(cas: ContentStore) -> None:
    with pytest.raises(TooLarge):
        await cas.stage(UPLOAD, 1000, chunks(os.urandom(300_000)), max_size=300_999)
    assert await staged_keys(cas) == []


async def test_commit_adopts_a_single_part_without_reading_it(
    cas: ContentStore, tallies: StorageTallies
) -> None:
    data = os.urandom(6 * 1024 * 1024 + 3)
    part = await cas.stage(UPLOAD, 0, chunks(data), max_size=len(data))
    blob = await cas.commit([part], None, sha256(data), max_size=len(data))
    assert (blob.digest, blob.size) == (str(sha256(data)), len(data))
    assert operations(tallies, "get") == (0, 0)  # moved, never read again
    assert operations(tallies, "move")[0] == 1
    assert await staged_keys(cas) == []  # the part became the blob
    assert await read(cas, blob.digest) == data
    assert (await cas.stat(blob.digest)).size == len(data)  # type: ignore[union-attr]


async def test_commit_of_stored_content_drops_the_adopted_part(cas: ContentStore) -> None:
    data = os.urandom(50_000)
    first = await cas.ingest(chunks(data))
    before = await cas.storage.stat(blob_key(first.digest))
    part = await cas.stage(UPLOAD, 0, chunks(data), max_size=len(data))
    assert (await cas.commit([part], None, sha256(data))).digest == first.digest
    assert await staged_keys(cas) == []
    after = await cas.storage.stat(blob_key(first.digest))
    assert before is not None and after is not None and after.modified == before.modified
    assert await cas.metadata.blob_totals() == (1, len(data))


@pytest.mark.parametrize("trailing", [False, True], ids=["parts", "parts+trailing"])
async def test_commit_streams_parts_and_trailing_body_once(
    cas: ContentStore, tallies: StorageTallies, trailing: bool
) -> None:
    pieces = [os.urandom(n) for n in (100_000, 1, 2 * 1024 * 1024 + 5)]
    parts, offset = [], 0
    for piece in pieces:
        parts.append(await cas.stage(UPLOAD, offset, chunks(piece), max_size=10**9))
        offset += len(piece)
    tail = os.urandom(70_000) if trailing else b""
    data = b"".join(pieces) + tail
    blob = await cas.commit(parts, chunks(tail) if trailing else None, sha256(data))
    assert (blob.digest, blob.size) == (str(sha256(data)), len(data))
    assert operations(tallies, "get") == (3, offset)  # each part read once
    assert await read(cas, blob.digest) == data
    assert len(await staged_keys(cas)) == 3  # the caller drops them, once its row is gone
    await cas.drop(parts)
    assert await staged_keys(cas) == []
    assert await leftovers(cas) == []


async def test_one_part_with_a_trailing_body_is_not_adopted(cas: ContentStore) -> None:
    head, tail = os.urandom(1000), os.urandom(10)
    part = await cas.stage(UPLOAD, 0, chunks(head), max_size=10**6)
    # The part alone hashes to the digest, but the trailing body belongs to the blob.
    with pytest.raises(DigestMismatch):
        await cas.commit([part], chunks(tail), sha256(head))
    assert await cas.storage.stat(blob_key(sha256(head))) is None
    assert await staged_keys(cas) == [part.storage_key]  # kept: the client may retry


async def test_commit_verifies_the_expected_digest(cas: ContentStore) -> None:
    data = os.urandom(20_000)
    part = await cas.stage(UPLOAD, 0, chunks(data), max_size=10**6)
    wrong = sha256(b"other bytes")
    with pytest.raises(DigestMismatch):
        await cas.commit([part], None, wrong)
    assert await cas.storage.stat(blob_key(wrong)) is None
    assert await cas.metadata.blob_totals() == (0, 0)
    sha512 = Digest("sha512", hashlib.sha512(data).hexdigest())
    blob = await cas.commit([part], None, sha512)  # verified on the way, stored by sha256
    assert blob.digest == str(sha256(data)) and blob.digests["sha512"] == str(sha512)
    assert await staged_keys(cas) == [part.storage_key]


async def test_commit_past_the_size_limit_writes_nothing(cas: ContentStore) -> None:
    data = os.urandom(30_000)
    part = await cas.stage(UPLOAD, 0, chunks(data), max_size=10**6)
    with pytest.raises(TooLarge):
        await cas.commit([part], chunks(b"x"), sha256(data + b"x"), max_size=len(data))
    assert await cas.metadata.blob_totals() == (0, 0)
    assert await leftovers(cas) == []


async def test_old_staged_objects_are_listed_with_their_upload_and_dropped(
    cas: ContentStore,
) -> None:
    part = await cas.stage(UPLOAD, 0, chunks(b"abc"), max_size=10)
    stray = f"{layout.UPLOADS}not-a-session"  # no upload can be told from it
    await cas.storage.put(stray, chunks(b"zz"))
    found = sorted([s async for s in cas.staged(timedelta(0))], key=lambda s: s.storage_key)
    assert found == [Staged(UPLOAD, part.storage_key, 3), Staged(None, stray, 2)]
    assert [s async for s in cas.staged(timedelta(hours=1))] == []  # too young
    await cas.drop(found)
    await cas.drop(found)  # absent already: fine
    await cas.drop([])
    assert await staged_keys(cas) == []
