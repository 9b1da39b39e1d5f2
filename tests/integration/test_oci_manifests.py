"""OCI manifests, tags, the catalog and referrers, end to end in both shapes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from tests.integration.conftest import ConfigFactory

REPOS = [
    {"name": "docker-local", "format": "oci", "kind": "local"},
    # "docker" sorts after "docker-local/…" as a full name ('-' < '/'): the catalog must agree.
    {"name": "docker", "format": "oci", "kind": "local"},
    {"name": "frozen", "format": "oci", "kind": "local", "options": {"delete": False}},
    {"name": "files", "format": "generic", "kind": "local"},
]
NAME = "docker-local/team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY = b"{}"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1).encode()  # indented: bytes must be served as pushed


@pytest.fixture
async def registry(aiohttp_client, make_config: ConfigFactory) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


async def push_blob(client: TestClient, data: bytes, name: str = NAME) -> str:
    response = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest_of(data)}", data=data)
    assert response.status == 201, await response.text()
    return digest_of(data)


async def image(
    client: TestClient,
    name: str = NAME,
    seed: bytes = b"",
    media_type: str = OCI_MANIFEST,
    **extra: Any,
) -> bytes:
    """Push a config and a layer; return the bytes of a manifest naming them."""
    config, layer = b'{"architecture": "amd64"' + seed + b"}", b"layer" + seed
    await push_blob(client, config, name)
    await push_blob(client, layer, name)
    config_type = (
        OCI_CONFIG
        if media_type == OCI_MANIFEST
        else "application/vnd.docker.container.image.v1+json"
    )
    layer_type = "application/vnd.oci.image.layer.v1.tar+gzip"
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type, config),
        "layers": [descriptor(layer_type, layer)],
        **extra,
    }
    return encode(doc)


async def put(
    client: TestClient, ref: str, body: bytes, media_type: str = OCI_MANIFEST, name: str = NAME
) -> Any:
    return await client.put(
        f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type}
    )


async def error_code(response: Any) -> str:
    return str((await response.json())["errors"][0]["code"])


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
async def test_push_then_pull_by_tag_and_digest(registry: TestClient, media_type: str) -> None:
    body = await image(registry, media_type=media_type)
    pushed = await put(registry, "v1", body, media_type)
    assert pushed.status == 201, await pushed.text()
    digest = digest_of(body)
    assert pushed.headers["Docker-Content-Digest"] == digest
    assert pushed.headers["Location"] == f"/v2/{NAME}/manifests/{digest}"
    assert "OCI-Subject" not in pushed.headers
    seen = []
    for ref in ("v1", digest):
        got = await registry.get(f"/v2/{NAME}/manifests/{ref}", headers={"Accept": media_type})
        assert got.status == 200
        assert await got.read() == body
        head = await registry.head(f"/v2/{NAME}/manifests/{ref}")
        assert head.status == 200 and await head.read() == b""
        for response in (got, head):
            assert response.headers["Content-Type"] == media_type
            assert response.headers["Docker-Content-Digest"] == digest
            assert response.headers["Content-Length"] == str(len(body))
            assert response.headers["ETag"] == f'"{digest}"'
            assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        seen.append({k: got.headers[k] for k in ("Content-Type", "Docker-Content-Digest", "ETag")})
    assert seen[0] == seen[1]


async def test_content_type_falls_back_to_media_type_and_accept_is_lenient(
    registry: TestClient,
) -> None:
    body = await image(registry)
    pushed = await put(registry, "v1", body, "application/json")
    assert pushed.status == 201, await pushed.text()
    # A client listing only Docker types still gets the OCI manifest it asked for by tag.
    got = await registry.get(f"/v2/{NAME}/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert got.status == 200 and await got.read() == body
    assert got.headers["Content-Type"] == OCI_MANIFEST
    # Only schema1 is refused: nothing we store is schema1.
    schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    refused = await registry.get(f"/v2/{NAME}/manifests/v1", headers={"Accept": schema1})
    assert refused.status == 404 and await error_code(refused) == "MANIFEST_UNKNOWN"


async def test_retag_moves_the_tag(registry: TestClient) -> None:
    first, second = await image(registry, seed=b"1"), await image(registry, seed=b"2")
    assert (await put(registry, "latest", first)).status == 201
    assert (await put(registry, "latest", second)).status == 201
    got = await registry.get(f"/v2/{NAME}/manifests/latest")
    assert await got.read() == second
    assert got.headers["Docker-Content-Digest"] == digest_of(second)
    # The old manifest is still there by digest.
    old = await registry.get(f"/v2/{NAME}/manifests/{digest_of(first)}")
    assert old.status == 200 and await old.read() == first


async def test_put_by_digest_and_sha512(registry: TestClient) -> None:
    body = await image(registry)
    by_digest = await put(registry, digest_of(body), body)
    assert by_digest.status == 201
    sha512 = "sha512:" + hashlib.sha512(body).hexdigest()
    pushed = await put(registry, sha512, body)
    assert pushed.status == 201 and pushed.headers["Docker-Content-Digest"] == sha512
    got = await registry.get(f"/v2/{NAME}/manifests/{sha512}")
    assert await got.read() == body and got.headers["Docker-Content-Digest"] == sha512
    # Pushed by digest only: no tags.
    tags = await registry.get(f"/v2/{NAME}/tags/list")
    assert (await tags.json())["tags"] == []


def sha512_of(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


async def tags_of(client: TestClient, name: str = NAME) -> list[str]:
    response = await client.get(f"/v2/{name}/tags/list")
    return list((await response.json())["tags"]) if response.status == 200 else []


async def test_a_push_by_digest_sets_every_tag_of_its_query(registry: TestClient) -> None:
    body = await image(registry)
    query = "tag=1.2.3&tag=1.2&tag=latest&tag=1.2"  # a repeat is one tag
    pushed = await put(registry, f"{digest_of(body)}?{query}", body)
    assert pushed.status == 201, await pushed.text()
    assert pushed.headers.getall("OCI-Tag") == ["1.2.3", "1.2", "latest"]
    assert pushed.headers["Docker-Content-Digest"] == digest_of(body)
    assert await tags_of(registry) == ["1.2", "1.2.3", "latest"]
    for tag in ("1.2.3", "1.2", "latest"):
        got = await registry.get(f"/v2/{NAME}/manifests/{tag}")
        assert await got.read() == body and got.headers["Docker-Content-Digest"] == digest_of(body)
    # Moved together by the next push of another manifest.
    other = await image(registry, seed=b"2")
    moved = await put(registry, f"{digest_of(other)}?tag=latest&tag=1.2", other)
    assert moved.headers.getall("OCI-Tag") == ["latest", "1.2"]
    got = await registry.get(f"/v2/{NAME}/manifests/latest")
    assert got.headers["Docker-Content-Digest"] == digest_of(other)
    got = await registry.get(f"/v2/{NAME}/manifests/1.2.3")
    assert got.headers["Docker-Content-Digest"] == digest_of(body)
    # Without ?tag= a push by digest tags nothing, and says no OCI-Tag.
    third = await image(registry, seed=b"3")
    untagged = await put(registry, digest_of(third), third)
    assert untagged.status == 201 and "OCI-Tag" not in untagged.headers


@pytest.mark.parametrize(
    "query", ["tag=ok&tag=.bad", "tag=", "tag=-x", f"tag={'t' * 129}", "tag=a&tag=b%3Ac"]
)
async def test_an_invalid_query_tag_stores_nothing(registry: TestClient, query: str) -> None:
    body = await image(registry)
    refused = await put(registry, f"{digest_of(body)}?{query}", body)
    assert refused.status == 400 and await error_code(refused) == "MANIFEST_INVALID"
    assert (await registry.head(f"/v2/{NAME}/manifests/{digest_of(body)}")).status == 404
    assert await tags_of(registry) == []


async def test_too_many_query_tags_are_414(registry: TestClient) -> None:
    body = await image(registry)
    query = "&".join(f"tag=t{i}" for i in range(101))
    refused = await put(registry, f"{digest_of(body)}?{query}", body)
    assert refused.status == 414 and await error_code(refused) == "MANIFEST_INVALID"
    assert (await registry.head(f"/v2/{NAME}/manifests/{digest_of(body)}")).status == 404
    hundred = "&".join(f"tag=t{i}" for i in range(100))
    pushed = await put(registry, f"{digest_of(body)}?{hundred}", body)
    assert pushed.status == 201 and len(pushed.headers.getall("OCI-Tag")) == 100


async def test_query_tags_on_a_push_by_tag_are_ignored(registry: TestClient) -> None:
    # The spec defines ?tag= for pushes by digest only: a push by tag sets its own tag,
    # and no OCI-Tag tells the client the others were not set (it falls back to a push each).
    body = await image(registry)
    pushed = await put(registry, "v1?tag=other&tag=.invalid", body)
    assert pushed.status == 201, await pushed.text()
    assert "OCI-Tag" not in pushed.headers
    assert await tags_of(registry) == ["v1"]


async def test_the_digest_answered_is_in_the_algorithm_the_client_used(
    registry: TestClient,
) -> None:
    body = await image(registry)
    sha256, sha512 = digest_of(body), sha512_of(body)
    pushed = await put(registry, f"{sha512}?tag=v512", body)
    assert pushed.status == 201, await pushed.text()
    assert pushed.headers["Docker-Content-Digest"] == sha512
    assert pushed.headers["Location"] == f"/v2/{NAME}/manifests/{sha512}"
    assert pushed.headers.getall("OCI-Tag") == ["v512"]
    assert (await put(registry, "v256", body)).headers["Docker-Content-Digest"] == sha256
    # Each reference answers the digest of what it names, computed over the same bytes:
    # a tag set by a sha512 push names the manifest as that push addressed it.
    for ref, digest in ((sha512, sha512), ("v512", sha512), (sha256, sha256), ("v256", sha256)):
        for method in ("GET", "HEAD"):
            got = await registry.request(method, f"/v2/{NAME}/manifests/{ref}")
            assert got.status == 200, (method, ref)
            assert got.headers["Docker-Content-Digest"] == digest, (method, ref)
            assert got.headers["Content-Length"] == str(len(body))
        fetched = await registry.get(f"/v2/{NAME}/manifests/{got.headers['Docker-Content-Digest']}")
        assert await fetched.read() == body


async def test_digest_mismatch_on_put_by_digest(registry: TestClient) -> None:
    body = await image(registry)
    response = await put(registry, digest_of(b"other"), body)
    assert response.status == 400 and await error_code(response) == "DIGEST_INVALID"
    assert (await registry.head(f"/v2/{NAME}/manifests/{digest_of(body)}")).status == 404


async def test_indexes_and_missing_children(registry: TestClient) -> None:
    amd, arm = await image(registry, seed=b"a"), await image(registry, seed=b"r")
    await put(registry, digest_of(amd), amd)
    await put(registry, digest_of(arm), arm)
    for media_type, child_type in ((OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)):
        index = encode(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "manifests": [
                    descriptor(child_type, amd, platform={"os": "linux", "architecture": "amd64"}),
                    descriptor(child_type, arm, platform={"os": "linux", "architecture": "arm64"}),
                ],
            }
        )
        pushed = await put(registry, "multi", index, media_type)
        assert pushed.status == 201, await pushed.text()
        got = await registry.get(f"/v2/{NAME}/manifests/multi")
        assert await got.read() == index and got.headers["Content-Type"] == media_type

    missing = encode(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, b"x")]}
    )
    response = await put(registry, "broken", missing, OCI_INDEX)
    assert response.status == 400 and await error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert (await response.json())["errors"][0]["detail"] == {"digest": digest_of(b"x")}
    # A child held by another image name does not count.
    foreign = encode(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, amd)]}
    )
    elsewhere = await put(registry, "multi", foreign, OCI_INDEX, "docker/x")
    assert elsewhere.status == 400 and await error_code(elsewhere) == "MANIFEST_BLOB_UNKNOWN"
    assert (await put(registry, "multi", foreign, OCI_INDEX)).status == 201


async def test_missing_blob_is_manifest_blob_unknown(registry: TestClient) -> None:
    layer = descriptor("application/vnd.oci.image.layer.v1.tar", b"never pushed")
    config = await push_blob(registry, b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
        "layers": [layer],
    }
    response = await put(registry, "v1", encode(doc))
    assert response.status == 400 and await error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert (await response.json())["errors"][0]["detail"] == {"digest": layer["digest"]}
    # A blob pushed to another image name is not enough either.
    await push_blob(registry, b"never pushed", "docker-local/other")
    assert (await put(registry, "v1", encode(doc))).status == 400
    # Foreign layers with urls need not be here.
    foreign = {**layer, "urls": ["https://example.com/layer"]}
    foreign["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    assert (await put(registry, "v1", encode({**doc, "layers": [foreign]}))).status == 201


async def test_descriptor_sizes_must_match_what_is_stored(registry: TestClient) -> None:
    """A wrong size is refused at push, not left for every pull to fail on."""
    body = await image(registry)
    doc = json.loads(body)
    doc["layers"][0]["size"] += 1
    response = await put(registry, "v1", encode(doc))
    assert response.status == 400 and await error_code(response) == "MANIFEST_INVALID"
    detail = (await response.json())["errors"][0]["detail"]
    assert detail == {
        "digest": doc["layers"][0]["digest"],
        "size": doc["layers"][0]["size"],
        "stored_size": doc["layers"][0]["size"] - 1,
    }
    assert (await registry.get(f"/v2/{NAME}/manifests/v1")).status == 404
    await put(registry, digest_of(body), body)
    child = descriptor(OCI_MANIFEST, body)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{**child, "size": 1}]}
    response = await put(registry, "multi", encode(index), OCI_INDEX)
    assert response.status == 400 and await error_code(response) == "MANIFEST_INVALID"
    index["manifests"] = [child]
    assert (await put(registry, "multi", encode(index), OCI_INDEX)).status == 201


async def test_manifests_can_be_fetched_as_blobs(registry: TestClient) -> None:
    """Distribution serves a manifest's bytes from /blobs/ too; some clients rely on it."""
    body = await image(registry)
    await put(registry, "v1", body)
    got = await registry.get(f"/v2/{NAME}/blobs/{digest_of(body)}")
    assert got.status == 200 and await got.read() == body
    assert got.headers["Docker-Content-Digest"] == digest_of(body)
    head = await registry.head(f"/v2/{NAME}/blobs/{digest_of(body)}")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(body))
    # Only in the image name that holds the manifest.
    elsewhere = await registry.get(f"/v2/docker-local/other/blobs/{digest_of(body)}")
    assert elsewhere.status == 404 and await error_code(elsewhere) == "BLOB_UNKNOWN"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", OCI_MANIFEST),
        (b"[1, 2]", OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "text/plain", "manifests": []}', "application/json"),
        (b'{"schemaVersion": 2, "manifests": []}', "application/vnd.example+json"),
        (b'{"schemaVersion": 2, "manifests": []}', ""),
        (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'"}', OCI_INDEX),
        (b'{"schemaVersion": 1, "manifests": []}', OCI_INDEX),
        (b'{"schemaVersion": 2}', OCI_MANIFEST),
        (b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:1"}]}', OCI_INDEX),
        (b'{"schemaVersion": 2, "manifests": [{"mediaType": "a", "size": 1}]}', OCI_INDEX),
        (b"", OCI_MANIFEST),
    ],
)
async def test_invalid_manifests(registry: TestClient, body: bytes, content_type: str) -> None:
    response = await registry.put(
        f"/v2/{NAME}/manifests/v1", data=body, headers={"Content-Type": content_type}
    )
    assert response.status == 400
    assert await error_code(response) == "MANIFEST_INVALID"
    assert (await registry.get(f"/v2/{NAME}/manifests/v1")).status == 404


