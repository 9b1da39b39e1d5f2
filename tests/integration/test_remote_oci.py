"""OCI remote repositories: skopeo pulls through artifactapi from a registry that
wants the token flow; digests are verified; misses and faults take the spec's shape."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.server import create_app
from tests.e2e import oci_layout
from tests.e2e.harness import require_tool
from tests.integration.conftest import ConfigFactory, RemoteFactory
from tests.upstreams import RawFile, RawUpstream, Registry

UPSTREAM_NAME = "library/app"  # as Docker Hub spells an official image


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    layout = oci_layout.build(tmp_path / "upstream", "1.0", [300_000, 50_000])
    return Registry(layout.path, UPSTREAM_NAME, "1.0")


@pytest.fixture
async def client(
    aiohttp_client,  # type: ignore[no-untyped-def]
    aiohttp_server,  # type: ignore[no-untyped-def]
    make_config: ConfigFactory,
    registry: Registry,
) -> TestClient:
    upstream: TestServer = await aiohttp_server(registry.app())
    hub: dict[str, Any] = {
        "name": "hub",
        "format": "oci",
        "kind": "remote",
        "anonymous_read": True,  # skopeo pulls without logging in
        "options": {
            "upstream": str(upstream.make_url("")).rstrip("/"),
            "username": registry.username,
            "password": registry.password,
            "library_prefix": True,
            "retries": 0,
        },
    }
    return await aiohttp_client(create_app(make_config(repositories=[hub])))


async def skopeo(tmp_path: Path, *args: str) -> str:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    result = await asyncio.to_thread(
        subprocess.run,
        [require_tool("skopeo"), "--policy", str(policy), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_skopeo_pulls_through_the_cache_once(
    client: TestClient, registry: Registry, tmp_path: Path
) -> None:
    host = f"{client.host}:{client.port}"
    source = f"docker://{host}/hub/app:1.0"  # "app" is library/app upstream
    for round_ in ("first", "second"):
        out = tmp_path / round_
        await skopeo(tmp_path, "copy", "--src-tls-verify=false", source, f"oci:{out}:1.0")
        digest = oci_layout.manifest_digest(out, "1.0")
        assert digest == oci_layout.manifest_digest(registry.layout, "1.0")
        manifest = json.loads(oci_layout.blob(out, digest))
        for descriptor in [manifest["config"], *manifest["layers"]]:
            got = oci_layout.blob(out, descriptor["digest"])
            assert got == oci_layout.blob(registry.layout, descriptor["digest"])
    blobs = [r for r in registry.requests if "/blobs/" in r]
    assert blobs and all(registry.requests[r] <= 2 for r in blobs)  # 401 then the fetch
    fetched = [r for r in blobs if registry.requests[r] == 2]
    assert len(fetched) == 3  # config and two layers, each fetched once
    tags = await skopeo(tmp_path, "inspect", "--tls-verify=false", source)
    assert json.loads(tags)["Digest"] == oci_layout.manifest_digest(registry.layout, "1.0")


async def test_blobs_and_manifests_by_digest_hit_and_head(
    client: TestClient, registry: Registry
) -> None:
    digest = oci_layout.manifest_digest(registry.layout, "1.0")
    manifest = await client.get(f"/v2/hub/app/manifests/{digest}")
    assert manifest.status == 200 and manifest.headers["X-Cache"] == "MISS"
    assert manifest.headers["Docker-Content-Digest"] == digest
    assert manifest.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    body = await manifest.read()
    layer = json.loads(body)["layers"][0]["digest"]
    head = await client.head(f"/v2/hub/app/blobs/{layer}")
    assert head.status == 200 and head.headers["Docker-Content-Digest"] == layer
    assert head.headers["Content-Length"] == str(len(oci_layout.blob(registry.layout, layer)))
    hit = await client.get(f"/v2/hub/app/blobs/{layer}")
    assert hit.headers["X-Cache"] == "HIT"
    assert await hit.read() == oci_layout.blob(registry.layout, layer)
    by_tag = await client.get("/v2/hub/app/manifests/1.0")
    assert await by_tag.read() == body and by_tag.headers["Docker-Content-Digest"] == digest


async def test_the_digest_answered_is_in_the_algorithm_the_client_used(
    client: TestClient, registry: Registry
) -> None:
    sha256 = oci_layout.manifest_digest(registry.layout, "1.0")
    body = oci_layout.blob(registry.layout, sha256)
    sha512 = "sha512:" + hashlib.sha512(body).hexdigest()
    for ref, digest in ((sha512, sha512), ("1.0", sha256), (sha256, sha256)):
        for method, cache in (("HEAD", "MISS"), ("GET", "HIT"), ("HEAD", "HIT")):
            got = await client.request(method, f"/v2/hub/app/manifests/{ref}")
            assert got.status == 200, (method, ref)
            assert got.headers["Docker-Content-Digest"] == digest, (method, ref)
            assert got.headers["X-Cache"] == cache, (method, ref)
            assert got.headers["Content-Length"] == str(len(body))
            assert await got.read() == (body if method == "GET" else b"")


async def test_a_blob_whose_bytes_do_not_match_its_digest_is_never_cached(
    client: TestClient, registry: Registry
) -> None:
    digest = oci_layout.manifest_digest(registry.layout, "1.0")
    layer = json.loads(oci_layout.blob(registry.layout, digest))["layers"][0]["digest"]
    registry.corrupt.add(layer)
    response = await client.get(f"/v2/hub/app/blobs/{layer}")
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()  # cut short: the client never holds the whole wrong blob
    head = await client.head(f"/v2/hub/app/blobs/{layer}")
    assert head.status == 502  # fetched again, rejected again, still not cached
    registry.corrupt.clear()
    good = await client.get(f"/v2/hub/app/blobs/{layer}")
    assert await good.read() == oci_layout.blob(registry.layout, layer)


async def test_unknown_names_and_pushes_take_the_spec_shape(client: TestClient) -> None:
    missing = await client.get("/v2/hub/app/manifests/2.0")
    assert missing.status == 404
    assert (await missing.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    blob = await client.get("/v2/hub/app/blobs/sha256:" + "0" * 64)
    assert (await blob.json())["errors"][0]["code"] == "BLOB_UNKNOWN"
    push = await client.post("/v2/hub/app/blobs/uploads/")
    assert push.status == 405 and (await push.json())["errors"][0]["code"] == "UNSUPPORTED"
    bad = await client.get("/v2/hub/app/blobs/sha256:xyz")
    assert bad.status == 400 and (await bad.json())["errors"][0]["code"] == "DIGEST_INVALID"


@pytest.mark.parametrize("reference", [".INVALID_MANIFEST_NAME", "-bad", "sha256:xyz"])
async def test_a_reference_no_manifest_can_have_is_unknown_without_asking_upstream(
    client: TestClient, registry: Registry, reference: str
) -> None:
    got = await client.get(f"/v2/hub/app/manifests/{reference}")
    assert got.status == 404
    assert (await got.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert (await client.head(f"/v2/hub/app/manifests/{reference}")).status == 404
    assert not [r for r in registry.requests if "manifests" in r]


async def test_a_blob_without_length_is_cached_as_its_digest_proves_it(
    remote_service: RemoteFactory,
) -> None:
    """An upstream that ends bodies by closing the connection: a blob is asked for by
    digest, which proves it whole (cached) or cut short (not cached)."""
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    raw = RawUpstream()
    await raw.start()
    try:
        path = f"v2/app/blobs/{digest}"
        raw.files[path] = RawFile(data, "cut", cut_at=100_000)
        client = await remote_service("hub", "oci", raw.url)
        cut = await client.get(f"/v2/hub/app/blobs/{digest}")
        with pytest.raises(aiohttp.ClientPayloadError):
            await cut.read()
        raw.files[path] = RawFile(data, "close")
        for expected in ("MISS", "HIT"):
            blob = await client.get(f"/v2/hub/app/blobs/{digest}")
            assert blob.status == 200 and blob.headers["X-Cache"] == expected
            assert await blob.read() == data
        assert raw.requests[path] == 2
    finally:
        await raw.close()
