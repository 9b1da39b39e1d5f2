"""The publish body scanner alone: attachments' data strings streamed out of a JSON body
cut into chunks anywhere, the rest kept as a document; the decoders after it."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.errors import BadRequest, PayloadTooLarge
from app.formats.npm.scanner import BodyScanner, base64_decoded, json_text


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def scan(body: bytes, size: int, limit: int = 1 << 20) -> tuple[dict[str, bytes], Any]:
    scanner = BodyScanner(chunks(body, size), limit)
    found: dict[str, bytes] = {}
    async for attachment in scanner.attachments():
        found[attachment.name] = b"".join([c async for c in base64_decoded(attachment.raw)])
    return found, json.loads(scanner.document)


def body(data: bytes, **extra: Any) -> bytes:
    document = {
        "name": "demo", "versions": {"1.0.0": {"data": "not an attachment", "x": [1, {"y": "}"}]}},
        "_attachments": {"demo-1.0.0.tgz": {"content_type": "a/b", "data": base64.b64encode(data).decode(), "length": len(data)}},
        **extra,
    }  # fmt: skip
    return json.dumps(document).encode()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 4096, 1 << 20])
async def test_data_streams_out_whatever_the_chunking(size: int) -> None:
    data = os.urandom(3000)
    found, document = await scan(body(data, tail={"a": '\\"quoted"'}), size)
    assert found == {"demo-1.0.0.tgz": data}
    assert document["_attachments"]["demo-1.0.0.tgz"] == {
        "content_type": "a/b",
        "data": "",
        "length": 3000,
    }
    assert document["versions"]["1.0.0"]["data"] == "not an attachment"
    assert document["tail"] == {"a": '\\"quoted"'}


@pytest.mark.parametrize("size", [1, 3, 4096])
async def test_json_escapes_inside_base64_are_decoded(size: int) -> None:
    data = os.urandom(999)
    encoded = base64.b64encode(data).decode().replace("/", "\\/").replace("+", "\\u002B")
    raw = ('{"_attachments": {"f.tgz": {"data": "' + encoded + '"}}, "name": "x"}').encode()
    found, document = await scan(raw, size)
    assert found == {"f.tgz": data} and document["name"] == "x"


@pytest.mark.parametrize(
    "data",
    ["abc", "ab!d", "AAAA====", "AA==AAAA", "\\u00e9AAA", "\\\\AAA", "AA\\nA"],
)
async def test_what_is_not_strict_base64_is_refused(data: str) -> None:
    raw = ('{"_attachments": {"f.tgz": {"data": "' + data + '"}}}').encode()
    with pytest.raises(BadRequest):
        await scan(raw, 2)


async def test_the_document_is_bounded_but_not_the_data() -> None:
    data = os.urandom(200_000)
    found, _ = await scan(body(data), 1000, limit=2000)
    assert found["demo-1.0.0.tgz"] == data
    with pytest.raises(PayloadTooLarge):
        await scan(body(b"x", padding="p" * 5000), 1000, limit=2000)


@pytest.mark.parametrize("cut", [10, 60, 150, -3, -1])
async def test_a_truncated_body_fails_or_leaves_an_unparsable_document(cut: int) -> None:
    raw = body(os.urandom(100))[:cut]
    with pytest.raises((BadRequest, ValueError)):
        await scan(raw, 7)


async def test_only_top_level_attachments_are_data() -> None:
    nested = {"x": {"_attachments": {"f": {"data": "AAAA"}}}, "_attachments": {"f": {"data": 5}}}
    found, document = await scan(json.dumps(nested).encode(), 3)
    assert found == {} and document == nested


async def test_a_text_attachment_is_its_json_string() -> None:
    bundle = json.dumps({"mediaType": "x", "s": 'é"\\/'})
    raw = json.dumps({"_attachments": {"a.sigstore": {"data": bundle}}}).encode()
    scanner = BodyScanner(chunks(raw, 5), 1000)
    texts = [await json_text(a.raw, 1000) async for a in scanner.attachments()]
    assert texts == [bundle.encode()]
    scanner = BodyScanner(chunks(raw, 5), 1000)
    with pytest.raises(PayloadTooLarge):
        [await json_text(a.raw, 10) async for a in scanner.attachments()]


async def test_the_whole_body_is_bounded_when_asked() -> None:
    raw = body(os.urandom(3000))
    scanner = BodyScanner(chunks(raw, 100), 1 << 20, max_body=len(raw) - 1)
    with pytest.raises(PayloadTooLarge):
        [b"".join([c async for c in a.raw]) async for a in scanner.attachments()]
    exact = BodyScanner(chunks(raw, 100), 1 << 20, max_body=len(raw))
    assert [b"".join([c async for c in a.raw]) async for a in exact.attachments()] != []