async def test_a_5_mib_manifest_is_refused(registry: TestClient) -> None:
    body = await image(registry, annotations={"x": "y" * (5 * 1024 * 1024)})
    response = await put(registry, "big", body)
    assert response.status == 413 and await error_code(response) == "MANIFEST_INVALID"

    async def chunked() -> Any:  # no Content-Length: the cap applies while reading
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = await registry.put(
        f"/v2/{NAME}/manifests/big", data=chunked(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert streamed.status == 413
    assert (await registry.get(f"/v2/{NAME}/manifests/big")).status == 404


async def test_delete_by_digest_and_by_tag(registry: TestClient) -> None:
    first, second = await image(registry, seed=b"1"), await image(registry, seed=b"2")
    await put(registry, "a", first)
    await put(registry, "b", first)
    await put(registry, "c", second)
    # A tag alone.
    assert (await registry.delete(f"/v2/{NAME}/manifests/c")).status == 202
    assert (await registry.get(f"/v2/{NAME}/manifests/c")).status == 404
    assert (await registry.get(f"/v2/{NAME}/manifests/{digest_of(second)}")).status == 200
    # A manifest takes its tags with it.
    assert (await registry.delete(f"/v2/{NAME}/manifests/{digest_of(first)}")).status == 202
    for ref in ("a", "b", digest_of(first)):
        gone = await registry.get(f"/v2/{NAME}/manifests/{ref}")
        assert gone.status == 404 and await error_code(gone) == "MANIFEST_UNKNOWN"
    again = await registry.delete(f"/v2/{NAME}/manifests/{digest_of(first)}")
    assert again.status == 404 and await error_code(again) == "MANIFEST_UNKNOWN"
    assert (await registry.delete(f"/v2/{NAME}/manifests/nope")).status == 404
    assert (await (await registry.get(f"/v2/{NAME}/tags/list")).json())["tags"] == []


async def test_delete_refused_where_the_repository_forbids_it(registry: TestClient) -> None:
    name = "frozen/app"
    body = await image(registry, name)
    await put(registry, "v1", body, name=name)
    for ref in ("v1", digest_of(body)):
        response = await registry.delete(f"/v2/{name}/manifests/{ref}")
        assert response.status == 405 and await error_code(response) == "UNSUPPORTED"
    assert (await registry.get(f"/v2/{name}/manifests/v1")).status == 200


async def test_tags_list_pagination(registry: TestClient) -> None:
    unknown = await registry.get(f"/v2/{NAME}/tags/list")
    assert unknown.status == 404 and await error_code(unknown) == "NAME_UNKNOWN"
    body = await image(registry)
    tags = ["v10", "v2", "V1", "latest", "a_b"]
    for tag in tags:
        assert (await put(registry, tag, body)).status == 201
    everything = await registry.get(f"/v2/{NAME}/tags/list")
    assert await everything.json() == {"name": NAME, "tags": sorted(tags)}
    assert "Link" not in everything.headers

    collected, url = [], f"/v2/{NAME}/tags/list?n=2"
    while url:
        page = await registry.get(url)
        assert page.status == 200
        collected += (await page.json())["tags"]
        link = page.headers.get("Link", "")
        url = link[1 : link.index(">")] if link else ""
        if link:
            assert link.endswith('>; rel="next"') and "n=2&last=" in link
    assert collected == sorted(tags)

    assert (await (await registry.get(f"/v2/{NAME}/tags/list?n=0")).json())["tags"] == []
    after = await registry.get(f"/v2/{NAME}/tags/list?last=latest")
    assert (await after.json())["tags"] == ["v10", "v2"]
    for bad in ("-1", "x", "1.5", "%C2%B2"):
        response = await registry.get(f"/v2/{NAME}/tags/list?n={bad}")
        assert response.status == 400
        assert await error_code(response) == "PAGINATION_NUMBER_INVALID"
    # A NUL no database holds is refused before any handler runs, in the spec's shape.
    nul = await registry.get(f"/v2/{NAME}/tags/list?n=1&last=%00")
    assert nul.status == 400 and await error_code(nul) == "UNSUPPORTED"


async def test_catalog_pagination_across_repositories(registry: TestClient) -> None:
    names = ["docker-local/team/app", "docker-local/zeta", "docker/alpha", "docker/x/y"]
    for name in names:
        assert (await put(registry, "v1", await image(registry, name), name=name)).status == 201
    # A name holding only blobs is no image yet.
    await push_blob(registry, b"orphan", "docker/orphan")
    everything = await registry.get("/v2/_catalog")
    assert await everything.json() == {"repositories": sorted(names)}
    assert sorted(names)[:2] == ["docker-local/team/app", "docker-local/zeta"]

    collected, url = [], "/v2/_catalog?n=3"
    while url:
        page = await registry.get(url)
        assert page.status == 200
        collected.append((await page.json())["repositories"])
        link = page.headers.get("Link", "")
        url = link[1 : link.index(">")] if link else ""
    assert collected == [sorted(names)[:3], sorted(names)[3:]]
    assert (await (await registry.get("/v2/_catalog?n=0")).json()) == {"repositories": []}
    assert (await registry.get("/v2/_catalog?n=-2")).status == 400


async def test_referrers(registry: TestClient) -> None:
    subject_body = await image(registry)
    subject = digest_of(subject_body)
    await push_blob(registry, EMPTY)
    signature, sbom = b"signature", b"sbom"
    await push_blob(registry, signature)
    await push_blob(registry, sbom)
    empty = descriptor("application/vnd.oci.empty.v1+json", EMPTY)
    subject_desc = descriptor(OCI_MANIFEST, subject_body)

    # Referrers may be pushed before their subject.
    sig = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": empty,
            "layers": [descriptor("application/octet-stream", signature)],
            "subject": subject_desc,
            "annotations": {"org.example.signed-by": "me"},
        }
    )
    pushed = await put(registry, digest_of(sig), sig)
    assert pushed.status == 201, await pushed.text()
    assert pushed.headers["OCI-Subject"] == subject
    # No artifactType: the config's media type stands for it.
    sbom_manifest = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.example.sbom", sbom),
            "layers": [],
            "subject": subject_desc,
        }
    )
    assert (await put(registry, digest_of(sbom_manifest), sbom_manifest)).status == 201
    assert (await put(registry, "v1", subject_body)).status == 201

    url = f"/v2/{NAME}/referrers/{subject}"
    listed = await registry.get(url)
    assert listed.status == 200
    assert listed.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in listed.headers
    index = await listed.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    expected = {
        digest_of(sig): {
            "mediaType": OCI_MANIFEST,
            "digest": digest_of(sig),
            "size": len(sig),
            "artifactType": "application/vnd.example.signature",
            "annotations": {"org.example.signed-by": "me"},
        },
        digest_of(sbom_manifest): {
            "mediaType": OCI_MANIFEST,
            "digest": digest_of(sbom_manifest),
            "size": len(sbom_manifest),
            "artifactType": "application/vnd.example.sbom",
        },
    }
    assert {d["digest"]: d for d in index["manifests"]} == expected

    filtered = await registry.get(f"{url}?artifactType=application/vnd.example.sbom")
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert (await filtered.json())["manifests"] == [expected[digest_of(sbom_manifest)]]

    odd = await registry.get(f"{url}?artifactType=%00")  # refused before any handler runs
    assert odd.status == 400 and await error_code(odd) == "UNSUPPORTED"
    nothing = await registry.get(f"/v2/{NAME}/referrers/{digest_of(b'no subject')}")
    assert nothing.status == 200 and (await nothing.json())["manifests"] == []
    bad = await registry.get(f"/v2/{NAME}/referrers/sha256:nope")
    assert bad.status == 400 and await error_code(bad) == "DIGEST_INVALID"


