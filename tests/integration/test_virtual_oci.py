"""Virtual OCI repositories over a local one and fake upstream registries, in both
shapes: skopeo pulls through the virtual (a local image and one only upstream) and
pushes into deploy_to; the dependency-confusion guard by image name and reserved
globs; tags and referrers merged; failing and slow members; explain."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import TestClient, TestServer

from app import keys
from app.auth.manage import create_principal
from app.config import ConfigError
from app.formats import available_formats, validate_repositories
from app.server import create_app
from tests.e2e import oci_layout
from tests.e2e.harness import require_tool
from tests.integration.conftest import ConfigFactory
from tests.waiting import expired

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


@dataclass
class Image:
    manifest: bytes
    blobs: list[bytes]

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def image(seed: str, subject: Image | None = None) -> Image:
    config, layer = json.dumps({"architecture": "amd64", "seed": seed}).encode(), seed.encode()
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(LAYER, layer)],
    }
    if subject is not None:
        doc["subject"] = descriptor(OCI_MANIFEST, subject.manifest)
        doc["artifactType"] = "application/vnd.example.sbom"
    return Image(json.dumps(doc).encode(), [config, layer])


@dataclass
class FakeRegistry:
    """A distribution-API registry of several image names (anonymous), with the
    referrers API; ``fault`` "500" fails every request, ``delay`` slows each answer."""

    tags: dict[str, dict[str, Image]] = field(default_factory=dict)
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    fault: str | None = None
    delay: float = 0.0

    def add(self, name: str, tag: str, img: Image) -> None:
        self.tags.setdefault(name, {})[tag] = img

    def add_layout(self, name: str, tag: str, root: Path) -> None:
        digest = oci_layout.manifest_digest(root, tag)
        manifest = oci_layout.blob(root, digest)
        doc = json.loads(manifest)
        blobs = [oci_layout.blob(root, d["digest"]) for d in [doc["config"], *doc["layers"]]]
        self.add(name, tag, Image(manifest, blobs))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.requests[path] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fault == "500":
            return web.Response(status=500, text="upstream broken")
        unknown = web.json_response({"errors": [{"code": "NOT_FOUND"}]}, status=404)
        if found := re.fullmatch(r"(.+)/tags/list", path):
            images = self.tags.get(found[1])
            if images is None:
                return unknown
            return web.json_response({"name": found[1], "tags": sorted(images)})
        found = re.fullmatch(r"(.+)/(manifests|blobs|referrers)/([^/]+)", path)
        if found is None or found[1] not in self.tags:
            return unknown
        name, kind, reference = found[1], found[2], found[3]
        images = self.tags[name]
        if kind == "referrers":
            index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
            listed = self.referrers.get(reference, [])
            return web.json_response({**index, "manifests": listed})
        for img in images.values():
            if kind == "manifests" and reference in (img.digest, *self._tags_of(name, img)):
                return web.Response(
                    body=img.manifest,
                    headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": img.digest},
                )
            for blob in img.blobs if kind == "blobs" else []:
                if digest_of(blob) == reference:
                    return web.Response(body=blob, content_type="application/octet-stream")
        return unknown

    def _tags_of(self, name: str, img: Image) -> list[str]:
        return [tag for tag, other in self.tags[name].items() if other is img]

    def asked_about(self, name: str) -> list[str]:
        return [path for path in self.requests if path.startswith(f"{name}/")]


@pytest.fixture
def hub() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def mirror() -> FakeRegistry:
    return FakeRegistry()


def remote(name: str, upstream: TestServer, **options: Any) -> dict[str, Any]:
    url = str(upstream.make_url("")).rstrip("/")
    return {
        "name": name,
        "format": "oci",
        "kind": "remote",
        "options": {"upstream": url, "retries": 0, **options},
    }


@pytest.fixture
def start(
    aiohttp_client: Any,
    aiohttp_server: Any,
    make_config: ConfigFactory,
    hub: FakeRegistry,
    mirror: FakeRegistry,
) -> Any:
    async def started(
        virtual: dict[str, Any] | None = None,
        hub_options: dict[str, Any] | None = None,
        replicas: int = 1,
    ) -> Any:
        up1 = await aiohttp_server(hub.app())
        up2 = await aiohttp_server(mirror.app())
        options = {"members": ["docker", "hub", "mirror"], "deploy_to": "docker", **(virtual or {})}
        repos = [
            {"name": "docker", "format": "oci", "kind": "local"},
            remote("hub", up1, **(hub_options or {})),
            remote("mirror", up2),
            {
                "name": "containers",
                "format": "oci",
                "kind": "virtual",
                "anonymous_read": True,  # skopeo pulls without logging in
                "options": options,
            },
        ]
        config = make_config(repositories=repos)
        clients = [await aiohttp_client(create_app(config)) for _ in range(replicas)]
        return clients[0] if replicas == 1 else clients

    return started


async def push(client: TestClient, name: str, tag: str, img: Image) -> Any:
    for blob in img.blobs:
        sent = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest_of(blob)}", data=blob)
        assert sent.status == 201, await sent.text()
    return await client.put(
        f"/v2/{name}/manifests/{tag}", data=img.manifest, headers={"Content-Type": OCI_MANIFEST}
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def error_code(response: Any) -> str:
    return str((await response.json())["errors"][0]["code"])


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


async def test_skopeo_pushes_into_deploy_to_and_pulls_local_and_upstream_images(
    start: Any, hub: FakeRegistry, tmp_path: Path
) -> None:
    ours = oci_layout.build(tmp_path / "ours", "1.0", [40_000])
    theirs = oci_layout.build(tmp_path / "theirs", "2.0", [60_000, 5_000])
    confusing = oci_layout.build(tmp_path / "confusing", "1.0", [10_000])
    hub.add_layout("tools/cli", "2.0", theirs.path)
    hub.add_layout("internal/app", "1.0", confusing.path)
    client = await start()
    host = f"{client.host}:{client.port}"
    token = client.session.headers[hdrs.AUTHORIZATION].removeprefix("Bearer ")
    await skopeo(
        tmp_path, "copy", "--dest-tls-verify=false", f"--dest-creds=admin:{token}",
        f"oci:{ours.path}:1.0", f"docker://{host}/containers/internal/app:1.0",
    )  # fmt: skip
    landed = await client.get("/v2/docker/internal/app/manifests/1.0")
    assert landed.status == 200 and landed.headers["Docker-Content-Digest"] == (
        ours.manifest_digest
    )
    # Before the first push the name was nobody's: skopeo's HEADs of its blobs were
    # reads any member could answer. From now on the local holds it.
    hub.requests.clear()
    for name, tag, layout in (("internal/app", "1.0", ours), ("tools/cli", "2.0", theirs)):
        out = tmp_path / f"out-{tag}"
        source = f"docker://{host}/containers/{name}:{tag}"
        await skopeo(tmp_path, "copy", "--src-tls-verify=false", source, f"oci:{out}:{tag}")
        digest = oci_layout.manifest_digest(out, tag)
        assert digest == layout.manifest_digest
        for blob in layout.blob_digests:
            assert oci_layout.blob(out, blob) == oci_layout.blob(layout.path, blob)
    assert not hub.asked_about("internal/app")  # the local holds the name


async def test_a_push_of_layers_an_upstream_has_uploads_them_to_deploy_to(
    start: Any, hub: FakeRegistry, tmp_path: Path
) -> None:
    """The layers of a public image, pushed under its own name (a fork of library/base):
    whether a blob is there is deploy_to's question, not the upstream's, or skopeo would
    skip uploads deploy_to then lacks (and the layers' digests would go upstream)."""
    base = oci_layout.build(tmp_path / "base", "1", [30_000, 2_000])
    hub.add_layout("library/base", "1", base.path)
    client = await start()
    host = f"{client.host}:{client.port}"
    token = client.session.headers[hdrs.AUTHORIZATION].removeprefix("Bearer ")
    await skopeo(
        tmp_path, "copy", "--dest-tls-verify=false", f"--dest-creds=admin:{token}",
        f"oci:{base.path}:1", f"docker://{host}/containers/library/base:mine",
    )  # fmt: skip
    landed = await client.get("/v2/docker/library/base/manifests/mine")
    assert landed.status == 200, await landed.text()
    for blob in base.blob_digests:
        got = await client.get(f"/v2/docker/library/base/blobs/{blob}")
        assert got.status == 200 and await got.read() == oci_layout.blob(base.path, blob)
    assert not [p for p in hub.asked_about("library/base") if "/blobs/" in p]


async def test_a_push_without_deploy_to_is_unsupported(start: Any) -> None:
    client = await start({"deploy_to": None})
    started = await client.post("/v2/containers/team/app/blobs/uploads/")
    assert started.status == 405 and await error_code(started) == "UNSUPPORTED"
    put = await client.put(
        "/v2/containers/team/app/manifests/1.0", data=b"{}", headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status == 405 and await error_code(put) == "UNSUPPORTED"


async def test_an_image_name_a_local_member_holds_never_comes_from_upstream(
    start: Any, hub: FakeRegistry
) -> None:
    ours, theirs, newer = image("ours"), image("theirs"), image("newer")
    hub.add("internal/app", "1.0", theirs)
    hub.add("internal/app", "99", newer)
    client = await start()
    pushed = await push(client, "containers/internal/app", "1.0", ours)
    assert pushed.status == 201, await pushed.text()
    assert pushed.headers["Location"].startswith("/v2/containers/internal/app/")
    got = await client.get("/v2/containers/internal/app/manifests/1.0")
    assert got.status == 200 and await got.read() == ours.manifest
    assert got.headers["Docker-Content-Digest"] == ours.digest
    assert got.headers["X-Artifactapi-Served-By"] == "docker"
    for reference in ("99", newer.digest, theirs.digest):
        missing = await client.get(f"/v2/containers/internal/app/manifests/{reference}")
        assert missing.status == 404 and await error_code(missing) == "MANIFEST_UNKNOWN"
    blob = await client.get(f"/v2/containers/internal/app/blobs/{digest_of(theirs.blobs[1])}")
    assert blob.status == 404 and await error_code(blob) == "BLOB_UNKNOWN"
    ours_blob = await client.get(f"/v2/containers/internal/app/blobs/{digest_of(ours.blobs[1])}")
    assert ours_blob.status == 200 and await ours_blob.read() == ours.blobs[1]
    tags = await client.get("/v2/containers/internal/app/tags/list")
    assert (await tags.json())["tags"] == ["1.0"]
    assert not hub.asked_about("internal/app")
    upper = await client.get("/v2/containers/Internal/app/manifests/99")
    assert upper.status == 400 and await error_code(upper) == "NAME_INVALID"


async def test_a_reserved_name_is_not_found_rather_than_upstream(
    start: Any, hub: FakeRegistry
) -> None:
    hub.add("acme/app", "1.0", image("hijacked"))
    hub.add("other/app", "1.0", image("fine"))
    client = await start({"reserved": ["acme/*"]})
    got = await client.get("/v2/containers/acme/app/manifests/1.0")
    assert got.status == 404 and await error_code(got) == "MANIFEST_UNKNOWN"
    tags = await client.get("/v2/containers/acme/app/tags/list")
    assert tags.status == 404 and await error_code(tags) == "NAME_UNKNOWN"
    assert not hub.asked_about("acme/app")
    fine = await client.get("/v2/containers/other/app/manifests/1.0")
    assert fine.status == 200 and await fine.read() == image("fine").manifest


async def test_tags_and_referrers_are_merged_and_the_first_member_wins(
    start: Any, hub: FakeRegistry, mirror: FakeRegistry
) -> None:
    ours, theirs, newer, third = image("ours"), image("theirs"), image("newer"), image("third")
    hub.add("shared/app", "1.0", theirs)
    hub.add("shared/app", "2.0", newer)
    mirror.add("shared/app", "2.0", third)
    mirror.add("shared/app", "3.0", third)
    client = await start({"allow": ["shared/*"]})
    assert (await push(client, "containers/shared/app", "1.0", ours)).status == 201
    sbom_ours, sbom_theirs = image("sbom-ours", ours), image("sbom-theirs", ours)
    assert (await push(client, "containers/shared/app", sbom_ours.digest, sbom_ours)).status == 201
    hub.referrers[ours.digest] = [
        descriptor(OCI_MANIFEST, sbom_theirs.manifest, artifactType="application/vnd.example.sbom"),
        descriptor(OCI_MANIFEST, sbom_ours.manifest),  # the same digest: ours is kept
    ]
    tags = await client.get("/v2/containers/shared/app/tags/list")
    assert tags.status == 200
    assert await tags.json() == {"name": "containers/shared/app", "tags": ["1.0", "2.0", "3.0"]}
    first = await client.get("/v2/containers/shared/app/tags/list", params={"n": "2"})
    assert (await first.json())["tags"] == ["1.0", "2.0"]
    assert first.headers["Link"] == '</v2/containers/shared/app/tags/list?n=2&last=2.0>; rel="next"'
    rest = await client.get("/v2/containers/shared/app/tags/list", params={"n": "2", "last": "2.0"})
    assert (await rest.json())["tags"] == ["3.0"] and "Link" not in rest.headers
    expected = {"1.0": ours, "2.0": newer, "3.0": third}  # every listed tag downloads
    for tag, img in expected.items():
        got = await client.get(f"/v2/containers/shared/app/manifests/{tag}")
        assert got.status == 200 and await got.read() == img.manifest, tag
    head = await client.head("/v2/containers/shared/app/manifests/2.0")
    assert head.status == 200 and head.headers["Docker-Content-Digest"] == newer.digest
    assert head.headers["Content-Length"] == str(len(newer.manifest)) and not await head.read()
    listed = await client.get(f"/v2/containers/shared/app/referrers/{ours.digest}")
    found = (await listed.json())["manifests"]
    assert sorted(d["digest"] for d in found) == sorted([sbom_ours.digest, sbom_theirs.digest])
    assert next(d for d in found if d["digest"] == sbom_ours.digest)["artifactType"] == (
        "application/vnd.example.sbom"
    )  # the local's descriptor, not the upstream's bare copy


async def test_a_failing_member_is_left_out_and_a_stale_tag_is_used(
    start: Any, hub: FakeRegistry, mirror: FakeRegistry
) -> None:
    theirs, other = image("theirs"), image("mirrored")
    hub.add("lib/app", "1.0", theirs)
    mirror.add("lib/app", "1.0", other)
    mirror.add("lib/tool", "1.0", other)
    client = await start(hub_options={"metadata_ttl": 0.1})
    got = await client.get("/v2/containers/lib/app/manifests/1.0")
    assert await got.read() == theirs.manifest
    assert (await client.get("/v2/containers/lib/app/tags/list")).status == 200
    await expired(client, "lib/app/manifests/1.0", "hub")
    await expired(client, "lib/app/tags/list", "hub")
    hub.fault = "500"
    stale = await client.get("/v2/containers/lib/app/manifests/1.0")
    assert stale.status == 200 and await stale.read() == theirs.manifest
    assert stale.headers["X-Artifactapi-Members-Stale"] == "hub"
    tags = await client.get("/v2/containers/lib/app/tags/list")
    assert (await tags.json())["tags"] == ["1.0"]
    assert tags.headers["X-Artifactapi-Members-Stale"] == "hub"
    tool = await client.get("/v2/containers/lib/tool/manifests/1.0")
    assert tool.status == 200 and await tool.read() == other.manifest
    assert tool.headers["X-Artifactapi-Members-Skipped"] == "hub=failed"
    blob = await client.get(f"/v2/containers/lib/tool/blobs/{digest_of(other.blobs[1])}")
    assert blob.status == 200 and await blob.read() == other.blobs[1]
    assert blob.headers["X-Artifactapi-Members-Skipped"] == "hub=failed"


async def test_a_slow_member_is_left_out_within_the_timeout(
    start: Any, hub: FakeRegistry, mirror: FakeRegistry
) -> None:
    hub.add("slow/app", "1.0", image("slow"))
    mirror.add("slow/app", "1.0", image("quick"))
    client = await start({"member_timeout": 1.5})
    hub.delay = 6.0
    began = time.monotonic()
    got = await client.get("/v2/containers/slow/app/manifests/1.0")
    assert time.monotonic() - began < 4.5
    assert got.status == 200 and await got.read() == image("quick").manifest
    assert got.headers["X-Artifactapi-Members-Skipped"] == "hub=timeout"


async def test_explain_says_who_serves_an_image_and_why_the_others_do_not(
    start: Any, hub: FakeRegistry
) -> None:
    ours = image("ours")
    hub.add("internal/app", "99", image("theirs"))
    hub.add("tools/cli", "2.0", image("cli"))
    client = await start({"reserved": ["acme/*"]})
    assert (await push(client, "containers/internal/app", "1.0", ours)).status == 201

    async def explain(name: str, version: str | None = None) -> dict[str, Any]:
        params = {"name": name, **({"version": version} if version else {})}
        got = await client.get("/api/v1/repositories/containers/explain", params=params)
        assert got.status == 200, await got.text()
        return dict(await got.json())

    held = await explain("internal/app", "1.0")
    assert held["served_by"] == "docker"
    members = {m["name"]: m for m in held["members"]}
    assert members["docker"]["digest"] == ours.digest
    assert (
        members["hub"]["status"] == "guarded"
        and "held by local member docker" in (members["hub"]["reason"])
    )
    missing = await explain("internal/app", "99")
    assert missing["served_by"] is None
    assert {m["name"]: m["status"] for m in missing["members"]}["docker"] == "absent"
    cli = await explain("tools/cli")
    assert cli["served_by"] == "hub"
    assert {m["name"]: m.get("tags") for m in cli["members"]}["hub"] == ["2.0"]
    reserved = await explain("acme/app", "1.0")
    assert "reserved by containers" in {m["name"]: m["reason"] for m in reserved["members"]}["hub"]
    bad = await client.get(
        "/api/v1/repositories/containers/explain", params={"name": "Internal/App"}
    )
    assert bad.status == 400
    huge = await client.get("/api/v1/repositories/containers/explain", params={"name": "a" * 5000})
    assert huge.status == 400


@pytest.mark.parametrize("kind", ["virtual", "remote"])
def test_a_cooldown_on_oci_is_a_configuration_error(make_config: ConfigFactory, kind: str) -> None:
    """Nothing in the protocol says when a release was published, so a cooldown could
    only refuse everything: it is refused in the configuration instead."""
    options: dict[str, Any] = {"members": ["docker"]}
    if kind == "remote":
        options = {"upstream": "http://upstream.invalid"}
    repos = [
        {"name": "docker", "format": "oci", "kind": "local"},
        {
            "name": "cooled",
            "format": "oci",
            "kind": kind,
            "options": {**options, "min_release_age": "3d"},
        },
    ]
    with pytest.raises(ConfigError, match="min_release_age"):
        validate_repositories(make_config(repositories=repos), available_formats())


async def test_a_push_through_the_virtual_is_authorised_on_deploy_to(
    start: Any, aiohttp_client: Any
) -> None:
    client = await start()
    app = client.app
    assert app is not None
    records = app[keys.AUTH].records
    for user, repository in (("pusher", "docker"), ("stranger", "containers")):
        await create_principal(records, user, password=f"{user}-password")
        await records.grant(f"user:{user}", repository, ["write"])
    client.session.headers.pop(hdrs.AUTHORIZATION)
    img = image("pushed")
    refused = await client.post(
        f"/v2/containers/team/app/blobs/uploads/?digest={digest_of(img.blobs[0])}",
        data=img.blobs[0],
        headers={"Authorization": basic("stranger", "stranger-password")},
    )
    assert refused.status == 403 and await error_code(refused) == "DENIED"
    client.session.headers[hdrs.AUTHORIZATION] = basic("pusher", "pusher-password")
    assert (await push(client, "containers/team/app", "1.0", img)).status == 201
    landed = await client.get("/v2/docker/team/app/manifests/1.0")
    assert landed.status == 200 and await landed.read() == img.manifest
    for user, actions in (("pusher", ["pull", "push"]), ("stranger", ["pull"])):
        token = await client.get(
            "/v2/token",
            params={"scope": "repository:containers/team/app:pull,push"},
            headers={"Authorization": basic(user, f"{user}-password")},
        )
        bearer = (await token.json())["token"]
        claims = json.loads(base64.urlsafe_b64decode(bearer.split(".")[1] + "=="))
        assert claims["access"][0]["actions"] == actions, user


async def test_a_push_on_one_replica_is_what_the_other_serves_at_once(
    start: Any, hub: FakeRegistry
) -> None:
    theirs, ours = image("theirs"), image("ours")
    hub.add("replicated/app", "1.0", theirs)
    a, b = await start(replicas=2)
    before = await b.get("/v2/containers/replicated/app/tags/list")
    assert (await before.json())["tags"] == ["1.0"]
    assert (
        await (await b.get("/v2/containers/replicated/app/manifests/1.0")).read() == theirs.manifest
    )
    assert (await push(a, "containers/replicated/app", "2.0", ours)).status == 201
    after = await b.get("/v2/containers/replicated/app/tags/list")
    assert (await after.json())["tags"] == ["2.0"]  # the local holds the name now
    assert (await b.get("/v2/containers/replicated/app/manifests/1.0")).status == 404
    got = await b.get("/v2/containers/replicated/app/manifests/2.0")
    assert got.status == 200 and await got.read() == ours.manifest
