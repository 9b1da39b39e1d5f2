"""Remote repositories answered as data, as a virtual repository will ask them: each
format's document and open, for several repositories at once (asyncio.gather), in
both shapes, against the same fake upstreams the HTTP tests use; then the HTTP side
finds what they cached."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from app import keys
from app.formats.generic.remote import GenericRemote
from app.formats.npm.remote import NpmRemote, Packument
from app.formats.oci.context import Target
from app.formats.oci.remote import Manifest, OciRemote, Tags, blob_fetch
from app.formats.pypi.pages import ProjectPage
from app.formats.pypi.remote import PypiRemote
from app.proxy.core import Opened, whole
from app.proxy.results import Document, Missing
from app.server import create_app
from pipelines import parse_digest
from tests.e2e import oci_layout
from tests.integration.conftest import ConfigFactory
from tests.integration.test_remote_npm import FakeRegistry
from tests.integration.test_remote_pypi import WHEEL, Index, build_wheel
from tests.upstreams import File, FileTree, Registry


def remote(name: str, fmt: str, server: TestServer, **options: Any) -> dict[str, Any]:
    url = str(server.make_url("")).rstrip("/")
    return {
        "name": name,
        "format": fmt,
        "kind": "remote",
        "options": {"upstream": url, "retries": 0, **options},
    }


async def body(opened: Opened) -> bytes:
    assert not isinstance(opened, Missing), opened
    return await whole(opened)


async def test_every_format_answers_as_data_concurrently(
    aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    wheel = build_wheel()
    index, registry, tree = Index(files={WHEEL: wheel}), FakeRegistry(), FileTree()
    tree.files["index.json"] = File(b'{"v": 1}', "application/json")
    tree.files["tool.bin"] = File(b"t" * 5000)
    layout = oci_layout.build(tmp_path / "upstream", "1.0", [30_000])
    hub = Registry(layout.path, "app", "1.0")
    pypi_server = await aiohttp_server(index.app())
    npm_server = await aiohttp_server(registry.app())
    registry.base = str(npm_server.make_url("")).rstrip("/")
    generic_server = await aiohttp_server(tree.app())
    oci_server = await aiohttp_server(hub.app())
    repositories = [
        remote("pypi-a", "pypi", pypi_server),
        remote("pypi-b", "pypi", pypi_server),
        remote("npm", "npm", npm_server),
        remote("files", "generic", generic_server, metadata_paths=["*.json"]),
        remote("hub", "oci", oci_server, username=hub.username, password=hub.password),
    ]
    client = await aiohttp_client(create_app(make_config(repositories=repositories)))
    app, repos = client.app, client.app[keys.REPOSITORIES]
    core, upstreams = app[keys.PROXY], app[keys.UPSTREAMS]
    pypi, npm = PypiRemote(core, upstreams), NpmRemote(core, upstreams)
    generic, oci = GenericRemote(core, upstreams), OciRemote(core, upstreams)
    image = Target(repos.get("hub"), "app")

    page_a, page_b, packument, listing, missing, tags, manifest = await asyncio.gather(
        pypi.document(repos.get("pypi-a"), "Demo"),
        pypi.document(repos.get("pypi-b"), "demo"),
        npm.document(repos.get("npm"), "demo"),
        generic.document(repos.get("files"), "index.json"),
        generic.document(repos.get("files"), "nothing.json"),
        oci.document(image),
        oci.manifest(image, "1.0"),
    )
    for page in (page_a, page_b):
        assert isinstance(page, ProjectPage) and page.how == "MISS"
        assert [f.filename for f in page.page.files if f.filename == WHEEL] == [WHEEL]
    assert index.requests["simple/demo/"] == 2  # one per repository
    assert isinstance(packument, Packument) and packument.document["name"] == "demo"
    assert isinstance(listing, Document) and await listing.read() == b'{"v": 1}'
    assert missing == Missing("nothing.json", "MISS")
    assert isinstance(tags, Tags) and tags.tags == ["1.0"]
    assert isinstance(manifest, Manifest) and manifest.how == "MISS"
    assert hashlib.sha256(manifest.body).hexdigest() == layout.manifest_digest.split(":")[1]

    tarball_path = FakeRegistry.tarball_path("demo")
    wheel_file, tarball, tool, blob = await asyncio.gather(
        pypi.open(repos.get("pypi-a"), f"files/demo/{WHEEL}"),
        npm.open(repos.get("npm"), tarball_path),
        generic.open(repos.get("files"), "tool.bin"),
        oci.open(image, blob_fetch(image, parse_digest(layout.blob_digests[1]))),
    )
    assert await body(wheel_file) == wheel
    assert await body(tarball) == registry.tarballs[tarball_path]
    assert await body(tool) == b"t" * 5000
    layer = await body(blob)
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == layout.blob_digests[1]

    # What they cached is what the HTTP side answers, as hits.
    answers = [
        await client.get(f"/repository/pypi-a/files/demo/{WHEEL}"),
        await client.get(f"/repository/npm/{tarball_path}"),
        await client.get("/repository/files/tool.bin"),
        await client.get("/repository/files/index.json"),
        await client.get(f"/v2/hub/app/blobs/{layout.blob_digests[1]}"),
        await client.get("/v2/hub/app/tags/list"),
    ]
    assert [a.headers["X-Cache"] for a in answers] == ["HIT"] * 6
    assert await answers[0].read() == wheel
    assert json.loads(await answers[5].read())["tags"] == ["1.0"]
    again = await pypi.document(repos.get("pypi-a"), "demo")
    assert isinstance(again, ProjectPage) and again.how == "HIT"
    assert index.requests["simple/demo/"] == 2 and index.requests[WHEEL] == 1