async def test_artifact_manifest_media_type(registry: TestClient) -> None:
    await push_blob(registry, b"blob")
    artifact = "application/vnd.oci.artifact.manifest.v1+json"
    doc: dict[str, Any] = {
        "mediaType": artifact,
        "artifactType": "application/vnd.example",
        "blobs": [descriptor("application/octet-stream", b"blob")],
    }
    body = encode(doc)
    pushed = await put(registry, "art", body, artifact)
    assert pushed.status == 201, await pushed.text()
    got = await registry.get(f"/v2/{NAME}/manifests/art")
    assert await got.read() == body and got.headers["Content-Type"] == artifact
    no_type = encode({**doc, "artifactType": None})
    refused = await put(registry, "art", no_type, artifact)
    assert refused.status == 400 and await error_code(refused) == "MANIFEST_INVALID"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        # Read or deleted, a reference no manifest can have is unknown, as distribution says.
        ("GET", f"/v2/{NAME}/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN"),
        ("HEAD", f"/v2/{NAME}/manifests/.INVALID_MANIFEST_NAME", 404, None),
        ("DELETE", f"/v2/{NAME}/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN"),
        ("GET", f"/v2/{NAME}/manifests/-bad", 404, "MANIFEST_UNKNOWN"),
        ("GET", f"/v2/{NAME}/manifests/{'t' * 129}", 404, "MANIFEST_UNKNOWN"),
        ("HEAD", f"/v2/{NAME}/manifests/sha256:abc", 404, None),
        ("DELETE", f"/v2/{NAME}/manifests/md5:{'a' * 32}", 404, "MANIFEST_UNKNOWN"),
        ("GET", f"/v2/{NAME}/manifests/sha256:{'G' * 64}", 404, "MANIFEST_UNKNOWN"),
        # Pushed, it is a bad request, in the spec's codes.
        ("PUT", f"/v2/{NAME}/manifests/{'t' * 129}", 400, "MANIFEST_INVALID"),
        ("PUT", f"/v2/{NAME}/manifests/.INVALID_MANIFEST_NAME", 400, "MANIFEST_INVALID"),
        ("PUT", f"/v2/{NAME}/manifests/sha256:abc", 400, "DIGEST_INVALID"),
        ("GET", "/v2/docker-local/Team/manifests/v1", 400, "NAME_INVALID"),
        ("GET", "/v2/nowhere/app/tags/list", 404, "NAME_UNKNOWN"),
    ],
)
async def test_malformed_references(
    registry: TestClient, method: str, path: str, status: int, code: str | None
) -> None:
    response = await registry.request(method, path, data=b"{}")
    assert response.status == status
    if code is not None:
        assert await error_code(response) == code


async def test_a_page_size_past_any_limit_is_refused_before_it_is_parsed(
    registry: TestClient,
) -> None:
    assert (await put(registry, "v1", await image(registry))).status == 201
    huge = "9" * 5000  # past Python's 4,300-digit int() limit
    for url in (f"/v2/{NAME}/tags/list?n={huge}", f"/v2/_catalog?n={huge}"):
        response = await registry.get(url)
        assert response.status == 400, url[:60]
        assert await error_code(response) == "PAGINATION_NUMBER_INVALID"
    # A large number within the bound is a page of at most the server's size.
    assert (await registry.get(f"/v2/{NAME}/tags/list?n={'9' * 18}")).status == 200
