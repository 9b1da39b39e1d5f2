"""Bad uploads to a PyPI local repository, in both shapes: each is a 4xx in the shape
twine shows (the reason in the status line, the text in the body), and nothing of it
is recorded: no file row, no page, and where the bytes could be refused as they
streamed, no blob either."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import keys
from app.auth.manage import create_principal
from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.pypi_dists import Upload, metadata_text, sdist, sha256, upload, wheel, wheel_name

REPO = "/repository/pypi-local"
REPOS = [{"name": "pypi-local", "format": "pypi", "kind": "local"}]


@pytest.fixture
async def client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient:
    config = make_config(repositories=REPOS, server={"max_body_size": "4MiB"})
    return await aiohttp_client(create_app(config))


async def nothing_stored(client: TestClient, signed_in: bool = True) -> None:
    app: web.Application = client.app  # type: ignore[assignment]
    db = app[keys.METADATA].db
    assert await db.fetchval("SELECT COUNT(*) FROM pypi_files") == 0
    assert await db.fetchval("SELECT COUNT(*) FROM pypi_projects") == 0
    if signed_in:
        assert (await client.get(f"{REPO}/simple/demo-pkg/")).status == 404


async def blob_stored(client: TestClient, data: bytes) -> bool:
    app: web.Application = client.app  # type: ignore[assignment]
    return await app[keys.METADATA].get_blob(f"sha256:{sha256(data)}") is not None


async def refused(client: TestClient, form: Upload, status: int = 400, says: str = "") -> str:
    response = await client.post(f"{REPO}/", data=form.form())
    body = await response.text()
    assert response.status == status, (response.reason, body)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.reason == body.splitlines()[0][:300]
    assert says.lower() in body.lower(), body
    await nothing_stored(client)
    return body


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("field", ["sha256_digest", "md5_digest", "blake2_256_digest"])
async def test_a_wrong_digest_stores_nothing(client: TestClient, field: str) -> None:
    data = wheel()
    wrong = {
        "sha256_digest": sha256(b"other"),
        "md5_digest": hashlib.md5(b"other").hexdigest(),
        "blake2_256_digest": hashlib.blake2b(b"other", digest_size=32).hexdigest(),
    }[field]
    await refused(client, upload(data, **{field: wrong}), says="digest")
    assert not await blob_stored(client, data)  # held back until every digest matched


async def test_a_malformed_digest_is_refused(client: TestClient) -> None:
    await refused(client, upload(wheel(), sha256_digest="xyz"), says="sha256")
    await refused(client, upload(wheel(), md5_digest="!!"), says="md5")
    md5 = base64.urlsafe_b64encode(hashlib.md5(b"other").digest()).rstrip(b"=").decode()
    await refused(client, upload(wheel(), md5_digest=md5), says="digest")


async def test_a_filename_not_of_the_metadata_is_refused(client: TestClient) -> None:
    data = wheel()
    await refused(client, upload(data, name="other-pkg"), says="not a file of the project")
    await refused(client, upload(data, version="2.0"), says="not a file of version")
    await refused(client, upload(data, filetype="sdist"), says="not a 'sdist'")
    await refused(client, upload(data, version="not a version!"), says="version")
    # The form came first: refused before a byte of the file was stored.
    assert not await blob_stored(client, data)
    await refused(client, upload(data, name=None), says="name")


@pytest.mark.parametrize(
    "filename",
    [
        "../demo_pkg-1.0.tar.gz",
        "..%2fdemo_pkg-1.0.tar.gz",
        "x/../demo_pkg-1.0.tar.gz",
        "demo_pkg-1.0.tar.bz2",
        "demo_pkg\\..\\demo_pkg-1.0.tar.gz",
        "demo_pkg.tar.gz",
        "-demo-1.0.tar.gz",
    ],
)
async def test_an_sdist_filename_that_is_none_is_refused(client: TestClient, filename: str) -> None:
    form = upload(sdist(), filename)
    response = await client.post(f"{REPO}/", data=form.form())
    assert 400 <= response.status < 500, response.reason
    await nothing_stored(client)


async def test_control_characters_in_the_filename_are_refused(client: TestClient) -> None:
    """Sent by hand: aiohttp's client would not put them in a header."""
    boundary = "b0undary"
    fields = {
        "name": "demo-pkg",
        "version": "1.0",
        ":action": "file_upload",
        "protocol_version": "1",
    }
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="content";'
        f' filename="demo_pkg-1.0\x01.tar.gz"\r\n\r\n'.encode()
        + sdist()
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post(f"{REPO}/", data=body, headers=headers)
    assert response.status == 400  # aiohttp's reader refuses the part's header itself
    await nothing_stored(client)


