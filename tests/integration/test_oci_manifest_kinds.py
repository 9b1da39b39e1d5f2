"""Which documents are manifests of which kind: ambiguous ones, encodings, empty lists,
and what artifacts and subjects bring with them (checked blobs, kept references, referrers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import keys
from app.config import GcConfig
from app.middleware import FORMATS
from app.server import create_app
from collector import Collector
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
    error_code,
    image,
    push_blob,
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


# -- required lists, empty lists, empty blobs ------------------------------------------------


async def test_layers_may_be_empty_but_not_missing(registry: TestClient) -> None:
    """image-spec 1.1: ``layers`` is required, and SHOULD (not MUST) have an entry."""
    doc = json.loads(await image(registry))
    for missing in ({k: v for k, v in doc.items() if k != "layers"}, {**doc, "layers": None}):
        assert "layers" in await refused(registry, encode(missing), OCI_MANIFEST)
    pushed = await put(registry, "empty", encode({**doc, "layers": []}))
    assert pushed.status == 201, await pushed.text()


async def test_an_index_may_list_nothing_but_must_have_the_list(registry: TestClient) -> None:
    """image-spec: ``manifests`` MUST be present; the array MAY be empty."""
    for media_type in (OCI_INDEX, DOCKER_LIST):
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        for missing in (doc, {**doc, "manifests": None}):
            assert "manifests" in await refused(registry, encode(missing), media_type)
        pushed = await put(registry, "empty", encode({**doc, "manifests": []}), media_type)
        assert pushed.status == 201, await pushed.text()


async def test_a_zero_size_layer(registry: TestClient) -> None:
    doc = json.loads(await image(registry))
    await push_blob(registry, b"")
    doc["layers"].append(descriptor(LAYER, b""))
    assert doc["layers"][-1]["size"] == 0
    pushed = await put(registry, "v1", encode(doc))
    assert pushed.status == 201, await pushed.text()
    got = await registry.get(f"/v2/{NAME}/blobs/{digest_of(b'')}")
    assert got.status == 200 and await got.read() == b""


# -- artifacts' blobs and subjects -----------------------------------------------------------


def collector(client: TestClient) -> Collector:
    app = client.app
    return Collector(
        GcConfig(blob_grace=0),
        app[keys.METADATA],
        app[keys.STORAGE],
        app[FORMATS],
        app[keys.REPOSITORIES],
    )


async def test_an_artifacts_blobs_are_checked_kept_and_its_subject_listed(
    registry: TestClient,
) -> None:
    subject = await image(registry)
    assert (await put(registry, "v1", subject)).status == 201
    signature, payload = b"signature bytes", b"payload bytes"
    doc = {
        "mediaType": ARTIFACT,
        "artifactType": "application/vnd.example.signature",
        "blobs": [
            descriptor("application/octet-stream", signature),
            descriptor("application/octet-stream", payload),
        ],
        "subject": descriptor(OCI_MANIFEST, subject),
    }
    body = encode(doc)
    await push_blob(registry, signature)
    unknown = await put(registry, digest_of(body), body, ARTIFACT)
    assert unknown.status == 400 and await error_code(unknown) == "MANIFEST_BLOB_UNKNOWN"
    assert (await unknown.json())["errors"][0]["detail"] == {"digest": digest_of(payload)}

    await push_blob(registry, payload)
    pushed = await put(registry, digest_of(body), body, ARTIFACT)
    assert pushed.status == 201, await pushed.text()
    assert pushed.headers["OCI-Subject"] == digest_of(subject)

    await push_blob(registry, b"orphan")  # the collection does delete what nothing names
    report = await collector(registry).run()
    assert not report.errors
    assert (await registry.get(f"/v2/{NAME}/blobs/{digest_of(b'orphan')}")).status == 404
    for blob in (signature, payload):
        got = await registry.get(f"/v2/{NAME}/blobs/{digest_of(blob)}")
        assert got.status == 200 and await got.read() == blob

    listed = await registry.get(f"/v2/{NAME}/referrers/{digest_of(subject)}")
    assert (await listed.json())["manifests"] == [
        {
            "mediaType": ARTIFACT,
            "digest": digest_of(body),
            "size": len(body),
            "artifactType": "application/vnd.example.signature",
        }
    ]


async def test_an_index_with_a_subject_is_a_referrer(registry: TestClient) -> None:
    subject, child = await image(registry, seed=b"s"), await image(registry, seed=b"c")
    for body in (subject, child):
        assert (await put(registry, digest_of(body), body)).status == 201
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": "application/vnd.example.bundle",
            "manifests": [descriptor(OCI_MANIFEST, child)],
            "subject": descriptor(OCI_MANIFEST, subject),
        }
    )
    pushed = await put(registry, digest_of(index), index, OCI_INDEX)
    assert pushed.status == 201, await pushed.text()
    assert pushed.headers["OCI-Subject"] == digest_of(subject)
    listed = await registry.get(f"/v2/{NAME}/referrers/{digest_of(subject)}")
    assert (await listed.json())["manifests"] == [
        {
            "mediaType": OCI_INDEX,
            "digest": digest_of(index),
            "size": len(index),
            "artifactType": "application/vnd.example.bundle",
        }
    ]
