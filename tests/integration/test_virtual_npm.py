"""npm virtual repositories over a local repository and a remote one (a fake npm
registry), in both shapes: the merge rules, the dependency-confusion guard, the
cooldown, members failing or slow, explain, writes through the virtual, and a publish
seen at once on another replica; with the real npm and pnpm."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.integration.npm_upstream import DAY, NpmUpstream
from tests.integration.test_npm_local_clients import PNPM, Publisher, ok, pnpm
from tests.integration.test_remote_npm import ABBREVIATED, NPM_ACCEPT
from tests.npm_bodies import (
    provenance_bundle,
    publish_body,
    publish_document,
    tarball,
    with_provenance,
)
from tests.signin import admin_token

VIRTUAL, LOCAL, REMOTE = "npm", "npm-local", "npm-remote"


@dataclass
class Stack:
    client: TestClient  # signed in as the admin
    upstream: NpmUpstream
    token: str
    config: Any

    def url(self, repo: str = VIRTUAL) -> str:
        return str(self.client.make_url(f"/repository/{repo}/"))

    async def publish(self, name: str, version: str, repo: str = VIRTUAL, **manifest: Any) -> None:
        response = await self.client.put(
            f"/repository/{repo}/{name.replace('/', '%2f')}",
            data=publish_body(name, version, **manifest),
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 201, await response.text()

    async def get(self, path: str, repo: str = VIRTUAL, **headers: str) -> Any:
        return await self.client.get(f"/repository/{repo}/{path}", headers=headers)

    async def packument(self, name: str, accept: str = "application/json") -> dict[str, Any]:
        response = await self.get(name.replace("/", "%2f"), Accept=accept)
        assert response.status == 200, await response.text()
        document: dict[str, Any] = json.loads(await response.read())
        return document


Make = Callable[..., Awaitable[Stack]]


def repositories(upstream: str, remote: dict[str, Any], virtual: dict[str, Any]) -> list[Any]:
    return [
        {"name": LOCAL, "format": "npm", "kind": "local"},
        {
            "name": REMOTE, "format": "npm", "kind": "remote", "anonymous_read": True,
            "options": {"upstream": upstream, "retries": 0, **remote},
        },
        {
            "name": VIRTUAL, "format": "npm", "kind": "virtual", "anonymous_read": True,
            "options": {"members": [LOCAL, REMOTE], "deploy_to": LOCAL, **virtual},
        },
    ]  # fmt: skip


@pytest.fixture
async def make(aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory) -> Make:
    async def start(remote: dict[str, Any] | None = None, **virtual: Any) -> Stack:
        upstream = NpmUpstream()
        server: TestServer = await aiohttp_server(upstream.app())
        upstream.base = str(server.make_url("")).rstrip("/")
        config = make_config(repositories=repositories(upstream.base, remote or {}, virtual))
        app = create_app(config)
        client: TestClient = await aiohttp_client(app)
        token = await admin_token(app)
        client.session.headers["Authorization"] = f"Bearer {token}"
        return Stack(client, upstream, token, config)

    return start


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


async def every_tarball_downloads(stack: Stack, document: dict[str, Any]) -> int:
    """Listed ⇒ downloadable: each tarball the packument lists, fetched through the
    virtual, matches the integrity it lists."""
    base = stack.url().rstrip("/")
    for version, manifest in document["versions"].items():
        dist = manifest["dist"]
        assert dist["tarball"].startswith(base + "/"), (version, dist["tarball"])
        response = await stack.client.get(
            dist["tarball"].removeprefix(str(stack.client.make_url("")))
        )
        assert response.status == 200, (version, await response.text())
        assert sri(await response.read()) == dist["integrity"], version
        assert response.headers["X-Artifactapi-Served-By"] in (LOCAL, REMOTE), version
    return len(document["versions"])


# -- the merge rules -------------------------------------------------------------------


async def test_precedence_and_the_merge_rules(make: Make) -> None:
    stack = await make(allow=["shared"])
    up = stack.upstream
    up.add("shared", "1.0.0", age=400 * DAY, tag=None)  # other bytes than the local 1.0.0
    up.add("shared", "2.0.0", age=10 * DAY, tag="latest")
    up.tags["shared"]["next"] = "2.0.0"
    await stack.publish("shared", "1.0.0", description="ours")
    mine = json.loads(await (await stack.get("shared", repo=LOCAL)).read())
    for accept in ("application/json", NPM_ACCEPT):
        document = await stack.packument("shared", accept)
        assert sorted(document["versions"]) == ["1.0.0", "2.0.0"]
        one, two = document["versions"]["1.0.0"], document["versions"]["2.0.0"]
        # The first member that has a version gives its whole object.
        assert one["dist"]["integrity"] == mine["versions"]["1.0.0"]["dist"]["integrity"]
        assert two["dist"]["integrity"] == sri(up.releases["shared"][1].data)
        assert two["dist"]["shasum"] == hashlib.sha1(up.releases["shared"][1].data).hexdigest()
        # First member wins per tag: the local latest, the remote's next.
        assert document["dist-tags"] == {"latest": "1.0.0", "next": "2.0.0"}
        assert await every_tarball_downloads(stack, document) == 2
        ours = await stack.get("shared/-/shared-1.0.0.tgz")
        theirs = await stack.get("shared/-/shared-2.0.0.tgz")
        assert ours.headers["X-Artifactapi-Served-By"] == LOCAL
        assert theirs.headers["X-Artifactapi-Served-By"] == REMOTE
        if accept == NPM_ACCEPT:
            assert "time" not in document and "modified" in document
        else:
            times = document["time"]
            assert times["created"] == up.packument("shared", False)["time"]["created"]
            assert times["modified"] == mine["time"]["modified"]  # the local publish: now
            assert times["1.0.0"] == mine["time"]["1.0.0"]
            assert times["2.0.0"] == up.packument("shared", False)["time"]["2.0.0"]
            assert document["description"] == "ours"  # the first member's fields
            assert "_rev" not in document
    version = await stack.get("shared/2.0.0")
    assert (
        version.status == 200
        and (await version.json())["dist"]["integrity"] == two["dist"]["integrity"]
    )
    tagged = await stack.get("shared/next")
    assert (await tagged.json())["version"] == "2.0.0"
    tags = await stack.get("-/package/shared/dist-tags")
    assert await tags.json() == {"latest": "1.0.0", "next": "2.0.0"}
    unlisted = await stack.get("shared/-/shared-3.0.0.tgz")
    assert unlisted.status == 404 and "error" in await unlisted.json()
    missing = await stack.get("no-such-package")
    assert missing.status == 404 and "error" in await missing.json()


# -- the dependency-confusion guard --------------------------------------------------


async def test_a_name_the_local_member_holds_never_comes_from_upstream(
    make: Make, tmp_path: Path
) -> None:
    stack = await make()
    stack.upstream.add("internal-lib", "1.0.0")
    stack.upstream.add("internal-lib", "99.0.0")
    await stack.publish("internal-lib", "1.0.0")
    document = await stack.packument("internal-lib", NPM_ACCEPT)
    assert list(document["versions"]) == ["1.0.0"]
    assert document["dist-tags"] == {"latest": "1.0.0"}
    npm = Publisher(tmp_path / "npm", stack.url())
    npm.use(stack.token)
    ok(await asyncio.to_thread(npm.run, "install", "--no-audit", "internal-lib"))
    installed = npm.home / "project" / "node_modules" / "internal-lib" / "package.json"
    assert json.loads(installed.read_text())["version"] == "1.0.0"
    # Other spellings are the same name to the guard: never asked of the upstream.
    for spelling in ("Internal-Lib", "INTERNAL-LIB"):
        response = await stack.get(spelling)
        assert response.status == 404, spelling
    for version in ("99.0.0", "latest"):
        assert (await stack.get(f"internal-lib/{version}")).status in (200, 404)
    big = await stack.get("internal-lib/-/internal-lib-99.0.0.tgz")
    assert big.status == 404
    assert sum(n for p, n in stack.upstream.requests.items() if "nternal" in p.lower()) == 0


async def test_a_reserved_scope_is_guarded_before_the_first_publish(make: Make) -> None:
    stack = await make(reserved=["@acme/*", "acme-*"], allow=["acme-public"])
    up = stack.upstream
    for name in ("@acme/secret", "acme-tool", "acme-public", "@ACME/secret"):
        up.add(name, "99.0.0")
    for path in ("@acme%2fsecret", "@acme/secret", "@ACME%2fsecret", "@Acme/secret", "acme-tool",
                 "ACME-tool", "@acme%2fsecret/99.0.0", "@acme/secret/-/secret-99.0.0.tgz",
                 "-/package/@acme%2fsecret/dist-tags"):  # fmt: skip
        response = await stack.get(path)
        assert response.status == 404, (path, response.status)
        assert "reserved" in (await response.json())["error"], path
    assert sum(up.requests.values()) == 0
    # The allow list lets a reserved name through; a name outside it is upstream's.
    assert list((await stack.packument("acme-public"))["versions"]) == ["99.0.0"]
    assert up.requests["acme-public"] == 1
    # A publish into the reserved scope is served from the local member.
    await stack.publish("@acme/secret", "1.0.0")
    assert list((await stack.packument("@acme/secret"))["versions"]) == ["1.0.0"]
    assert up.requests["@acme/secret"] == 0 and up.requests["@ACME/secret"] == 0


async def test_names_npm_would_never_send_are_refused(make: Make) -> None:
    stack = await make(reserved=["@acme/*"])
    for bad in ("%E2%80%8Bacme", "@acme%2f%C3%A9", "caf%C3%A9", "@acme/..", "..", "a%20b"):
        response = await stack.get(bad)
        assert 400 <= response.status < 500, (bad, response.status)
    assert sum(stack.upstream.requests.values()) == 0
    huge = await stack.client.get(
        f"/api/v1/repositories/{VIRTUAL}/explain", params={"name": "x" * 5000}
    )
    assert huge.status == 400
    odd = await stack.client.get(f"/api/v1/repositories/{VIRTUAL}/explain", params={"name": "a b"})
    assert odd.status == 400


# -- cooldown ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["virtual", "remote"])
async def test_cooldown_hides_young_releases(make: Make, tmp_path: Path, where: str) -> None:
    cooldown = {"min_release_age": "3d"}
    stack = await make(**cooldown) if where == "virtual" else await make(remote=cooldown)
    up = stack.upstream
    up.add("fresh", "1.0.0", age=30 * DAY)
    up.add("fresh", "1.1.0-rc.1", age=20 * DAY, tag="next")
    up.add("fresh", "1.1.0", age=60)  # published a minute ago: latest upstream
    up.add("fresh", "1.2.0", age=None, tag="next")  # no time: waits too
    up.add("hasty", "1.0.0", age=60)
    for repo in (VIRTUAL, REMOTE) if where == "remote" else (VIRTUAL,):
        for accept in ("application/json", NPM_ACCEPT):
            response = await stack.get("fresh", repo=repo, Accept=accept)
            document = json.loads(await response.read())
            assert sorted(document["versions"]) == ["1.0.0", "1.1.0-rc.1"], repo
            # A hidden tag moves down to the highest version left at or below it, as
            # npm's --before picks it (<=1.2.0 takes no pre-release).
            assert document["dist-tags"] == {"latest": "1.0.0", "next": "1.0.0"}
            if accept != NPM_ACCEPT:
                assert "1.1.0" not in document["time"] and "1.0.0" in document["time"]
            else:
                assert response.headers["Content-Type"].startswith(ABBREVIATED)
        for path in ("fresh/-/fresh-1.1.0.tgz", "fresh/-/fresh-1.2.0.tgz"):
            refused = await stack.get(path, repo=repo)
            assert refused.status == 403, (repo, path, refused.status)
            assert "min_release_age" in (await refused.json())["error"]
        assert (await stack.get("fresh/1.1.0", repo=repo)).status == 404
        assert (await (await stack.get("fresh/latest", repo=repo)).json())["version"] == "1.0.0"
        hasty = await stack.get("hasty", repo=repo)
        if repo == VIRTUAL:  # nothing left to list
            assert hasty.status == 404
        else:  # the remote relays the upstream's document, emptied
            assert (await hasty.json())["versions"] == {} and hasty.status == 200
    # Refused before the upstream was asked for the bytes.
    assert up.requests[up.tarball_path("fresh", "1.1.0")] == 0
    npm = Publisher(tmp_path / "npm", stack.url())
    npm.use(stack.token)
    ok(await asyncio.to_thread(npm.run, "install", "--no-audit", "fresh"))
    installed = npm.home / "project" / "node_modules" / "fresh" / "package.json"
    assert json.loads(installed.read_text())["version"] == "1.0.0"
    pinned = await asyncio.to_thread(npm.run, "install", "--no-audit", "fresh@1.1.0")
    assert pinned.returncode != 0


async def test_cooldown_allow_lets_a_package_through(make: Make) -> None:
    stack = await make(min_release_age="3d", cooldown_allow=["urgent-*"])
    stack.upstream.add("urgent-fix", "1.0.0", age=60)
    document = await stack.packument("urgent-fix", NPM_ACCEPT)
    assert list(document["versions"]) == ["1.0.0"]
    assert await every_tarball_downloads(stack, document) == 1


# -- members failing or slow ---------------------------------------------------------


async def test_a_failing_remote_member_is_served_stale_or_left_out(make: Make) -> None:
    stack = await make(remote={"metadata_ttl": 0.1}, allow=["ours"])  # the remote is asked
    up = stack.upstream
    up.add("left-pad", "1.0.0")
    await stack.publish("ours", "1.0.0")
    first = await stack.get("left-pad", Accept=NPM_ACCEPT)
    assert first.status == 200 and "X-Artifactapi-Members-Stale" not in first.headers
    await asyncio.sleep(0.2)
    up.fault = "500"
    stale = await stack.get("left-pad", Accept=NPM_ACCEPT)
    assert stale.status == 200, await stale.text()
    assert stale.headers["X-Artifactapi-Members-Stale"] == REMOTE
    assert stale.headers["Warning"].startswith("110")
    assert list(json.loads(await stale.read())["versions"]) == ["1.0.0"]
    # Never fetched: left out, and the header says so; the local member still answers.
    never = await stack.get("never-seen")
    assert never.status == 502 and "error" in await never.json()
    assert never.headers["X-Artifactapi-Members-Skipped"] == f"{REMOTE}=failed"
    served = await stack.get("ours")
    assert served.status == 200
    assert served.headers["X-Artifactapi-Members-Skipped"] == f"{REMOTE}=failed"
    assert list((await served.json())["versions"]) == ["1.0.0"]


async def test_a_slow_member_is_left_out_within_its_timeout(make: Make) -> None:
    stack = await make(member_timeout=0.5, allow=["ours"])
    stack.upstream.add("slow-lib", "1.0.0")
    await stack.publish("ours", "1.0.0")
    stack.upstream.delay = 3.0
    started = time.monotonic()
    answer = await stack.get("ours")
    assert time.monotonic() - started < 2.0
    assert answer.status == 200
    assert answer.headers["X-Artifactapi-Members-Skipped"] == f"{REMOTE}=timeout"
    slow = await stack.get("slow-lib")
    assert (
        slow.status == 502 and slow.headers["X-Artifactapi-Members-Skipped"] == f"{REMOTE}=timeout"
    )
    # The slow fetch went on and filled the cache: the next request has it at once.
    await asyncio.sleep(3.0)
    started = time.monotonic()
    filled = await stack.get("slow-lib")
    assert filled.status == 200 and time.monotonic() - started < 1.0
    assert "X-Artifactapi-Members-Skipped" not in filled.headers


# -- explain -------------------------------------------------------------------------


async def test_explain_says_which_member_serves_and_why_the_others_do_not(make: Make) -> None:
    stack = await make(reserved=["@acme/*"], min_release_age="3d")
    up = stack.upstream
    up.add("internal-lib", "99.0.0")
    up.add("public-lib", "1.0.0", age=30 * DAY)
    up.add("public-lib", "2.0.0", age=60)
    await stack.publish("internal-lib", "1.0.0")

    async def explain(name: str, version: str | None = None) -> dict[str, Any]:
        params = {"name": name} | ({"version": version} if version else {})
        response = await stack.client.get(f"/api/v1/repositories/{VIRTUAL}/explain", params=params)
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer

    held = await explain("internal-lib")
    assert held["served_by"] == LOCAL
    local, remote = held["members"]
    assert (local["name"], local["status"], local["versions"]) == (LOCAL, "served", ["1.0.0"])
    assert remote["status"] == "guarded" and LOCAL in remote["reason"]
    reserved = await explain("@ACME/thing")
    assert reserved["served_by"] is None and reserved["normalized"] == "@acme/thing"
    assert reserved["guard"]["reserved_by"] == "@acme/*"
    assert [m["status"] for m in reserved["members"]] == ["absent", "guarded"]
    public = await explain("public-lib")
    assert public["served_by"] == REMOTE
    assert public["members"][1]["versions"] == ["1.0.0"]
    assert public["members"][1]["held_back"] == ["2.0.0"]
    young = await explain("public-lib", "2.0.0")
    assert young["served_by"] is None and young["members"][1]["status"] == "cooldown"
    assert sum(up.requests[p] for p in ("internal-lib", "@acme/thing", "@ACME/thing")) == 0
    local_repo = await stack.client.get(
        f"/api/v1/repositories/{LOCAL}/explain", params={"name": "x"}
    )
    assert local_repo.status == 404


# -- writes through the virtual ------------------------------------------------------


async def test_writes_without_deploy_to_are_refused_in_npms_shape(make: Make) -> None:
    stack = await make(deploy_to=None)
    put = await stack.client.put(
        f"/repository/{VIRTUAL}/thing", data=publish_body("thing", "1.0.0")
    )
    assert put.status == 405
    assert "deploy_to" in (await put.json())["error"]
    tag = await stack.client.put(
        f"/repository/{VIRTUAL}/-/package/thing/dist-tags/next", json="1.0.0"
    )
    assert tag.status == 405
    assert (await stack.get("thing", repo=LOCAL)).status == 404


async def test_staged_publishes_are_deploy_tos_read_and_written_through_the_virtual(
    make: Make,
) -> None:
    stack = await make()
    client = stack.client
    staged = await client.post(
        f"/repository/{VIRTUAL}/-/stage/package/thing", data=publish_body("thing", "1.1.0")
    )
    assert staged.status == 201, await staged.text()
    stage_id = (await staged.json())["stageId"]
    listed = await client.get(f"/repository/{VIRTUAL}/-/stage")
    assert listed.status == 200, await listed.text()
    assert stage_id in await listed.text()
    item = await client.get(f"/repository/{VIRTUAL}/-/stage/{stage_id}")
    assert item.status == 200 and (await item.json())["version"] == "1.1.0"
    # What waits in deploy_to takes deploy_to's read, not the (public) virtual's.
    async with aiohttp.ClientSession() as anonymous:
        public = await anonymous.get(stack.url() + "-/ping")
        assert public.status == 200  # the virtual reads anonymously
        refused = await anonymous.get(stack.url() + f"-/stage/{stage_id}")
        assert refused.status == 401
    approved = await client.post(f"/repository/{VIRTUAL}/-/stage/{stage_id}/approve")
    assert approved.status == 200, await approved.text()
    assert "1.1.0" in (await stack.packument("thing"))["versions"]


async def test_npm_writes_and_account_endpoints_through_the_virtual(
    make: Make, tmp_path: Path
) -> None:
    stack = await make()
    npm = Publisher(tmp_path / "npm", stack.url())
    npm.use(stack.token)
    assert ok(await asyncio.to_thread(npm.run, "whoami")).strip() == "admin"
    ok(await asyncio.to_thread(npm.run, "ping"))
    for version in ("1.0.0", "1.1.0"):
        ok(await asyncio.to_thread(npm.publish, npm.package("team-thing", version)))
    local = json.loads(await (await stack.get("team-thing", repo=LOCAL)).read())
    assert sorted(local["versions"]) == ["1.0.0", "1.1.0"]  # landed in deploy_to
    ok(await asyncio.to_thread(npm.run, "dist-tag", "add", "team-thing@1.0.0", "stable"))
    tags = ok(await asyncio.to_thread(npm.run, "dist-tag", "ls", "team-thing"))
    assert tags.split() == ["latest:", "1.1.0", "stable:", "1.0.0"]
    ok(await asyncio.to_thread(npm.run, "deprecate", "team-thing@1.0.0", "use 1.1"))
    seen = json.loads(ok(await asyncio.to_thread(npm.run, "view", "team-thing@1.0.0", "--json")))
    assert seen["deprecated"] == "use 1.1"
    ok(await asyncio.to_thread(npm.run, "unpublish", "team-thing@1.1.0"))
    after = json.loads(ok(await asyncio.to_thread(npm.run, "view", "team-thing", "--json")))
    assert after["versions"] == ["1.0.0"] and after["dist-tags"]["latest"] == "1.0.0"
    found = json.loads(ok(await asyncio.to_thread(npm.run, "search", "team", "--json")))
    assert [p["name"] for p in found] == ["team-thing"]


# -- fresh at once -------------------------------------------------------------------


async def test_a_publish_is_seen_through_the_virtual_on_another_replica(
    make: Make, aiohttp_client: Any
) -> None:
    stack = await make()
    stack.upstream.add("left-pad", "1.0.0")
    other: TestClient = await aiohttp_client(create_app(stack.config))
    other.session.headers["Authorization"] = f"Bearer {stack.token}"
    await stack.publish("team-lib", "1.0.0")
    seen = await other.get(f"/repository/{VIRTUAL}/team-lib", headers={"Accept": NPM_ACCEPT})
    assert list(json.loads(await seen.read())["versions"]) == ["1.0.0"]
    await stack.publish("team-lib", "1.1.0")  # on the first replica
    again = await other.get(f"/repository/{VIRTUAL}/team-lib", headers={"Accept": NPM_ACCEPT})
    document = json.loads(await again.read())
    assert sorted(document["versions"]) == ["1.0.0", "1.1.0"]
    assert document["dist-tags"]["latest"] == "1.1.0"
    tarball = await other.get(f"/repository/{VIRTUAL}/team-lib/-/team-lib-1.1.0.tgz")
    assert (
        tarball.status == 200
        and sri(await tarball.read()) == document["versions"]["1.1.0"]["dist"]["integrity"]
    )


# -- real clients end to end ---------------------------------------------------------


@pytest.mark.parametrize("client", ["npm", "pnpm"])
async def test_publish_into_the_virtual_then_install_with_an_upstream_dependency(
    make: Make, tmp_path: Path, client: str
) -> None:
    # npm reads the packument before its first publish: the reserved scope keeps even
    # that read from the upstream.
    stack = await make(reserved=["@team/*"])
    stack.upstream.add("left-pad", "1.3.0")
    npm = Publisher(tmp_path / "npm", stack.url())
    npm.use(stack.token)
    name = f"@team/{client}-app"
    folder = npm.package(name, "1.0.0", dependencies={"left-pad": "^1.0.0"})
    if client == "npm":
        ok(await asyncio.to_thread(npm.publish, folder))
    else:
        assert PNPM.exists(), f"{PNPM} is missing: run make clients"
        ok(await asyncio.to_thread(pnpm, npm, folder, "publish", "--no-git-checks"))
    landed = await stack.get(name.replace("/", "%2f"), repo=LOCAL)
    assert landed.status == 200 and list((await landed.json())["versions"]) == ["1.0.0"]
    consumer = npm.home / f"{client}-consumer"
    consumer.mkdir()
    (consumer / "package.json").write_text(json.dumps({"name": "c", "version": "0.0.0"}))
    if client == "npm":
        ok(await asyncio.to_thread(npm.run_in, consumer, "install", "--no-audit", name))
    else:
        ok(await asyncio.to_thread(pnpm, npm, consumer, "add", name))
    app = json.loads((consumer / "node_modules" / name / "package.json").read_text())
    assert app["version"] == "1.0.0"
    # npm hoists the dependency; pnpm links it beside the package in its store.
    beside = (consumer / "node_modules" / name).resolve().parent.parent / "left-pad"
    pad = consumer / "node_modules" / "left-pad" if client == "npm" else beside
    assert json.loads((pad / "package.json").read_text())["version"] == "1.3.0"
    assert stack.upstream.requests[stack.upstream.tarball_path("left-pad", "1.3.0")] == 1
    assert stack.upstream.requests[name] == 0  # the team's scope never left here


async def test_conditional_and_head_requests_and_an_inner_virtual(
    aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory
) -> None:
    """A virtual over another virtual: the inner one's reserved scope still guards."""
    upstream = NpmUpstream()
    server: TestServer = await aiohttp_server(upstream.app())
    upstream.base = str(server.make_url("")).rstrip("/")
    upstream.add("@inner/x", "9.0.0")
    upstream.add("@acme/util", "1.0.0")
    repos = repositories(upstream.base, {}, {"reserved": ["@inner/*"]})
    outer = {
        "name": "outer", "format": "npm", "kind": "virtual", "anonymous_read": True,
        "options": {"members": [VIRTUAL]},
    }  # fmt: skip
    client: TestClient = await aiohttp_client(create_app(make_config(repositories=[*repos, outer])))
    guarded = await client.get("/repository/outer/@inner%2fx")
    assert guarded.status == 404 and upstream.requests["@inner/x"] == 0
    first = await client.get("/repository/outer/@acme%2futil", headers={"Accept": NPM_ACCEPT})
    assert first.status == 200
    document = json.loads(await first.read())
    assert first.headers["Content-Encoding"] == "gzip"  # what npm accepts, compressed once
    plain = await client.get(
        "/repository/outer/@acme%2futil",
        headers={"Accept": NPM_ACCEPT, "Accept-Encoding": "identity"},
    )
    assert "Content-Encoding" not in plain.headers
    assert json.loads(await plain.read()) == document
    assert plain.headers["ETag"] != first.headers["ETag"]
    tarball = document["versions"]["1.0.0"]["dist"]["tarball"]
    assert tarball == str(client.make_url("/repository/outer/@acme/util/-/util-1.0.0.tgz"))
    etag = first.headers["ETag"]
    again = await client.get(
        "/repository/outer/@acme%2futil", headers={"Accept": NPM_ACCEPT, "If-None-Match": etag}
    )
    assert again.status == 304
    head = await client.head("/repository/outer/@acme/util/-/util-1.0.0.tgz")
    assert head.status == 200 and head.headers["Content-Length"] == str(
        len(upstream.releases["@acme/util"][0].data)
    )
    got = await client.get("/repository/outer/@acme/util/-/util-1.0.0.tgz")
    assert await got.read() == upstream.releases["@acme/util"][0].data
    refused = await client.put("/repository/outer/@acme%2futil", data=b"{}")
    assert refused.status == 405 and "deploy_to" in (await refused.json())["error"]