async def test_a_wheel_that_is_no_zip_or_lacks_its_metadata_is_refused(client: TestClient) -> None:
    await refused(client, upload(b"not a zip at all" * 100), says="not a zip")
    await refused(client, upload(wheel(without_metadata=True)), says="METADATA")
    lying = wheel(metadata=metadata_text("other", "1.0"))
    await refused(client, upload(lying), says="METADATA")
    other_folder = _zip({"other_pkg-1.0.dist-info/METADATA": metadata_text("other-pkg", "1.0")})
    await refused(client, upload(other_folder), says="METADATA")


async def test_a_zip_bomb_for_metadata_is_refused_without_inflating_it(client: TestClient) -> None:
    bomb = _zip(
        {
            "demo_pkg-1.0.dist-info/METADATA": metadata_text("demo_pkg", "1.0")
            + bytes(64 * 1024 * 1024)
        }
    )
    assert len(bomb) < 1024 * 1024
    await refused(client, upload(bomb), says="METADATA over")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("summary", "line one\nline two", "control characters"),
        ("summary", "bell\x07", "control characters"),
        ("description", "nul\x00", "control characters"),
        ("summary", "x" * (1024 * 1024), "over"),
        ("description", "x" * (1024 * 1024), "over"),
        ("requires_python", ">=3.8,<<4", "requires_python"),
    ],
)
async def test_bad_metadata_values_are_refused(
    client: TestClient, field: str, value: str, says: str
) -> None:
    await refused(client, upload(wheel(), **{field: value}), says=says)


async def test_too_many_fields_or_bytes_in_fields_are_refused(client: TestClient) -> None:
    many = upload(wheel())
    many.extra = [("classifiers", "Typing :: Typed")] * 1001
    await refused(client, many, says="more than")
    heavy = upload(wheel())
    heavy.extra = [(f"field{i}", "x" * 60000) for i in range(20)]
    await refused(client, heavy, says="in all")


async def test_an_upload_without_content_or_form_is_refused(client: TestClient) -> None:
    await refused(client, Upload(wheel_name(), None), says="no file")
    response = await client.post(f"{REPO}/", data=b"just bytes")
    assert response.status == 400 and "multipart" in response.reason
    two = upload(wheel())
    form = two.form()
    form.add_field("content", b"again", filename=wheel_name())
    response = await client.post(f"{REPO}/", data=form)
    assert response.status == 400 and "one file" in response.reason
    await nothing_stored(client)


async def test_an_oversized_body_is_a_413(client: TestClient) -> None:
    big = wheel(extra={"demo_pkg/data.bin": os.urandom(5 * 1024 * 1024)})
    response = await client.post(f"{REPO}/", data=upload(big).form())
    assert response.status == 413, response.reason
    await nothing_stored(client)

    # No length up front: cut as it streams.
    payload = upload(big).form()()
    body = await payload.as_bytes()

    async def chunked() -> AsyncIterator[bytes]:
        for at in range(0, len(body), 65536):
            yield body[at : at + 65536]

    headers = {"Content-Type": payload.content_type}
    response = await client.post(f"{REPO}/", data=chunked(), headers=headers)
    assert response.status == 413, response.reason
    await nothing_stored(client)
    assert not await blob_stored(client, big)


async def test_uploads_need_credentials_and_write(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    app = create_app(make_config(repositories=REPOS))
    anonymous = await aiohttp_client(app, anonymous=True)
    response = await anonymous.post(f"{REPO}/", data=upload(wheel()).form())
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    await nothing_stored(anonymous, signed_in=False)

    records = app[keys.AUTH].records
    await create_principal(records, "reader", password="reader-password")
    await records.grant("user:reader", "pypi-local", ["read"])
    basic = base64.b64encode(b"reader:reader-password").decode()
    response = await anonymous.post(
        f"{REPO}/", data=upload(wheel()).form(), headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status == 403
    await nothing_stored(anonymous, signed_in=False)
