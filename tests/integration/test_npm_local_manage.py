"""npm local repositories beyond the CLI, in both shapes: the management API (packages,
versions and files; delete is unpublish, yank deprecates), who may unpublish, and the
collector taking an unpublished version's tarball after the grace."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import keys
from app.auth.manage import create_principal, create_token
from app.middleware import FORMATS
from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.integration.test_gc import collector, freed, state
from tests.npm_bodies import publish_body, tarball

REPO = "npm-local"
ROOT = f"/repository/{REPO}"
API = f"/api/v1/repositories/{REPO}/packages"
LOCAL = {"name": REPO, "format": "npm", "kind": "local"}
ABBREVIATED = "application/vnd.npm.install-v1+json"
GRANTS = [{"repository": REPO, "users": ["writer"], "actions": ["read", "write"]}]


@pytest.fixture
async def client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient:
    config = make_config(repositories=[LOCAL], auth={"permissions": GRANTS})
    return await aiohttp_client(create_app(config))  # type: ignore[no-any-return]


async def publish(client: TestClient, name: str, *versions: str) -> None:
    for version in versions:
        response = await client.put(
            f"{ROOT}/{name.replace('/', '%2f')}", data=publish_body(name, version)
        )
        assert response.status == 201, await response.text()


async def versions(client: TestClient, name: str) -> list[str]:
    response = await client.get(f"{ROOT}/{name.replace('/', '%2f')}")
    return sorted((await response.json())["versions"]) if response.status == 200 else []


async def test_packages_versions_and_files(client: TestClient) -> None:
    await publish(client, "@acme/util", "1.0.0", "1.1.0")
    await publish(client, "demo", "0.1.0")
    listed = await (await client.get(API)).json()
    assert [(p["name"], p["versions"]) for p in listed["packages"]] == [
        ("@acme/util", 2),
        ("demo", 1),
    ]
    page = await (await client.get(API, params={"limit": "1"})).json()
    assert [p["name"] for p in page["packages"]] == ["@acme/util"] and page["next"] == "@acme/util"
    package = await (await client.get(f"{API}/@acme/util")).json()
    assert package["dist-tags"] == {"latest": "1.1.0"}
    first = package["versions"][0]
    assert first["version"] == "1.0.0" and first["state"] == "published"
    (file,) = first["files"]
    assert file["name"] == "util-1.0.0.tgz" and file["size"] == len(tarball("@acme/util", "1.0.0"))
    assert (await client.get(f"{API}/nothing")).status == 404


async def test_yank_deprecates_delete_unpublishes(client: TestClient) -> None:
    await publish(client, "demo", "1.0.0", "1.1.0", "1.2.0")
    yanked = await client.post(f"{API}/demo/versions/1.0.0/yank", json={"reason": "broken"})
    assert yanked.status == 200, await yanked.text()
    doc = await (await client.get(f"{ROOT}/demo")).json()
    assert doc["versions"]["1.0.0"]["deprecated"] == "broken"
    await client.post(f"{API}/demo/versions/1.0.0/unyank")
    doc = await (await client.get(f"{ROOT}/demo")).json()
    assert "deprecated" not in doc["versions"]["1.0.0"]
    refused = await client.delete(f"{API}/demo/versions/1.1.0/files/demo-1.1.0.tgz")
    assert refused.status == 400
    gone = await client.delete(f"{API}/demo/versions/1.1.0")
    assert gone.status == 200
    states = {v["version"]: v["state"] for v in (await gone.json())["versions"]}
    assert states == {"1.0.0": "published", "1.1.0": "unpublished", "1.2.0": "published"}
    assert await versions(client, "demo") == ["1.0.0", "1.2.0"]
    assert (await client.delete(f"{API}/demo/versions/1.1.0")).status == 404
    assert (await client.delete(f"{API}/demo")).status == 204
    assert await versions(client, "demo") == []
    again = await client.put(f"{ROOT}/demo", data=publish_body("demo", "1.2.0"))
    assert again.status == 403


async def test_unpublishing_takes_delete(client: TestClient, aiohttp_client: Any) -> None:
    await publish(client, "demo", "1.0.0", "1.1.0")
    records = client.app[keys.AUTH].records
    await create_principal(records, "writer", password="a long enough password")
    secret, _ = await create_token(records, "writer")
    headers = {"Authorization": f"Bearer {secret}"}
    doc = await (await client.get(f"{ROOT}/demo?write=true")).json()
    # A write may deprecate and tag...
    doc["versions"]["1.0.0"]["deprecated"] = "old"
    assert (await client.put(f"{ROOT}/demo", json=doc, headers=headers, auth=None)).status == 200
    tagged = await client.put(
        f"{ROOT}/-/package/demo/dist-tags/next", json="1.0.0", headers=headers
    )
    assert tagged.status == 200
    # ...but not remove versions, however it asks.
    doc = await (await client.get(f"{ROOT}/demo?write=true")).json()
    del doc["versions"]["1.1.0"]
    refused = await client.put(f"{ROOT}/demo/-rev/{doc['_rev']}", json=doc, headers=headers)
    assert refused.status == 403 and set(await refused.json()) == {"error"}
    whole = await client.delete(f"{ROOT}/demo/-rev/{doc['_rev']}", headers=headers)
    assert whole.status == 403
    assert (await client.delete(f"{API}/demo", headers=headers)).status == 403
    assert await versions(client, "demo") == ["1.0.0", "1.1.0"]
    # A stale revision is refused: the change was computed from an old document.
    stale = await client.put(f"{ROOT}/demo/-rev/1-x", json=doc)
    assert stale.status == 409
    assert (await client.put(f"{ROOT}/demo/-rev/{doc['_rev']}", json=doc)).status == 200
    assert await versions(client, "demo") == ["1.0.0"]


async def test_an_unpublished_tarball_is_collected_after_the_grace(client: TestClient) -> None:
    await publish(client, "demo", "1.0.0", "1.1.0")
    app = client.app
    package = await (await client.get(f"{API}/demo")).json()
    digests = {v["version"]: v["files"][0]["digest"] for v in package["versions"]}
    assert freed(await collector(app).run(), "blobs") == (0, 0)
    assert (await client.delete(f"{API}/demo/versions/1.1.0")).status == 200
    young = await collector(app, blob_grace=3600).run()
    assert freed(young, "blobs") == (0, 0)
    report = await collector(app).run()
    assert freed(report, "blobs") == (1, len(tarball("demo", "1.1.0")))
    assert await state(app, digests["1.1.0"]) is None
    assert await state(app, digests["1.0.0"]) == "live"
    got = await client.get(f"{ROOT}/demo/-/demo-1.0.0.tgz")
    assert await got.read() == tarball("demo", "1.0.0")


async def test_a_staged_version_is_invisible_until_approved(client: TestClient) -> None:
    await publish(client, "demo", "1.0.0")
    staged = await client.post(
        f"{ROOT}/-/stage/package/demo", data=publish_body("demo", "1.1.0", tag="next")
    )
    assert staged.status == 201, await staged.text()
    stage_id = (await staged.json())["stageId"]
    assert await versions(client, "demo") == ["1.0.0"]
    assert (await client.get(f"{ROOT}/demo/-/demo-1.1.0.tgz")).status == 404
    got = await client.get(f"{ROOT}/-/stage/{stage_id}/tarball")
    assert await got.read() == tarball("demo", "1.1.0")
    item = await (await client.get(f"{ROOT}/-/stage/{stage_id}")).json()
    assert item["tag"] == "next" and item["version"] == "1.1.0"
    # The staged version is taken: publishing it directly is refused.
    assert (await client.put(f"{ROOT}/demo", data=publish_body("demo", "1.1.0"))).status == 403
    assert (await client.post(f"{ROOT}/-/stage/{stage_id}/approve")).status == 200
    assert await versions(client, "demo") == ["1.0.0", "1.1.0"]
    tags = await (await client.get(f"{ROOT}/-/package/demo/dist-tags")).json()
    assert tags == {"latest": "1.0.0", "next": "1.1.0"}
    assert (await client.post(f"{ROOT}/-/stage/{stage_id}/approve")).status == 404
    listed = await (await client.get(f"{ROOT}/-/stage")).json()
    assert listed == {"items": [], "total": 0}


@pytest.mark.parametrize("shape", ["scale-out"])  # replicas are the scale-out shape's
async def test_every_replica_sees_a_change_on_its_next_request(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    config = make_config(repositories=[LOCAL])
    first = await aiohttp_client(create_app(config))
    second = await aiohttp_client(create_app(config))
    await publish(first, "demo", "1.0.0")
    assert await versions(second, "demo") == ["1.0.0"]  # cached on the second now
    await publish(first, "demo", "1.1.0")
    assert await versions(second, "demo") == ["1.0.0", "1.1.0"]
    doc = await (await second.get(f"{ROOT}/demo")).json()
    doc["versions"]["1.0.0"]["deprecated"] = "gone"
    assert (await second.put(f"{ROOT}/demo", data=json.dumps(doc))).status == 200
    assert (await (await first.get(f"{ROOT}/demo")).json())["versions"]["1.0.0"][
        "deprecated"
    ] == "gone"
    assert doc["_rev"].split("-")[0] == "2"
    # Each replica holds the rows as of a serial and reads only what changed since:
    # unpublished, deprecated, approved and rejected versions, both ways.
    body = publish_body("demo", "1.2.0", tag="next")
    staged = await (await second.post(f"{ROOT}/-/stage/package/demo", data=body)).json()
    rejected = await second.post(f"{ROOT}/-/stage/package/demo", data=publish_body("demo", "1.3.0"))
    assert await versions(first, "demo") == ["1.0.0", "1.1.0"]
    assert (await first.post(f"{ROOT}/-/stage/{staged['stageId']}/approve")).status == 200
    assert (
        await first.delete(f"{ROOT}/-/stage/{(await rejected.json())['stageId']}")
    ).status == 200
    assert (await second.delete(f"{API}/demo/versions/1.1.0")).status == 200
    assert (await second.post(f"{API}/demo/versions/1.0.0/unyank")).status == 200
    for replica in (first, second):
        doc = await (await replica.get(f"{ROOT}/demo")).json()
        assert sorted(doc["versions"]) == ["1.0.0", "1.2.0"]
        # latest named the unpublished 1.1.0: it moved to the newest version left.
        assert doc["dist-tags"] == {"latest": "1.2.0", "next": "1.2.0"}
        assert "deprecated" not in doc["versions"]["1.0.0"]
        short = await replica.get(f"{ROOT}/demo", headers={"Accept": ABBREVIATED})
        assert sorted((await short.json())["versions"]) == ["1.0.0", "1.2.0"]


async def test_a_replica_reads_again_only_the_rows_changed_since_its_serial(
    client: TestClient,
) -> None:
    app = client.app
    local = app[FORMATS]["npm"].local
    repo = app[keys.REPOSITORIES].get(REPO)
    await publish(client, "demo", "1.0.0", "1.1.0", "1.2.0")
    held = await local.mirror.current(repo.id, "demo")
    assert held is not None and len(held[0].versions) == 3
    serial = held[0].serial
    assert (await client.post(f"{API}/demo/versions/1.0.0/yank")).status == 200
    assert (await client.delete(f"{API}/demo/versions/1.2.0")).status == 200
    changed = await local.records.load(repo.id, "demo", since=serial)
    assert changed is not None and sorted(v.version for v in changed.versions) == ["1.0.0", "1.2.0"]
    mirrored = await local.mirror.current(repo.id, "demo")
    whole = await local.records.load(repo.id, "demo")
    assert mirrored is not None and whole is not None
    assert mirrored[0].versions == whole.versions and mirrored[0].serial == whole.serial
    assert mirrored[0].tags == whole.tags == {"latest": "1.1.0"}
