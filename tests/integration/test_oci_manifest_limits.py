"""What a manifest may weigh: descriptors per manifest, bytes per manifest, name length."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import keys
from app.cas import TAKEOVER_AFTER
from app.config import GcConfig
from app.middleware import FORMATS
from app.server import create_app
from collector import Collector
from tests.integration.conftest import ConfigFactory
from tests.integration.test_oci_manifests import (
    NAME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    error_code,
    image,
    push_blob,
    put,
)

LAYER = "application/vnd.oci.image.layer.v1.tar"
# The limits as the spec and clients know them, written out: a test reading the
# constants would move with them.
MAX_MANIFEST = 4 * 1024 * 1024
MAX_NAME = 255
ARTIFACT = "application/vnd.oci.artifact.manifest.v1+json"
SMALL = "small/team/app"
REPOS = [
    {"name": "docker-local", "format": "oci", "kind": "local"},
    {
        "name": "small",
        "format": "oci",
        "kind": "local",
        "options": {"max_layers": 2, "max_index_entries": 3},
    },
]


@pytest.fixture
async def registry(aiohttp_client, make_config: ConfigFactory) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


def compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


async def layered(client: TestClient, layers: list[bytes], name: str = NAME) -> bytes:
    """An image manifest naming ``layers`` (pushed once each, however often listed)."""
    config = await push_blob(client, b"{}", name)
    distinct = list(set(layers))
    for start in range(0, len(distinct), 50):  # a thousand pushes, some at once
        await asyncio.gather(*(push_blob(client, b, name) for b in distinct[start : start + 50]))
    return compact(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
            "layers": [descriptor(LAYER, layer) for layer in layers],
        }
    )


async def index_of(client: TestClient, count: int, name: str = NAME) -> bytes:
    """An index listing one pushed child ``count`` times."""
    child = await image(client, name)
    assert (await put(client, digest_of(child), child, name=name)).status == 201
    entry = descriptor(OCI_MANIFEST, child)
    return compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry] * count})


async def refused_for(response: Any, option: str, limit: int) -> None:
    assert response.status == 400, await response.text()
    error = (await response.json())["errors"][0]
    assert error["code"] == "MANIFEST_INVALID"
    assert option in error["message"] and str(limit) in error["message"]
    assert error["detail"]["limit"] == limit


async def test_layers_up_to_the_default_cap_even_all_the_same(registry: TestClient) -> None:
    at_cap = await layered(registry, [b"one layer"] * 1000)
    pushed = await put(registry, "cap", at_cap)
    assert pushed.status == 201, await pushed.text()
    got = await registry.get(f"/v2/{NAME}/manifests/cap")
    assert got.status == 200 and await got.read() == at_cap

    over = await layered(registry, [b"one layer"] * 1001)
    await refused_for(await put(registry, "over", over), "max_layers", 1000)
    assert (await registry.get(f"/v2/{NAME}/manifests/over")).status == 404


async def test_distinct_layers_up_to_the_cap(registry: TestClient) -> None:
    layers = [b"layer %d" % i for i in range(1000)]
    body = await layered(registry, layers)
    pushed = await put(registry, "distinct", body)
    assert pushed.status == 201, await pushed.text()
    for layer in (layers[0], layers[-1]):
        got = await registry.get(f"/v2/{NAME}/blobs/{digest_of(layer)}")
        assert got.status == 200 and await got.read() == layer
    # One layer of a thousand missing is still found, and named.
    missing = json.loads(body)
    missing["layers"][500] = descriptor(LAYER, b"never pushed")
    response = await put(registry, "missing", compact(missing))
    assert response.status == 400 and await error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert (await response.json())["errors"][0]["detail"] == {"digest": digest_of(b"never pushed")}


async def test_index_entries_up_to_the_default_cap(registry: TestClient) -> None:
    at_cap = await index_of(registry, 10_000)
    pushed = await put(registry, "cap", at_cap, OCI_INDEX)
    assert pushed.status == 201, await pushed.text()
    got = await registry.get(f"/v2/{NAME}/manifests/cap")
    assert await got.read() == at_cap and got.headers["Content-Type"] == OCI_INDEX

    over = await index_of(registry, 10_001)
    await refused_for(await put(registry, "over", over, OCI_INDEX), "max_index_entries", 10_000)


async def test_caps_are_per_repository_options(registry: TestClient) -> None:
    await refused_for(
        await put(registry, "v1", await layered(registry, [b"a", b"b", b"c"], SMALL), name=SMALL),
        "max_layers",
        2,
    )
    two = await layered(registry, [b"a", b"b"], SMALL)
    assert (await put(registry, "v1", two, name=SMALL)).status == 201
    # An artifact manifest's blobs count as its layers.
    await push_blob(registry, b"c", SMALL)
    artifact = {
        "mediaType": ARTIFACT,
        "artifactType": "application/vnd.example",
        "blobs": [descriptor(LAYER, b) for b in (b"a", b"b", b"c")],
    }
    await refused_for(
        await put(registry, "art", compact(artifact), ARTIFACT, SMALL), "max_layers", 2
    )
    artifact["blobs"] = artifact["blobs"][:2]
    assert (await put(registry, "art", compact(artifact), ARTIFACT, SMALL)).status == 201

    index = await index_of(registry, 4, SMALL)
    await refused_for(await put(registry, "multi", index, OCI_INDEX, SMALL), "max_index_entries", 3)
    index = await index_of(registry, 3, SMALL)
    assert (await put(registry, "multi", index, OCI_INDEX, SMALL)).status == 201


# -- blobs a collector is at --------------------------------------------------------------


async def test_a_layer_marked_by_a_dead_collector_is_taken_back(registry: TestClient) -> None:
    body = await layered(registry, [b"kept", b"marked"])
    metadata = registry.app[keys.METADATA]
    long_ago = time.time() - TAKEOVER_AFTER - 1
    marked, _ = await metadata.mark_orphans(time.time() + 1, (), "", 10, long_ago)
    assert digest_of(b"marked") in [b.digest for b in marked]
    pushed = await asyncio.wait_for(put(registry, "v1", body), 10)
    assert pushed.status == 201, await pushed.text()
    for layer in (b"kept", b"marked"):
        row = await metadata.get_blob(digest_of(layer))
        assert row is not None and row.state == "live"
        got = await registry.get(f"/v2/{NAME}/blobs/{digest_of(layer)}")
        assert await got.read() == layer


async def test_a_layer_being_deleted_is_waited_for(registry: TestClient) -> None:
    """The push waits for the collection; whatever it answers, never a manifest whose
    layer is gone."""
    body = await layered(registry, [b"kept", b"doomed"])
    app = registry.app
    marked, _ = await app[keys.METADATA].mark_orphans(time.time() + 1, (), "", 10, time.time())
    assert digest_of(b"doomed") in [b.digest for b in marked]
    push = asyncio.create_task(put(registry, "v1", body))
    gc = Collector(
        GcConfig(blob_grace=3600),  # finishes the marked blobs, marks nothing new
        app[keys.METADATA],
        app[keys.STORAGE],
        app[FORMATS],
        app[keys.REPOSITORIES],
    )
    report = await gc.run()
    assert not report.errors
    response = await asyncio.wait_for(push, 30)
    if response.status == 201:
        for layer in (b"kept", b"doomed"):
            got = await registry.get(f"/v2/{NAME}/blobs/{digest_of(layer)}")
            assert got.status == 200 and await got.read() == layer
    else:
        assert response.status == 400 and await error_code(response) == "MANIFEST_BLOB_UNKNOWN"
        assert (await registry.get(f"/v2/{NAME}/manifests/v1")).status == 404


# -- bytes and names ------------------------------------------------------------------------


async def padded_to(client: TestClient, size: int) -> bytes:
    """A valid image manifest of exactly ``size`` bytes (padded in an annotation)."""
    doc = json.loads(await image(client))
    doc["annotations"] = {"pad": ""}
    short = size - len(compact(doc))
    doc["annotations"]["pad"] = "x" * short
    body = compact(doc)
    assert len(body) == size
    return body


async def test_the_4_mib_limit_is_exact(registry: TestClient) -> None:
    at_limit = await padded_to(registry, MAX_MANIFEST)
    pushed = await put(registry, "big", at_limit)
    assert pushed.status == 201, await pushed.text()
    got = await registry.get(f"/v2/{NAME}/manifests/big")
    assert await got.read() == at_limit

    over = await padded_to(registry, MAX_MANIFEST + 1)
    response = await put(registry, "over", over)
    assert response.status == 413 and await error_code(response) == "MANIFEST_INVALID"
    assert (await registry.get(f"/v2/{NAME}/manifests/over")).status == 404


async def test_the_name_length_limit_is_exact(registry: TestClient) -> None:
    prefix = "docker-local/"
    longest = prefix + "a" * (MAX_NAME - len(prefix))
    assert len(longest) == MAX_NAME
    pushed = await put(registry, "v1", await image(registry, longest), name=longest)
    assert pushed.status == 201, await pushed.text()
    assert (await registry.get(f"/v2/{longest}/manifests/v1")).status == 200

    too_long = longest + "a"
    for response in (
        await registry.get(f"/v2/{too_long}/tags/list"),
        await registry.post(f"/v2/{too_long}/blobs/uploads/"),
    ):
        assert response.status == 400 and await error_code(response) == "NAME_INVALID"
