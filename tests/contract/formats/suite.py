"""The format contract: what every format does, whatever its protocol, in both shapes.

Its routes answer; its errors take its own shape on 400, 404, 405, 413, on a
handler's bug (500) and on a backend gone away (503); what it stores is found by
the collector's reference query, so a collection that deletes every unreferenced
blob at once (``blob_grace: 0``) keeps it, and it is still served afterwards.

A format's file, ``test_<format>.py``, declares its ``CASE`` and takes these tests
with ``from tests.contract.formats.suite import *``; the fixtures are in this
folder's ``conftest.py``, one service per format and shape.
"""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient

from app import keys
from app.config import Config
from app.layout import blob_key
from app.middleware import FORMATS
from tests.contract.formats.case import Answer, Call, ContractCase
from tests.contract.formats.service import BUG, Stored, ask, serving

__all__ = [
    "test_a_bug_is_a_500_in_the_format_shape",
    "test_a_collection_keeps_what_is_stored",
    "test_a_database_gone_is_a_503_in_the_format_shape",
    "test_errors_take_the_format_shape",
    "test_other_errors_take_the_format_shape",
    "test_routes_answer_and_store",
    "test_what_is_stored_is_referenced",
]

CLIENT_ERRORS = (400, 404, 405, 413)


def answered(call: Call, answer: Answer) -> None:
    what = f"{call.method} {call.path[:120]}"
    assert answer.status == call.status, (what, answer.status, answer.body[:500])
    if call.answer is not None:
        assert answer.body == call.answer, (what, answer.body[:500])
    for name, value in call.answer_headers.items():
        assert answer.headers.get(name) == value, (what, name, answer.headers)


def shaped(case: ContractCase, answer: Answer) -> None:
    case.shape(answer)
    assert answer.headers.get("X-Request-ID"), answer.headers  # every answer has its id


def references(service: TestClient) -> tuple[str, ...]:
    """What the collector asks of every blob, as it builds it in a run."""
    formats = service.app[FORMATS]
    return tuple(ref for fmt in formats.values() for ref in fmt.blob_references)


@pytest.mark.asyncio(loop_scope="module")
async def test_routes_answer_and_store(stored: Stored) -> None:
    for call, answer in stored.answers:
        answered(call, answer)
    assert stored.blobs, "the case's stores left no blob: nothing for the contract to keep"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("status", CLIENT_ERRORS)
async def test_errors_take_the_format_shape(
    service: TestClient, case: ContractCase, status: int
) -> None:
    call = case.errors.get(status)
    assert call is not None, f"the {case.format} case provokes no {status}"
    assert call.status == status
    answer = await ask(service, call)
    answered(call, answer)
    shaped(case, answer)
    if status == 405:
        assert answer.headers.get("Allow"), answer.headers  # RFC 9110: a 405 names them


@pytest.mark.asyncio(loop_scope="module")
async def test_other_errors_take_the_format_shape(service: TestClient, case: ContractCase) -> None:
    for call in case.other_errors:
        answer = await ask(service, call)
        answered(call, answer)
        shaped(case, answer)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_bug_is_a_500_in_the_format_shape(service: TestClient, case: ContractCase) -> None:
    answer = await ask(service, case.errors[404], **{BUG: "1"})
    assert answer.status == 500, answer
    shaped(case, answer)
    assert b"a handler's bug" not in answer.body  # what went wrong stays in the log


@pytest.mark.asyncio(loop_scope="module")
async def test_a_database_gone_is_a_503_in_the_format_shape(
    config: Config, case: ContractCase
) -> None:
    """A lookup while the database has gone away under a running replica (a service
    of its own, on the same backends: the shared one keeps its database)."""
    client = await serving(config)
    try:
        await client.app[keys.METADATA].db.close()
        answer = await ask(client, case.errors[404])
        assert answer.status == 503, answer
        shaped(case, answer)
    finally:
        await client.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_what_is_stored_is_referenced(service: TestClient, stored: Stored) -> None:
    metadata = service.app[keys.METADATA]
    digests = {row.digest for row in stored.blobs}
    assert await metadata.referenced(stored.blobs, references(service)) == digests
    orphans = await metadata.orphaned_blobs(time.time() + 3600, references(service))
    assert not digests & {row.digest for row in orphans}


@pytest.mark.asyncio(loop_scope="module")
async def test_a_collection_keeps_what_is_stored(
    service: TestClient, stored: Stored, case: ContractCase
) -> None:
    app = service.app
    report = await app[keys.COLLECTOR].run()
    assert report.skipped is None and report.error_count == 0, report.to_dict()
    for row in stored.blobs:
        kept = await app[keys.METADATA].get_blob(row.digest)
        assert kept is not None and kept.state == "live", (row, kept)
        assert await app[keys.STORAGE].stat(blob_key(row.digest)) is not None, row
    for call in case.serves:
        answered(call, await ask(service, call))
