"""Which documents are manifests of which kind: ambiguous ones, encodings, empty lists,
and what artifacts and subjects bring with them (checked blobs, kept references, referrers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.integration.test_oci_manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    NAME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    REPOS,
    descriptor,
    digest_of,
    encode,
    image,
    put,
)

ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
CHILD = descriptor(OCI_MANIFEST, b"child")
CONFIG = descriptor(OCI_CONFIG, b"{}")


@pytest.fixture
async def registry(aiohttp_client, make_config: ConfigFactory) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


async def refused(client: TestClient, body: bytes, media_type: str) -> str:
    """Push ``body`` as ``v1``: refused with MANIFEST_INVALID, nothing stored; the message."""
    response = await put(client, "v1", body, media_type)
    assert response.status == 400, await response.text()
    error = (await response.json())["errors"][0]
    assert error["code"] == "MANIFEST_INVALID"
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 404
    return str(error["message"])


# -- ambiguous documents (CVE-2021-41190) ---------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "extra"),
    [
        (OCI_MANIFEST, {"manifests": [CHILD]}),
        (OCI_MANIFEST, {"manifests": []}),
        (DOCKER_MANIFEST, {"manifests": [CHILD]}),
        (OCI_MANIFEST, {"fsLayers": []}),
        # Go decodes keys case-insensitively: a client would read "Manifests" as manifests.
        (OCI_MANIFEST, {"Manifests": [CHILD]}),
    ],
)
async def test_an_image_manifest_that_is_also_an_index(
    registry: TestClient, media_type: str, extra: dict[str, Any]
) -> None:
    body = await image(registry, media_type=media_type)
    doc = {**json.loads(body), **extra}
    message = await refused(registry, encode(doc), media_type)
    assert next(iter(extra)) in message


@pytest.mark.parametrize(
    ("media_type", "extra"),
    [
        (OCI_INDEX, {"config": CONFIG}),
        (OCI_INDEX, {"layers": []}),
        (OCI_INDEX, {"layers": [descriptor(LAYER, b"layer")]}),
        (DOCKER_LIST, {"layers": []}),
        (OCI_INDEX, {"LAYERS": []}),
        (OCI_INDEX, {"Config": CONFIG}),
    ],
)
async def test_an_index_that_is_also_an_image_manifest(
    registry: TestClient, media_type: str, extra: dict[str, Any]
) -> None:
    child = await image(registry)
    assert (await put(registry, digest_of(child), child)).status == 201
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [descriptor(OCI_MANIFEST, child)],
        **extra,
    }
    message = await refused(registry, encode(doc), media_type)
    assert next(iter(extra)) in message


async def test_an_artifact_manifest_with_layers_or_manifests(registry: TestClient) -> None:
    doc = {"mediaType": ARTIFACT, "artifactType": "application/vnd.example", "blobs": []}
    for extra in ({"layers": []}, {"manifests": []}, {"config": CONFIG}):
        await refused(registry, encode({**doc, **extra}), ARTIFACT)


async def test_keys_that_differ_only_in_case_or_repeat(registry: TestClient) -> None:
    body = (await image(registry)).decode()
    # Which mediaType wins depends on the parser: neither is taken.
    twice = body.replace('"schemaVersion"', f'"mediaType": "{OCI_INDEX}", "schemaVersion"', 1)
    assert json.loads(twice)["mediaType"] == OCI_MANIFEST  # to Python and Go, the last
    await refused(registry, twice.encode(), "application/json")
    cased = body.replace('"mediaType"', f'"MediaType": "{OCI_INDEX}", "mediaType"', 1)
    await refused(registry, cased.encode(), OCI_MANIFEST)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
async def test_only_utf_8_without_a_byte_order_mark(registry: TestClient, encoding: str) -> None:
    body = await image(registry)
    message = await refused(registry, body.decode().encode(encoding), OCI_MANIFEST)
    assert "UTF-8" in message
    assert (await put(registry, "v1", body)).status == 201


async def test_docker_manifests_say_their_media_type(registry: TestClient) -> None:
    """Docker's schema 2 and manifest list require mediaType in the document (OCI's only
    recommends it): the Content-Type alone does not make one."""
    doc = json.loads(await image(registry, media_type=DOCKER_MANIFEST))
    del doc["mediaType"]
    assert "mediaType" in await refused(registry, encode(doc), DOCKER_MANIFEST)
    index = {"schemaVersion": 2, "manifests": []}
    assert "mediaType" in await refused(registry, encode(index), DOCKER_LIST)
    # The same document as OCI is fine, and answered as what the client said.
    doc["config"]["mediaType"] = OCI_CONFIG
    pushed = await put(registry, "oci", encode(doc), OCI_MANIFEST)
    assert pushed.status == 201, await pushed.text()
    got = await registry.get(f"/v2/{NAME}/manifests/oci")
    assert got.headers["Content-Type"] == OCI_MANIFEST


async def test_the_document_and_the_content_type_must_agree(registry: TestClient) -> None:
    body = await image(registry)
    for content_type in (OCI_INDEX, DOCKER_MANIFEST, ARTIFACT):
        message = await refused(registry, body, content_type)
        assert content_type in message and OCI_MANIFEST in message
    # A generic Content-Type defers to the document, which is served as it says.
    for content_type in ("application/json", "application/octet-stream", ""):
        pushed = await put(registry, "v1", body, content_type)
        assert pushed.status == 201, await pushed.text()
        got = await registry.get(f"/v2/{NAME}/manifests/v1")
        assert got.headers["Content-Type"] == OCI_MANIFEST
