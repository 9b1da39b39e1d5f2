"""Virtual PyPI repositories over HTTP, in both shapes: the merged page (union, the first
member wins per filename, every file URL ours and every listed file downloadable), the
project list, the dependency-confusion guard (local names, reserved globs, spellings,
look-alikes, the allow list), the cooldown (the virtual's and a remote's own), a
failing member (stale copy, header) and a slow one (answer within member_timeout),
explain, writes through the virtual, and a publish seen on another replica at once.
The upstream is a fake index speaking PEP 691 JSON with PEP 700 upload times."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import hashlib
import io
import json
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app import keys
from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.pypi_dists import JSON_TYPE, sha256, upload, wheel, wheel_name
from tests.signin import sign_in
from tests.waiting import expired

OLD = "2020-01-01T00:00:00.000000Z"
DAY = 86400.0


def now_iso(ago: float = 0.0) -> str:
    when = dt.datetime.fromtimestamp(time.time() - ago, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Dist:
    filename: str
    body: bytes
    upload_time: str | None = OLD
    yanked: bool | str = False
    requires_python: str | None = ">=3.8"

    @property
    def metadata(self) -> bytes | None:
        if not self.filename.endswith(".whl"):
            return None
        with zipfile.ZipFile(io.BytesIO(self.body)) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            return archive.read(name)


def dist(name: str, version: str, **kwargs: Any) -> Dist:
    """A real wheel of ``name`` (its filename's spelling) at ``version``."""
    return Dist(
        wheel_name(name, version), wheel(name, version, **kwargs.pop("wheel", {})), **kwargs
    )


@dataclass
class Upstream:
    """A simple index: ``/simple/`` and ``/simple/<project>/`` in PEP 691 JSON with
    sizes and upload times, files under ``/packages/``. ``fault = "500"`` breaks every
    answer; ``delay`` holds every page's answer that long."""

    projects: dict[str, list[Dist]] = field(default_factory=dict)  # normalised name -> files
    fault: str | None = None
    delay: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/simple/", self.listing)
        app.router.add_get("/simple/{project}/", self.page)
        app.router.add_get("/packages/{filename}", self.file)
        return app

    async def listing(self, request: web.Request) -> web.Response:
        self.requests["simple/"] += 1
        if self.fault == "500":
            return web.Response(status=500)
        names = [{"name": name} for name in self.projects]
        document = {"meta": {"api-version": "1.1"}, "projects": names}
        return web.Response(body=json.dumps(document), content_type=JSON_TYPE)

    async def page(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        self.requests[f"simple/{project}/"] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fault == "500":
            return web.Response(status=500)
        if project not in self.projects:
            return web.Response(status=404)
        files = []
        for d in self.projects[project]:
            entry: dict[str, Any] = {
                "filename": d.filename,
                "url": f"/packages/{d.filename}",
                "hashes": {"sha256": sha256(d.body)},
                "requires-python": d.requires_python,
                "yanked": d.yanked,
                "size": len(d.body),
            }
            if d.upload_time is not None:
                entry["upload-time"] = d.upload_time
            if d.metadata is not None:
                entry["core-metadata"] = {"sha256": sha256(d.metadata)}
            files.append(entry)
        versions = sorted({d.filename.split("-")[1] for d in self.projects[project]})
        document = {
            "meta": {"api-version": "1.1"},
            "name": project,
            "versions": versions,
            "files": files,
        }
        return web.Response(body=json.dumps(document), content_type=JSON_TYPE)

    async def file(self, request: web.Request) -> web.Response:
        filename = request.match_info["filename"]
        self.requests[filename] += 1
        if self.fault == "500":
            return web.Response(status=500)
        name = filename.removesuffix(".metadata")
        for files in self.projects.values():
            for d in files:
                if d.filename == name:
                    body = d.metadata if filename != name else d.body
                    assert body is not None
                    return web.Response(body=body, content_type="application/octet-stream")
        return web.Response(status=404)


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def remote(name: str, server: TestServer, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "format": "pypi",
        "kind": "remote",
        "options": {"upstream": url_of(server), "retries": 0, **options},
    }


def local(name: str) -> dict[str, Any]:
    return {"name": name, "format": "pypi", "kind": "local"}


def virtual(name: str, members: list[str], **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "format": "pypi",
        "kind": "virtual",
        "options": {"members": members, **options},
    }


def public_upstream() -> Upstream:
    return Upstream(
        {
            "public-dep": [
                dist("public_dep", "1.0"),
                dist("public_dep", "1.1", yanked="broken", requires_python=">=3.9"),
            ],
            "internal-lib": [dist("internal_lib", "99.0")],
            "acme-tools": [dist("acme_tools", "5.0")],
            "fresh-pkg": [
                dist("fresh_pkg", "1.0", upload_time=now_iso(30 * DAY)),
                dist("fresh_pkg", "2.0", upload_time=now_iso()),
                dist("fresh_pkg", "3.0", upload_time=None),
            ],
        }
    )


@pytest.fixture
def index() -> Upstream:
    return public_upstream()


@pytest.fixture
async def upstream(aiohttp_server: Any, index: Upstream) -> TestServer:
    server: TestServer = await aiohttp_server(index.app())
    return server


def repositories(upstream: TestServer) -> list[dict[str, Any]]:
    return [
        local("pypi-local"),
        local("pypi-other"),
        remote("pypi-remote", upstream),
        remote("pypi-cool", upstream, min_release_age="3d"),
        virtual(
            "pypi",
            ["pypi-local", "pypi-other", "pypi-remote"],
            deploy_to="pypi-local",
            reserved=["acme-*"],
        ),
        virtual("pypi-open", ["pypi-local", "pypi-remote"], allow=["internal-lib"]),
        virtual(
            "pypi-wait",
            ["pypi-local", "pypi-remote"],
            min_release_age="3d",
            cooldown_allow=["allowed-*"],
        ),
        virtual("pypi-ro", ["pypi-local"]),
        # pypi's members in its order, its guard still over pypi-remote; pypi-cool is
        # under this one's guard alone, which reserves nothing.
        virtual("pypi-all", ["pypi", "pypi-cool"]),
    ]


@pytest.fixture
async def client(
    aiohttp_client: Any, make_config: ConfigFactory, upstream: TestServer
) -> TestClient:
    made: TestClient = await aiohttp_client(
        create_app(make_config(repositories=repositories(upstream)))
    )
    await sign_in(made)
    return made


async def publish(client: TestClient, repo: str, name: str, version: str, **kwargs: Any) -> bytes:
    body = wheel(name.replace("-", "_"), version, **kwargs)
    form = upload(body, wheel_name(name.replace("-", "_"), version), name=name, version=version)
    response = await client.post(f"/repository/{repo}/legacy/", data=form.form())
    assert response.status == 200, await response.text()
    return body


async def page(client: TestClient, repo: str, project: str, status: int = 200) -> dict[str, Any]:
    response = await client.get(
        f"/repository/{repo}/simple/{project}/", headers={"Accept": JSON_TYPE}
    )
    assert response.status == status, await response.text()
    if status != 200:
        return {"headers": dict(response.headers)}
    assert response.headers["Content-Type"] == JSON_TYPE
    document: dict[str, Any] = await response.json(content_type=None)
    document["headers"] = dict(response.headers)
    return document


async def downloads_everything(client: TestClient, repo: str, project: str) -> dict[str, bytes]:
    """Listed ⇒ downloadable: every file (and core metadata) the merged page lists, by
    its URL resolved against the page, matching the page's hashes."""
    base = f"/repository/{repo}/simple/{project}/"
    document = await page(client, repo, project)
    got: dict[str, bytes] = {}
    for file in document["files"]:
        url = urldefrag(urljoin(base, file["url"]))[0]
        assert url.startswith(f"/repository/{repo}/files/"), url
        response = await client.get(url)
        assert response.status == 200, (url, await response.text())
        body = await response.read()
        assert hashlib.sha256(body).hexdigest() == file["hashes"]["sha256"], url
        got[file["filename"]] = body
        if file.get("core-metadata"):
            meta = await client.get(url + ".metadata")
            assert meta.status == 200, url
            assert hashlib.sha256(await meta.read()).hexdigest() == file["core-metadata"]["sha256"]
    return got


async def test_locals_merge_the_first_member_wins_per_filename(client: TestClient) -> None:
    first = await publish(client, "pypi-local", "demo-pkg", "1.0")
    await publish(client, "pypi-other", "demo-pkg", "1.0", module=b"VALUE = 2\n")
    later = await publish(client, "pypi-other", "demo-pkg", "1.1")
    document = await page(client, "pypi", "demo-pkg")
    files = {f["filename"]: f for f in document["files"]}
    assert set(files) == {wheel_name("demo_pkg", "1.0"), wheel_name("demo_pkg", "1.1")}
    assert files[wheel_name("demo_pkg", "1.0")]["hashes"] == {"sha256": sha256(first)}
    assert document["versions"] == ["1.0", "1.1"]
    assert document["meta"]["api-version"] == "1.1"  # PEP 700: sizes and versions
    assert all(f["size"] and f["upload-time"] for f in document["files"])
    got = await downloads_everything(client, "pypi", "demo-pkg")
    assert got == {wheel_name("demo_pkg", "1.0"): first, wheel_name("demo_pkg", "1.1"): later}
    for version, member in (("1.0", "pypi-local"), ("1.1", "pypi-other")):
        file = await client.get(
            f"/repository/pypi/files/demo-pkg/{wheel_name('demo_pkg', version)}"
        )
        assert file.headers["X-Artifactapi-Served-By"] == member
    html = await client.get("/repository/pypi/simple/demo-pkg/")
    text = await html.text()
    assert html.headers["Content-Type"] == "text/html"
    assert (
        f'href="../../files/demo-pkg/{wheel_name("demo_pkg", "1.0")}#sha256={sha256(first)}"'
        in text
    )
    moved = await client.get("/repository/pypi/simple/Demo_Pkg/", allow_redirects=False)
    assert moved.status == 301
    assert moved.headers["Location"] == "/repository/pypi/simple/demo-pkg/"


async def test_a_remote_project_keeps_what_its_upstream_says(
    client: TestClient, index: Upstream
) -> None:
    document = await page(client, "pypi", "public-dep")
    files = {f["filename"]: f for f in document["files"]}
    yanked = files[wheel_name("public_dep", "1.1")]
    assert yanked["yanked"] == "broken" and yanked["requires-python"] == ">=3.9"
    plain = files[wheel_name("public_dep", "1.0")]
    assert plain["upload-time"] == OLD and "yanked" not in plain
    assert plain["core-metadata"] == {
        "sha256": sha256(index.projects["public-dep"][0].metadata or b"")
    }
    assert document["versions"] == ["1.0", "1.1"]
    got = await downloads_everything(client, "pypi", "public-dep")
    assert got[wheel_name("public_dep", "1.0")] == index.projects["public-dep"][0].body
    remote = await client.get(
        f"/repository/pypi/files/public-dep/{wheel_name('public_dep', '1.0')}"
    )
    assert remote.headers["X-Artifactapi-Served-By"] == "pypi-remote"
    listing = await client.get("/repository/pypi/simple/", headers={"Accept": JSON_TYPE})
    names = [p["name"] for p in (await listing.json(content_type=None))["projects"]]
    assert "public-dep" in names and "fresh-pkg" in names


async def test_the_project_list_is_the_union(client: TestClient) -> None:
    await publish(client, "pypi-local", "Demo.Pkg", "1.0")
    await publish(client, "pypi-other", "demo-pkg", "1.1")
    await publish(client, "pypi-other", "other-pkg", "1.0")
    listing = await client.get("/repository/pypi/simple/", headers={"Accept": JSON_TYPE})
    names = [p["name"] for p in (await listing.json(content_type=None))["projects"]]
    assert names[:2] == ["Demo.Pkg", "other-pkg"]  # locals first, one spelling each
    assert set(names[2:]) == {"public-dep", "internal-lib", "acme-tools", "fresh-pkg"}
    html = await (await client.get("/repository/pypi/simple/")).text()
    assert '<a href="demo-pkg/">Demo.Pkg</a>' in html


async def test_a_local_name_keeps_every_remote_out(client: TestClient, index: Upstream) -> None:
    mine = await publish(client, "pypi-local", "internal-lib", "1.0")
    document = await page(client, "pypi", "internal-lib")
    assert [f["filename"] for f in document["files"]] == [wheel_name("internal_lib", "1.0")]
    for spelling in ("Internal_Lib", "internal.lib", "INTERNAL--lib"):
        moved = await client.get(f"/repository/pypi/simple/{spelling}/", allow_redirects=False)
        assert moved.headers["Location"] == "/repository/pypi/simple/internal-lib/"
        response = await client.get(
            f"/repository/pypi/files/{spelling}/{wheel_name('internal_lib', '99.0')}"
        )
        assert response.status == 404
        response = await client.get(
            f"/repository/pypi/files/{spelling}/{wheel_name('internal_lib', '1.0')}"
        )
        assert response.status == 200 and await response.read() == mine
    assert index.requests["simple/internal-lib/"] == 0  # never asked
    # A look-alike is no PyPI name: it reaches neither a page nor an upstream.
    for lookalike in ("\u0131nternal-lib", "internal-l\u0131b", "\u017fecret"):
        assert (await client.get(f"/repository/pypi/simple/{lookalike}/")).status == 404
        assert (await client.get(f"/repository/pypi/files/{lookalike}/x.whl")).status == 404
    assert sum(index.requests.values()) == 0
    # The allow list lets the upstream's through too.
    opened = await page(client, "pypi-open", "internal-lib")
    assert {f["filename"] for f in opened["files"]} == {
        wheel_name("internal_lib", "1.0"),
        wheel_name("internal_lib", "99.0"),
    }


async def test_a_reserved_name_is_not_found_before_the_first_publish(
    client: TestClient, index: Upstream
) -> None:
    for spelling in ("acme-tools", "Acme_Tools"):
        response = await client.get(
            f"/repository/pypi/simple/{spelling}/", headers={"Accept": JSON_TYPE}
        )
        assert response.status in (301, 404)
    await page(client, "pypi", "acme-tools", status=404)
    response = await client.get(
        f"/repository/pypi/files/acme-tools/{wheel_name('acme_tools', '5.0')}"
    )
    assert response.status == 404
    assert index.requests["simple/acme-tools/"] == 0
    assert len((await page(client, "pypi-open", "acme-tools"))["files"]) == 1  # not reserved there


async def test_the_cooldown_hides_and_refuses_young_releases(
    client: TestClient, index: Upstream
) -> None:
    old, young, unknown = (wheel_name("fresh_pkg", v) for v in ("1.0", "2.0", "3.0"))
    for repo in ("pypi-wait", "pypi-cool"):  # the virtual's cooldown, the remote's own
        document = await page(client, repo, "fresh-pkg")
        assert [f["filename"] for f in document["files"]] == [old], repo
        assert document["versions"] == ["1.0"], repo
        for filename in (young, unknown):
            response = await client.get(f"/repository/{repo}/files/fresh-pkg/{filename}")
            assert response.status == 404, repo
            assert (
                await client.get(f"/repository/{repo}/files/fresh-pkg/{filename}.metadata")
            ).status == 404
        response = await client.get(f"/repository/{repo}/files/fresh-pkg/{old}")
        assert (
            response.status == 200 and await response.read() == index.projects["fresh-pkg"][0].body
        )
    assert index.requests[young] == 0 and index.requests[unknown] == 0
    # Without a cooldown all three are there; cooldown_allow lets a name through.
    assert len((await page(client, "pypi", "fresh-pkg"))["files"]) == 3
    index.projects["allowed-pkg"] = [dist("allowed_pkg", "1.0", upload_time=now_iso())]
    assert len((await page(client, "pypi-wait", "allowed-pkg"))["files"]) == 1
    await downloads_everything(client, "pypi-wait", "allowed-pkg")


async def test_explain_says_who_serves_and_why_the_others_do_not(client: TestClient) -> None:
    await publish(client, "pypi-local", "internal-lib", "1.0")
    explained = await (
        await client.get("/api/v1/repositories/pypi/explain?name=Internal_Lib")
    ).json()
    assert explained["normalized"] == "internal-lib" and explained["served_by"] == "pypi-local"
    members = {m["name"]: m for m in explained["members"]}
    assert members["pypi-local"]["status"] == "served"
    assert members["pypi-local"]["serves"] == [wheel_name("internal_lib", "1.0")]
    assert members["pypi-other"]["status"] == "absent"
    assert members["pypi-remote"]["status"] == "guarded"
    assert "pypi-local" in members["pypi-remote"]["reason"]
    reserved = await (await client.get("/api/v1/repositories/pypi/explain?name=acme-tools")).json()
    assert reserved["served_by"] is None and reserved["guard"]["reserved_by"] == "acme-*"
    cooled = await (
        await client.get("/api/v1/repositories/pypi-wait/explain?name=fresh-pkg&version=2.0")
    ).json()
    remote_member = next(m for m in cooled["members"] if m["name"] == "pypi-remote")
    assert cooled["served_by"] is None and remote_member["status"] == "cooldown"
    assert remote_member["files"] == [wheel_name("fresh_pkg", "2.0")]
    old = await (
        await client.get("/api/v1/repositories/pypi-wait/explain?name=fresh-pkg&version=1.0")
    ).json()
    assert old["served_by"] == "pypi-remote"
    bad = await client.get("/api/v1/repositories/pypi/explain?name=%C4%B1nternal")
    assert bad.status == 400
    assert (await client.get("/api/v1/repositories/pypi-local/explain?name=x")).status == 404
    huge = await client.get("/api/v1/repositories/pypi/explain?name=" + "a" * 5000)
    assert huge.status == 400


async def test_writes_go_to_deploy_to_or_answer_405_as_pypi(client: TestClient) -> None:
    body = await publish(client, "pypi", "through-virtual", "1.0")
    direct = await page(client, "pypi-local", "through-virtual")
    assert [f["hashes"]["sha256"] for f in direct["files"]] == [sha256(body)]
    form = upload(wheel(), name="demo-pkg")
    refused = await client.post("/repository/pypi-ro/legacy/", data=form.form())
    assert refused.status == 405
    assert refused.reason and "deploy_to" in refused.reason  # what twine prints
    assert refused.headers["Content-Type"].startswith("text/plain")
    assert await page(client, "pypi-local", "demo-pkg", status=404)


async def test_a_publish_is_seen_through_the_virtual_on_another_replica(
    aiohttp_client: Any, make_config: ConfigFactory, upstream: TestServer
) -> None:
    config = make_config(repositories=repositories(upstream))
    first = await aiohttp_client(create_app(config))
    second = first
    if not config.database.url.startswith("sqlite"):
        second = await aiohttp_client(create_app(config))
    await sign_in(first)
    await sign_in(second)
    await publish(first, "pypi", "shared-pkg", "1.0")
    assert len((await page(second, "pypi", "shared-pkg"))["files"]) == 1  # kept on the second
    await publish(first, "pypi", "shared-pkg", "1.1")
    document = await page(second, "pypi", "shared-pkg")
    assert document["versions"] == ["1.0", "1.1"]
    await downloads_everything(second, "pypi", "shared-pkg")


async def test_a_failing_member_is_served_stale_or_left_out_and_named(
    aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory
) -> None:
    good, bad = public_upstream(), public_upstream()
    bad.projects["public-dep"] = [dist("public_dep", "2.0")]
    good_server, bad_server = await aiohttp_server(good.app()), await aiohttp_server(bad.app())
    repos = [
        remote("up-good", good_server),
        remote("up-bad", bad_server, metadata_ttl=0.2),
        virtual("pypi", ["up-good", "up-bad"]),
    ]
    client = await aiohttp_client(create_app(make_config(repositories=repos)))
    await sign_in(client)
    assert len((await page(client, "pypi", "public-dep"))["files"]) == 3
    cached = await downloads_everything(client, "pypi", "public-dep")
    bad.fault = "500"
    await expired(client, "simple/public-dep/", "up-bad")
    stale = await page(client, "pypi", "public-dep")
    assert len(stale["files"]) == 3  # the stale copy is used
    assert stale["headers"]["X-Artifactapi-Members-Stale"] == "up-bad"
    assert "Stale" in stale["headers"]["Warning"]
    assert await downloads_everything(client, "pypi", "public-dep") == cached  # from the cache
    # No copy at all: left out, and the answer names it.
    left = await page(client, "pypi", "fresh-pkg")
    assert len(left["files"]) == 3
    assert left["headers"]["X-Artifactapi-Members-Skipped"] == "up-bad=failed"
    listing = await client.get("/repository/pypi/simple/", headers={"Accept": JSON_TYPE})
    assert listing.status == 200
    assert listing.headers["X-Artifactapi-Members-Skipped"] == "up-bad=failed"
    names = {p["name"] for p in (await listing.json(content_type=None))["projects"]}
    assert names == set(good.projects)


async def test_a_slow_member_is_left_out_within_member_timeout(
    aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory
) -> None:
    fast, slow = public_upstream(), public_upstream()
    slow.delay = 5.0
    fast_server, slow_server = await aiohttp_server(fast.app()), await aiohttp_server(slow.app())
    repos = [
        remote("up-fast", fast_server),
        remote("up-slow", slow_server),
        virtual("pypi", ["up-slow", "up-fast"], member_timeout=0.5),
    ]
    client = await aiohttp_client(create_app(make_config(repositories=repos)))
    await sign_in(client)
    started = time.monotonic()
    document = await page(client, "pypi", "public-dep")
    assert time.monotonic() - started < 2.5
    assert len(document["files"]) == 2
    assert document["headers"]["X-Artifactapi-Members-Skipped"].startswith("up-slow=timeout")
    explained = await (await client.get("/api/v1/repositories/pypi/explain?name=public-dep")).json()
    assert explained["served_by"] == "up-fast"


async def test_an_inner_virtual_keeps_its_order_and_its_guard(
    client: TestClient, index: Upstream
) -> None:
    first = await publish(client, "pypi-local", "demo-pkg", "1.0")
    await publish(client, "pypi-other", "demo-pkg", "1.0", module=b"VALUE = 2\n")
    document = await page(client, "pypi-all", "demo-pkg")
    assert [f["hashes"]["sha256"] for f in document["files"]] == [sha256(first)]
    reserved = await page(client, "pypi-all", "acme-tools")
    assert [f["filename"] for f in reserved["files"]] == [wheel_name("acme_tools", "5.0")]
    explained = await (
        await client.get("/api/v1/repositories/pypi-all/explain?name=acme-tools")
    ).json()
    members = {m["name"]: m for m in explained["members"]}
    assert (
        members["pypi-remote"]["status"] == "guarded" and "pypi" in members["pypi-remote"]["reason"]
    )
    assert members["pypi-cool"]["status"] == "served" and explained["served_by"] == "pypi-cool"
    assert await downloads_everything(client, "pypi-all", "acme-tools")
    # pypi-cool's own cooldown holds through the virtual too.
    fresh = await page(client, "pypi-all", "fresh-pkg")
    assert {f["filename"] for f in fresh["files"]} == {
        wheel_name("fresh_pkg", v) for v in ("1.0", "2.0", "3.0")
    }  # pypi-remote (no cooldown) serves them first


async def test_a_merged_page_answers_conditional_requests_and_heads(client: TestClient) -> None:
    body = await publish(client, "pypi-local", "demo-pkg", "1.0")
    url = "/repository/pypi/simple/demo-pkg/"
    first = await client.get(url)
    etag = first.headers["ETag"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status == 304
    await publish(client, "pypi-other", "demo-pkg", "1.1")
    changed = await client.get(url, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    head = await client.head(f"/repository/pypi/files/demo-pkg/{wheel_name('demo_pkg', '1.0')}")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(body))
    ranged = await client.get(f"/repository/pypi/files/demo-pkg/{wheel_name('demo_pkg', '1.0')}",
                              headers={"Range": "bytes=0-9"})  # fmt: skip
    assert ranged.status == 206 and await ranged.read() == body[:10]
    refused = await client.delete(url)
    assert refused.status in (403, 405)


async def test_a_warm_merged_page_costs_a_serial_query_per_local_member(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(client, "pypi-local", "demo-pkg", "1.0")
    await publish(client, "pypi-other", "demo-pkg", "1.1")
    await page(client, "pypi", "demo-pkg")  # rendered and kept
    app: web.Application = client.app  # type: ignore[assignment]
    db = app[keys.METADATA].db
    asked: list[str] = []
    # A driver's fetchval may go by its own fetchrow: one statement. Per task: the local
    # members are asked at once.
    depth: contextvars.ContextVar[int] = contextvars.ContextVar("depth", default=0)
    for method in ("fetch", "fetchrow", "fetchval", "execute"):
        original = getattr(db, method)

        async def counted(sql: str, *args: Any, _original: Any = original) -> Any:
            if "pypi_" in sql and depth.get() == 0:
                asked.append(sql)
            token = depth.set(depth.get() + 1)
            try:
                return await _original(sql, *args)
            finally:
                depth.reset(token)

        monkeypatch.setattr(db, method, counted)
    for _ in range(3):
        assert len((await page(client, "pypi", "demo-pkg"))["files"]) == 2
    assert len(asked) == 6 and all("SELECT serial FROM pypi_projects" in q for q in asked), asked
