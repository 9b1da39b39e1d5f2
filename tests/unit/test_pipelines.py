import hashlib
from collections.abc import AsyncIterator

import pytest

from pipelines import (
    Digest,
    DigestMismatch,
    Digests,
    InvalidDigest,
    TooLarge,
    drain,
    hashed,
    limited,
    parse_digest,
    teed,
    verified,
)


async def source(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_limited_raises_once_past_the_limit() -> None:
    assert b"".join(await collect(limited(source(b"12", b"34"), 4))) == b"1234"
    with pytest.raises(TooLarge) as info:
        await collect(limited(source(b"12", b"345"), 4))
    assert info.value.limit == 4


@pytest.mark.parametrize("size", [0, 100, 300 * 1024, 2 * 1024 * 1024 + 7])
async def test_hashed_matches_hashlib(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    digests = Digests("sha512", "md5")
    out = await collect(hashed(source(data[: size // 2], data[size // 2 :]), digests))
    assert b"".join(out) == data
    assert digests.size == size
    assert digests.hexdigest() == hashlib.sha256(data).hexdigest()
    assert digests.hexdigest("sha512") == hashlib.sha512(data).hexdigest()
    assert digests.hexdigest("md5") == hashlib.md5(data).hexdigest()


async def test_verified_raises_at_the_end_on_mismatch_holding_back_the_last_chunk() -> None:
    digests = Digests()
    wrong = Digest("sha256", "0" * 64)
    stream = verified(hashed(source(b"abc", b"def"), digests), digests, wrong)
    seen = []
    with pytest.raises(DigestMismatch) as info:
        async for chunk in stream:
            seen.append(chunk)
    assert seen == [b"abc"]  # never the whole body
    assert info.value.actual == "sha256:" + hashlib.sha256(b"abcdef").hexdigest()
    right = Digest("sha256", hashlib.sha256(b"abcdef").hexdigest())
    digests = Digests()
    stream = verified(hashed(source(b"abc", b"def"), digests), digests, right)
    assert [chunk async for chunk in stream] == [b"abc", b"def"]
    digests = Digests()
    stream = verified(hashed(source(b"abc"), digests), digests, wrong)
    with pytest.raises(DigestMismatch) as info:
        assert [chunk async for chunk in stream] == []
    assert info.value.actual == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert info.value.expected == str(wrong)


async def test_verified_accepts_the_right_digest_of_another_algorithm() -> None:
    digests = Digests("sha512")
    right = Digest("sha512", hashlib.sha512(b"abc").hexdigest())
    assert await drain(verified(hashed(source(b"a", b"bc"), digests), digests, right)) == 3


async def test_teed_feeds_the_side_and_survives_its_failure() -> None:
    received: list[bytes] = []

    async def client(chunk: bytes) -> None:
        if len(received) == 2:
            raise ConnectionResetError("client went away")
        received.append(chunk)

    out = await collect(teed(source(b"1", b"2", b"3", b"4"), client))
    assert out == [b"1", b"2", b"3", b"4"]
    assert received == [b"1", b"2"]


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha256" + "a" * 64,
        "md5:" + "a" * 32,
        "sha384:" + "a" * 96,
        "sha512:" + "a" * 64,
        "",
        ":",
    ],
)
def test_parse_digest_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(text)


def test_parse_digest_accepts_sha256_and_sha512() -> None:
    assert parse_digest("sha256:" + "ab" * 32) == Digest("sha256", "ab" * 32)
    assert str(parse_digest("sha512:" + "0" * 128)) == "sha512:" + "0" * 128
    assert parse_digest("md5:" + "f" * 32, allowed=("md5",)).algorithm == "md5"


def test_digests_refuses_unknown_algorithms() -> None:
    with pytest.raises(ValueError):
        Digests("crc32")
