import hashlib
from collections.abc import AsyncIterator

import pytest

from pipelines import (
    ALGORITHMS,
    Digest,
    DigestMismatch,
    Digests,
    InvalidDigest,
    TooLarge,
    drain,
    hashed,
    hashed_aside,
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
    "error", [ConnectionResetError("reset"), RuntimeError("closing transport"), OSError("pipe")]
)
async def test_teed_never_calls_a_side_again_once_it_failed(error: Exception) -> None:
    # Fails once only: a stage that kept calling a dead client would reach it again.
    calls: list[bytes] = []

    async def client(chunk: bytes) -> None:
        calls.append(chunk)
        if len(calls) == 2:
            raise error

    out = await collect(teed(source(b"1", b"2", b"3", b"4"), client))
    assert out == [b"1", b"2", b"3", b"4"]
    assert calls == [b"1", b"2"]


async def test_teed_lets_other_errors_of_the_side_through() -> None:
    async def client(chunk: bytes) -> None:
        raise KeyError("a bug, not a client that left")

    with pytest.raises(KeyError):
        await collect(teed(source(b"1"), client))


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


@pytest.mark.parametrize("algorithm", ["sha384", "sha224", "sha3_256", "blake2b"])
def test_digests_refuses_algorithms_hashlib_knows_but_formats_do_not_use(algorithm: str) -> None:
    hashlib.new(algorithm)  # hashlib alone would accept it: the refusal is ours
    with pytest.raises(ValueError, match=rf"^unsupported digest algorithm\(s\): \['{algorithm}'\]"):
        Digests("sha512", algorithm)


def test_digests_computes_every_algorithm_it_allows_once() -> None:
    assert ALGORITHMS == {"sha256": 64, "sha512": 128, "sha1": 40, "md5": 32}
    digests = Digests("sha256", "sha1", "md5", "sha512", "md5")
    assert digests.algorithms == ("sha256", "sha1", "md5", "sha512")
    digests.update(b"abc")
    for name, length in ALGORITHMS.items():
        assert digests.digest(name) == Digest(name, hashlib.new(name, b"abc").hexdigest())
        assert len(digests.hexdigest(name)) == length


def test_errors_say_what_was_wrong() -> None:
    assert str(TooLarge(4)) == "body exceeds the limit of 4 bytes"
    mismatch = DigestMismatch("sha256:" + "0" * 64, "sha256:" + "1" * 64)
    expected = f"content digest sha256:{'1' * 64} does not match the expected sha256:{'0' * 64}"
    assert str(mismatch) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("sha256", "expected algorithm:hex"),
        ("sha384:" + "a" * 96, "unsupported algorithm 'sha384'"),
        ("x" * 30 + ":", f"unsupported algorithm {'x' * 20!r}"),
        ("sha256:abc", "expected 64 lowercase hex digits"),
        ("sha512:" + "A" * 128, "expected 128 lowercase hex digits"),
    ],
)
def test_parse_digest_says_why(text: str, why: str) -> None:
    with pytest.raises(InvalidDigest) as info:
        parse_digest(text)
    assert str(info.value) == f"invalid digest {text!r}: {why}"
    assert info.value.text == text


def test_an_invalid_digest_quotes_at_most_200_characters_of_it() -> None:
    text = "sha256:" + "a" * 300
    with pytest.raises(InvalidDigest) as info:
        parse_digest(text)
    assert str(info.value) == f"invalid digest {text[:200]!r}: expected 64 lowercase hex digits"
    assert info.value.text == text


async def test_blake2b_256_is_streamed_and_verified_but_no_digest_anyone_names() -> None:
    """PyPI's uploads claim a BLAKE2b of 256 bits: computed and checked on the stream,
    never a digest parsed from ``algorithm:hex`` (ALGORITHMS stays as it is)."""
    data = b"wheel bytes" * 1000
    digests = Digests("blake2b_256")
    expected = Digest("blake2b_256", hashlib.blake2b(data, digest_size=32).hexdigest())
    out = await collect(verified(hashed(source(data[:7], data[7:]), digests), digests, expected))
    assert b"".join(out) == data
    assert len(digests.hexdigest("blake2b_256")) == 64
    wrong, again = Digest("blake2b_256", "0" * 64), Digests("blake2b_256")
    with pytest.raises(DigestMismatch):
        await collect(verified(hashed(source(data), again), again, wrong))
    assert "blake2b_256" not in ALGORITHMS


def test_digests_without_sha256_computes_only_what_it_was_asked() -> None:
    digests = Digests("md5", "blake2b_256", sha256=False)
    digests.update(b"abc")
    assert digests.algorithms == ("md5", "blake2b_256")
    assert digests.hexdigest("md5") == hashlib.md5(b"abc").hexdigest()
    with pytest.raises(KeyError):
        digests.hexdigest("sha256")


async def test_hashed_aside_hashes_every_chunk_in_order_before_the_stream_ends() -> None:
    chunks = [bytes([n]) * (64 * 1024 + n) for n in range(40)]
    data = b"".join(chunks)
    digests = Digests("md5", "blake2b_256", sha256=False)
    expected = Digest("md5", hashlib.md5(data).hexdigest())
    # verified downstream reads the digests once the stage has ended: all must be in.
    out = await collect(verified(hashed_aside(source(*chunks), digests), digests, expected))
    assert out == chunks and digests.size == len(data)
    assert digests.hexdigest("blake2b_256") == hashlib.blake2b(data, digest_size=32).hexdigest()
    wrong, again = Digest("md5", "0" * 32), Digests("md5")
    with pytest.raises(DigestMismatch):
        await collect(verified(hashed_aside(source(*chunks), again), again, wrong))