async def test_npm_audit_through_the_virtual_never_sends_the_teams_names(
    make: Make, tmp_path: Path
) -> None:
    stack = await make(reserved=["@acme/*"])
    up = stack.upstream
    up.add("left-pad", "1.3.0")
    up.add("internal-lib", "1.0.0")  # the same name upstream: vulnerable there
    await stack.publish("internal-lib", "1.0.0")
    await stack.publish("@acme/tool", "1.0.0")
    npm = Publisher(tmp_path / "npm", stack.url())
    npm.use(stack.token)
    ok(
        await asyncio.to_thread(
            npm.run, "install", "--no-audit", "left-pad", "internal-lib", "@acme/tool"
        )
    )
    audit = await asyncio.to_thread(npm.run, "audit", "--json")
    assert audit.returncode == 1, audit.stdout + audit.stderr  # left-pad is vulnerable
    assert sorted(json.loads(audit.stdout)["vulnerabilities"]) == ["left-pad"]
    assert [sorted(body) for body in up.audited] == [["left-pad"]]
    only_ours = await stack.client.post(
        f"/repository/{VIRTUAL}/-/npm/v1/security/advisories/bulk",
        json={"internal-lib": ["1.0.0"], "Internal-Lib": ["1.0.0"], "@ACME/tool": ["1.0.0"]},
    )
    assert only_ours.status == 200 and await only_ours.json() == {}
    assert len(up.audited) == 1
    bad = await stack.client.post(
        f"/repository/{VIRTUAL}/-/npm/v1/security/advisories/bulk", data=b"[1"
    )
    assert bad.status == 400


async def test_provenance_published_through_the_virtual_is_served_there(make: Make) -> None:
    stack = await make()
    name, version = "@team/proven", "1.0.0"
    data = tarball(name, version)
    body = with_provenance(publish_document(name, version, data), name, version, data)
    put = await stack.client.put(f"/repository/{VIRTUAL}/@team%2fproven", data=body)
    assert put.status == 201, await put.text()
    document = await stack.packument(name)
    url = document["versions"][version]["dist"]["attestations"]["url"]
    assert url == stack.url() + f"-/npm/v1/attestations/{name}@{version}"
    response = await stack.client.get(url.removeprefix(str(stack.client.make_url(""))))
    assert response.status == 200, await response.text()
    (found,) = (await response.json())["attestations"]
    assert found["bundle"] == provenance_bundle(name, version, data)
    missing = await stack.get(f"-/npm/v1/attestations/{name}@9.9.9")
    assert missing.status == 404
