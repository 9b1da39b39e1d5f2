"""PyPI local repositories over HTTP, in both shapes: uploads as twine sends them, the
simple index generated from the rows (HTML and JSON, yanks, core metadata, PEP 700),
files and their METADATA, re-uploads as PyPI answers them, the management API's
view and changes, and the collector keeping what the rows reference."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import keys
from app.config import GcConfig
from app.layout import blob_key
from app.middleware import FORMATS
from app.server import create_app
from collector import Collector
from tests.integration.conftest import ConfigFactory
from tests.pypi_dists import (
    JSON_TYPE,
    classifiers,
    metadata_text,
    sdist,
    sha256,
    upload,
    wheel,
    wheel_name,
)

REPO = "/repository/pypi-local"
LAX = "/repository/pypi-lax"
REPOS = [
    {"name": "pypi-local", "format": "pypi", "kind": "local"},
    {
        "name": "pypi-lax",
        "format": "pypi",
        "kind": "local",
        "options": {"allow_redeploy": True, "reserve_deleted": False},
    },
]


@pytest.fixture
async def client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient:
    return await aiohttp_client(create_app(make_config(repositories=REPOS)))


async def post(client: TestClient, form: Any, repo: str = REPO, path: str = "/") -> Any:
    return await client.post(f"{repo}{path}", data=form)


async def page(client: TestClient, project: str = "demo-pkg", repo: str = REPO) -> dict[str, Any]:
    response = await client.get(f"{repo}/simple/{project}/", headers={"Accept": JSON_TYPE})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == JSON_TYPE
    document: dict[str, Any] = await response.json(content_type=None)
    return document


async def test_an_uploaded_wheel_is_indexed_served_and_its_metadata_too(client: TestClient) -> None:
    data = wheel("demo_pkg", "1.0", metadata=metadata_text("demo-pkg", "1.0", ">=3.8"))
    form = upload(data, name="Demo.Pkg")
    form.extra = classifiers(["Programming Language :: Python :: 3", "Typing :: Typed"])
    response = await post(client, form.form(), path="/legacy/")
    assert response.status == 200, await response.text()

    document = await page(client)
    assert document["meta"]["api-version"] == "1.1"
    assert document["name"] == "demo-pkg" and document["versions"] == ["1.0"]
    (entry,) = document["files"]
    core = hashlib.sha256(metadata_text("demo-pkg", "1.0", ">=3.8")).hexdigest()
    assert entry["filename"] == wheel_name()
    assert entry["hashes"] == {"sha256": sha256(data)}
    assert entry["requires-python"] == ">=3.8"
    assert entry["core-metadata"] == entry["dist-info-metadata"] == {"sha256": core}
    assert entry["size"] == len(data) and entry["upload-time"].endswith("Z")
    assert "yanked" not in entry

    url = f"{REPO}/simple/demo-pkg/" + entry["url"].split("#")[0]
    assert url.endswith(f"/files/demo-pkg/{wheel_name()}")
    got = await client.get(url)
    assert got.status == 200 and await got.read() == data
    ranged = await client.get(url, headers={"Range": "bytes=2-9"})
    assert ranged.status == 206 and await ranged.read() == data[2:10]
    metadata = await client.get(url + ".metadata")
    assert metadata.status == 200
    assert await metadata.read() == metadata_text("demo-pkg", "1.0", ">=3.8")

    html = await client.get(f"{REPO}/simple/demo-pkg/")
    text = await html.text()
    assert html.headers["Content-Type"].startswith("text/html")
    assert f'href="../../files/demo-pkg/{wheel_name()}#sha256={sha256(data)}"' in text
    assert 'data-requires-python="&gt;=3.8"' in text
    assert f'data-core-metadata="sha256={core}"' in text
    assert f'data-dist-info-metadata="sha256={core}"' in text

    listed = await client.get(f"{REPO}/simple/", headers={"Accept": JSON_TYPE})
    assert (await listed.json(content_type=None))["projects"] == [{"name": "Demo.Pkg"}]
    listed_html = await (await client.get(f"{REPO}/simple/")).text()
    assert '<a href="demo-pkg/">Demo.Pkg</a>' in listed_html

    described = await client.get("/api/v1/repositories/pypi-local/packages/Demo_Pkg")
    package = await described.json()
    assert package["name"] == "demo-pkg" and package["display_name"] == "Demo.Pkg"
    (version,) = package["versions"]
    assert version["version"] == "1.0" and version["files"][0]["summary"] == "a demo"


async def test_an_sdist_has_no_core_metadata_and_versions_sort_as_versions(
    client: TestClient,
) -> None:
    for version in ("1.10", "1.9", "1.0rc1"):
        data = sdist("demo_pkg", version)
        form = upload(data, f"demo_pkg-{version}.tar.gz", version=version)
        assert (await post(client, form.form())).status == 200
    document = await page(client)
    assert document["versions"] == ["1.0rc1", "1.9", "1.10"]
    assert all("core-metadata" not in f for f in document["files"])
    metadata = await client.get(f"{REPO}/files/demo-pkg/demo_pkg-1.9.tar.gz.metadata")
    assert metadata.status == 404


async def test_names_are_normalised_with_a_redirect(client: TestClient) -> None:
    await post(client, upload(wheel()).form())
    for spelling in ("Demo_Pkg/", "demo.pkg/", "demo-pkg"):
        response = await client.get(f"{REPO}/simple/{spelling}", allow_redirects=False)
        assert response.status == 301
        assert response.headers["Location"] == f"{REPO}/simple/demo-pkg/"
    assert (await client.get(f"{REPO}/simple/other/")).status == 404
    root = await client.get(f"{REPO}/simple", allow_redirects=False)
    assert root.status == 301 and root.headers["Location"] == f"{REPO}/simple/"


async def test_re_uploads_answer_as_pypi(client: TestClient) -> None:
    data = wheel()
    assert (await post(client, upload(data).form())).status == 200
    before = await page(client)
    again = await post(client, upload(data).form())
    assert again.status == 200  # a retry is safe
    assert await page(client) == before

    other = wheel(module=b"VALUE = 43\n")
    refused = await post(client, upload(other).form())
    assert refused.status == 400
    assert refused.reason.startswith("File already exists")
    assert (await refused.text()).startswith("File already exists")
    # Refused before the bytes, by the digest it claims; and without one, after them.
    refused = await post(client, upload(other, sha256_digest=None).form())
    assert refused.status == 400 and refused.reason.startswith("File already exists")
    assert await page(client) == before

    # A repository that allows redeploys takes the new bytes.
    assert (await post(client, upload(data).form(), repo=LAX)).status == 200
    assert (await post(client, upload(other).form(), repo=LAX)).status == 200
    (entry,) = (await page(client, repo=LAX))["files"]
    assert entry["hashes"]["sha256"] == sha256(other)
    got = await client.get(f"{LAX}/files/demo-pkg/{wheel_name()}")
    assert await got.read() == other


async def test_gone_actions_and_other_protocols(client: TestClient) -> None:
    for action in ("submit", "doc_upload"):
        response = await post(client, upload(wheel(), **{":action": action}).form())
        assert response.status == 410, action
    response = await post(client, upload(wheel(), protocol_version="2").form())
    assert response.status == 400 and "protocol_version" in response.reason
    response = await post(client, upload(wheel(), **{":action": None}).form())
    assert response.status == 400
    assert (await client.get(f"{REPO}/simple/demo-pkg/")).status == 404


async def test_yank_unyank_and_delete_through_the_management_api(client: TestClient) -> None:
    for version in ("1.0", "2.0"):
        data = wheel("demo_pkg", version)
        assert (
            await post(
                client, upload(data, wheel_name("demo_pkg", version), version=version).form()
            )
        ).status == 200
    api = "/api/v1/repositories/pypi-local/packages"
    listed = await (await client.get(api)).json()
    assert listed["packages"] == [{"name": "demo-pkg", "display_name": "demo-pkg"}]

    yanked = await client.post(
        f"{api}/demo-pkg/versions/1.0/yank", json={"reason": "broken <build>"}
    )
    assert yanked.status == 200, await yanked.text()
    versions = (await yanked.json())["versions"]
    assert [v["yanked"] for v in versions] == [True, False]
    document = await page(client)
    assert [f.get("yanked") for f in document["files"]] == ["broken <build>", None]
    html = await (await client.get(f"{REPO}/simple/demo-pkg/")).text()
    assert 'data-yanked="broken &lt;build&gt;"' in html

    # Without a reason a yank is still a yank.
    file_path = f"{api}/demo-pkg/versions/2.0/files/{wheel_name('demo_pkg', '2.0')}"
    assert (await client.post(f"{file_path}/yank")).status == 200
    assert [f.get("yanked") for f in (await page(client))["files"]] == ["broken <build>", True]
    assert (await client.post(f"{api}/demo-pkg/versions/1.0/unyank")).status == 200
    assert [f.get("yanked") for f in (await page(client))["files"]] == [None, True]

    deleted = await client.delete(f"{api}/Demo.Pkg/versions/1.0")
    assert deleted.status == 200
    assert [f["filename"] for f in (await page(client))["files"]] == [wheel_name("demo_pkg", "2.0")]
    assert (await client.get(f"{REPO}/files/demo-pkg/{wheel_name()}")).status == 404
    assert (await client.delete(f"{api}/demo-pkg/versions/1.0")).status == 404

    # The deleted filename stays reserved, with other bytes or the same.
    refused = await post(client, upload(wheel()).form())
    assert refused.status == 400 and "reserved" in refused.reason
    assert "already exist" not in refused.reason  # twine --skip-existing must not skip it

    gone = await client.delete(f"{api}/demo-pkg")
    assert gone.status == 204
    assert (await client.get(f"{REPO}/simple/demo-pkg/")).status == 404
    assert (await (await client.get(api)).json())["packages"] == []
    listed = await client.get(f"{REPO}/simple/", headers={"Accept": JSON_TYPE})
    assert (await listed.json(content_type=None))["projects"] == []


async def test_a_deleted_filename_is_free_again_where_the_repository_says_so(
    client: TestClient,
) -> None:
    data = wheel()
    assert (await post(client, upload(data).form(), repo=LAX)).status == 200
    api = "/api/v1/repositories/pypi-lax/packages"
    assert (await client.delete(f"{api}/demo-pkg/versions/1.0")).status == 204
    assert (await post(client, upload(data).form(), repo=LAX)).status == 200
    assert len((await page(client, repo=LAX))["files"]) == 1


async def test_pages_carry_an_etag_and_follow_every_change(client: TestClient) -> None:
    await post(client, upload(wheel()).form())
    first = await client.get(f"{REPO}/simple/demo-pkg/")
    etag = first.headers["ETag"]
    same = await client.get(f"{REPO}/simple/demo-pkg/", headers={"If-None-Match": etag})
    assert same.status == 304
    await post(
        client,
        upload(wheel("demo_pkg", "2.0"), wheel_name("demo_pkg", "2.0"), version="2.0").form(),
    )
    changed = await client.get(f"{REPO}/simple/demo-pkg/", headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert wheel_name("demo_pkg", "2.0") in await changed.text()


async def test_a_change_made_through_another_replica_is_seen_at_once(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    config = make_config(repositories=REPOS)
    first = await aiohttp_client(create_app(config))
    if config.database.url.startswith("sqlite"):
        second = first  # one process holds an embedded database
    else:
        second = await aiohttp_client(create_app(config))
    await post(first, upload(wheel()).form())
    assert len((await page(second))["files"]) == 1  # rendered and kept on the second
    yank = "/api/v1/repositories/pypi-local/packages/demo-pkg/versions/1.0/yank"
    assert (await first.post(yank, json={"reason": "bad"})).status == 200
    assert (await page(second))["files"][0]["yanked"] == "bad"


async def test_the_collector_keeps_files_and_metadata_and_takes_them_once_deleted(
    client: TestClient,
) -> None:
    app: web.Application = client.app  # type: ignore[assignment]
    data = wheel()
    await post(client, upload(data).form())
    entry = (await page(client))["files"][0]
    blob, core = f"sha256:{sha256(data)}", f"sha256:{entry['core-metadata']['sha256']}"

    def collector() -> Collector:
        config = GcConfig(blob_grace=0)
        return Collector(
            config, app[keys.METADATA], app[keys.STORAGE], app[FORMATS], app[keys.REPOSITORIES]
        )

    storage = app[keys.STORAGE]
    await collector().run()
    assert await storage.stat(blob_key(blob)) is not None
    assert await storage.stat(blob_key(core)) is not None
    await client.delete("/api/v1/repositories/pypi-local/packages/demo-pkg")
    await collector().run()
    assert await storage.stat(blob_key(blob)) is None
    assert await storage.stat(blob_key(core)) is None


async def test_digests_in_every_spelling_clients_send(client: TestClient) -> None:
    data = wheel()
    raw_md5 = hashlib.md5(data).digest()
    import base64

    md5 = base64.urlsafe_b64encode(raw_md5).rstrip(b"=").decode()
    form = upload(data, sha256_digest=sha256(data).upper(), md5_digest=md5)
    response = await post(client, form.form())
    assert response.status == 200, response.reason
    described = await (await client.get("/api/v1/repositories/pypi-local/packages/demo-pkg")).json()
    assert json.dumps(described).count(sha256(data)) == 1


async def test_concurrent_uploads_of_one_filename_one_wins_of_many_all_land(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    """Spread over two replicas in the scale-out shape."""
    config = make_config(repositories=REPOS)
    client = await aiohttp_client(create_app(config))
    replicas = [client]
    if not config.database.url.startswith("sqlite"):
        replicas.append(await aiohttp_client(create_app(config)))
    others = [wheel(module=f"VALUE = {i}\n".encode()) for i in range(6)]
    answers = await asyncio.gather(
        *(post(replicas[i % len(replicas)], upload(data).form()) for i, data in enumerate(others))
    )
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200] + [400] * 5, [a.reason for a in answers]
    assert all(a.reason.startswith("File already exists") for a in answers if a.status == 400)
    (entry,) = (await page(client))["files"]
    winner = next(data for data, a in zip(others, answers, strict=True) if a.status == 200)
    assert entry["hashes"]["sha256"] == sha256(winner)

    versions = [f"2.{i}" for i in range(8)]
    forms = [upload(wheel("demo_pkg", v), wheel_name("demo_pkg", v), version=v) for v in versions]
    answers = await asyncio.gather(
        *(post(replicas[i % len(replicas)], form.form()) for i, form in enumerate(forms))
    )
    assert [a.status for a in answers] == [200] * len(versions)
    assert (await page(client))["versions"] == ["1.0", *versions]


async def test_a_warm_page_costs_one_query_of_the_serial(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("1.0", "2.0"):
        form = upload(wheel("demo_pkg", version), wheel_name("demo_pkg", version), version=version)
        await post(client, form.form())
    await page(client)  # rendered and kept
    app: web.Application = client.app  # type: ignore[assignment]
    db = app[keys.METADATA].db
    asked: list[str] = []
    depth = [0]  # a driver's fetchval may go by its own fetchrow: one statement
    for method in ("fetch", "fetchrow", "fetchval", "execute"):
        original = getattr(db, method)

        async def counted(sql: str, *args: Any, _original: Any = original) -> Any:
            if "pypi_" in sql and depth[0] == 0:
                asked.append(sql)
            depth[0] += 1
            try:
                return await _original(sql, *args)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(db, method, counted)
    for _ in range(3):
        await page(client)
    assert len(asked) == 3 and all("SELECT serial FROM pypi_projects" in q for q in asked), asked
