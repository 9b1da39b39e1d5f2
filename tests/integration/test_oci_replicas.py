"""No session affinity: every step of a push may land on a different replica.

Two application instances share one database, one blob store and one cache, as
replicas behind a load balancer do (PostgreSQL + S3 + Redis; or, in the embedded
shape, one SQLite file and one filesystem root, as worker processes do).
"""

from __future__ import annotations

import os

import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.oci_docs import digest_of, image_manifest

REPOS = [{"name": "docker-local", "format": "oci", "kind": "local"}]
NAME = "docker-local/team/app"


@pytest.fixture
async def replicas(aiohttp_client, make_config: ConfigFactory) -> tuple[TestClient, TestClient]:  # type: ignore[no-untyped-def]
    config = make_config(repositories=REPOS)
    return await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))


async def test_post_patch_put_on_alternating_replicas(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    data = os.urandom(6 * 1024 * 1024 + 11)
    started = await a.post(f"/v2/{NAME}/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"]

    patched = await b.patch(location, data=data)
    assert patched.status == 202, await patched.text()
    assert (await a.get(location)).headers["Range"] == f"0-{len(data) - 1}"

    done = await a.put(f"{location}?digest={digest_of(data)}")
    assert done.status == 201, await done.text()
    for replica in (a, b):
        response = await replica.get(f"/v2/{NAME}/blobs/{digest_of(data)}")
        assert response.status == 200
        assert await response.read() == data


async def test_chunks_spread_over_replicas_with_a_trailing_body(
    replicas: tuple[TestClient, TestClient],
) -> None:
    chunk = 1024 * 1024
    data = os.urandom(4 * chunk + 99)
    clients = [*replicas]
    location = (await clients[0].post(f"/v2/{NAME}/blobs/uploads/")).headers["Location"]
    offset = 0
    for index in range(4):
        piece = data[offset : offset + chunk]
        response = await clients[(index + 1) % 2].patch(
            location, data=piece, headers={"Content-Range": f"{offset}-{offset + chunk - 1}"}
        )
        assert response.status == 202, await response.text()
        offset += chunk
    # A replay of an old chunk on the other replica is out of order, not corruption.
    stale = await clients[0].patch(
        location, data=data[:chunk], headers={"Content-Range": f"0-{chunk - 1}"}
    )
    assert stale.status == 416 and stale.headers["Range"] == f"0-{offset - 1}"
    done = await clients[1].put(f"{location}?digest={digest_of(data)}", data=data[offset:])
    assert done.status == 201, await done.text()
    for replica in clients:
        assert await (await replica.get(f"/v2/{NAME}/blobs/{digest_of(data)}")).read() == data


async def test_cancel_on_one_replica_is_seen_by_the_other(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    location = (await a.post(f"/v2/{NAME}/blobs/uploads/")).headers["Location"]
    await a.patch(location, data=b"some bytes")
    assert (await b.delete(location)).status == 204
    gone = await a.patch(location, data=b"more")
    assert gone.status == 404
    assert (await gone.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


async def test_config_and_manifest_pushes_split_across_replicas(
    replicas: tuple[TestClient, TestClient],
) -> None:
    import json

    a, b = replicas
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    layer = os.urandom(300_000)
    for blob, (first, second) in ((config, (a, b)), (layer, (b, a))):
        location = (await first.post(f"/v2/{NAME}/blobs/uploads/")).headers["Location"]
        assert (await second.patch(location, data=blob)).status == 202
        assert (await first.put(f"{location}?digest={digest_of(blob)}")).status == 201
    manifest = image_manifest(config, [layer])
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    assert (await a.put(f"/v2/{NAME}/manifests/1.0", data=manifest, headers=headers)).status == 201
    assert (await b.put(f"/v2/{NAME}/manifests/2.0", data=manifest, headers=headers)).status == 201
    for replica in (a, b):
        pulled = await replica.get(f"/v2/{NAME}/manifests/1.0")
        assert await pulled.read() == manifest
        assert pulled.headers["Docker-Content-Digest"] == digest_of(manifest)
        tags = await (await replica.get(f"/v2/{NAME}/tags/list")).json()
        assert tags == {"name": NAME, "tags": ["1.0", "2.0"]}
