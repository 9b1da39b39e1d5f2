"""Virtual generic repositories over a local one and fake upstream file trees, in both
shapes: the first member that has a path serves it, folder listings merged, writes go
to deploy_to, the dependency-confusion guard (by first path segment, reserved globs,
look-alike spellings), failing and slow members, explain."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest
from aiohttp import hdrs
from aiohttp.test_utils import TestClient, TestServer

from app import keys
from app.config import ConfigError
from app.formats import available_formats, validate_repositories
from app.server import create_app
from tests.e2e.harness import require_tool
from tests.integration.conftest import ConfigFactory
from tests.upstreams import File, FileTree
from tests.waiting import expired

LOCAL_X = b"the team's own internal/x.txt\n"
UPSTREAM_X = b"an upstream's internal/x.txt: confusion\n"


def autoindex(*names: str) -> File:
    links = "".join(f'<a href="{name}">{name}</a>\n' for name in names)
    return File(f"<html><body><pre>{links}</pre></body></html>".encode(), "text/html")


@pytest.fixture
def first() -> FileTree:
    return FileTree(
        files={
            "internal/x.txt": File(UPSTREAM_X),
            "internal/y.txt": File(b"upstream y\n"),
            "secret/key.txt": File(b"upstream secret\n"),
            "pub/tool.txt": File(b"tool from the first upstream\n"),
            "pub/slow.txt": File(b"slow from the first upstream\n"),
            "docs/": autoindex("a.txt", "sub/", "../", "?C=M"),
            "docs/a.txt": File(b"first a\n"),
            "docs/sub/": autoindex("c.txt"),
            "docs/sub/c.txt": File(b"first c\n"),
            "": autoindex("internal/", "docs/", "pub/", "other.txt", "secret/"),
            "other.txt": File(b"other\n"),
            "meta.json": File(b'{"v": 1}', "application/json"),
        }
    )


@pytest.fixture
def second() -> FileTree:
    listing = (
        b'{"children": [{"name": "a.txt", "type": "file"}, {"name": "b.txt", "type": "file"}]}'
    )
    return FileTree(
        files={
            "pub/tool.txt": File(b"tool from the second upstream\n"),
            "pub/slow.txt": File(b"slow from the second upstream\n"),
            "pub/only-second.txt": File(b"only on the second\n"),
            "docs/": File(listing, "application/json"),
            "docs/a.txt": File(b"second a\n"),
            "docs/b.txt": File(b"second b\n"),
        }
    )


def remote(name: str, upstream: TestServer, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "format": "generic",
        "kind": "remote",
        "options": {
            "upstream": str(upstream.make_url("")).rstrip("/"),
            "retries": 0,
            "metadata_paths": ["*.json"],
            **options,
        },
    }


@pytest.fixture
def start(
    aiohttp_client: Any,
    aiohttp_server: Any,
    make_config: ConfigFactory,
    first: FileTree,
    second: FileTree,
) -> Any:
    async def started(
        virtual: dict[str, Any] | None = None,
        first_options: dict[str, Any] | None = None,
        replicas: int = 1,
    ) -> Any:
        up1 = await aiohttp_server(first.app())
        up2 = await aiohttp_server(second.app())
        options = {"members": ["files", "up1", "up2"], "deploy_to": "files", **(virtual or {})}
        repos = [
            {"name": "files", "format": "generic", "kind": "local"},
            remote("up1", up1, **(first_options or {})),
            remote("up2", up2),
            {"name": "all", "format": "generic", "kind": "virtual", "options": options},
        ]
        config = make_config(repositories=repos)
        clients = [await aiohttp_client(create_app(config)) for _ in range(replicas)]
        put = await clients[0].put("/repository/files/internal/x.txt", data=LOCAL_X)
        assert put.status in (200, 201), await put.text()
        return clients[0] if replicas == 1 else clients

    return started


async def body(client: TestClient, path: str) -> tuple[int, bytes]:
    got = await client.get(f"/repository/all/{path}")
    return got.status, await got.read()


async def test_the_first_member_that_has_a_path_serves_it(start: Any, first: FileTree) -> None:
    client = await start()
    assert await body(client, "pub/tool.txt") == (200, b"tool from the first upstream\n")
    assert await body(client, "pub/only-second.txt") == (200, b"only on the second\n")
    assert await body(client, "other.txt") == (200, b"other\n")
    got = await client.get("/repository/all/pub/tool.txt")
    assert got.headers["X-Artifactapi-Served-By"] == "up1" and got.headers["X-Cache"] == "HIT"
    assert (await client.get("/repository/all/pub/absent.txt")).status == 404
    reordered = await start({"members": ["files", "up2", "up1"]})
    assert await body(reordered, "pub/tool.txt") == (200, b"tool from the second upstream\n")


async def test_curl_puts_through_the_virtual_into_deploy_to_and_gets_back(start: Any) -> None:
    client = await start()
    curl = require_tool("curl")
    base = f"http://{client.host}:{client.port}/repository"
    token = client.session.headers[hdrs.AUTHORIZATION]
    data = b"published through the virtual\n"

    def run(*args: str, data_in: bytes | None = None) -> bytes:
        result = subprocess.run(
            [curl, "-sS", "--fail-with-body", "-H", f"Authorization: {token}", *args],
            input=data_in, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr + result.stdout
        return result.stdout

    await asyncio.to_thread(
        run, "-T", "-", f"{base}/all/team/report.txt", data_in=data
    )  # curl -T: a PUT
    local = await client.get("/repository/files/team/report.txt")
    assert local.status == 200 and await local.read() == data
    assert await asyncio.to_thread(run, f"{base}/all/team/report.txt") == data
    assert await asyncio.to_thread(run, f"{base}/all/pub/tool.txt") == (
        b"tool from the first upstream\n"
    )
    assert await asyncio.to_thread(run, f"{base}/all/internal/x.txt") == LOCAL_X
    deleted = await client.delete("/repository/all/team/report.txt")
    assert deleted.status == 204
    assert (await client.get("/repository/files/team/report.txt")).status == 404


async def test_a_write_without_deploy_to_is_refused(start: Any) -> None:
    client = await start({"deploy_to": None})
    put = await client.put("/repository/all/team/x.txt", data=b"x")
    assert put.status == 405, await put.text()
    assert (await client.get("/repository/files/team/x.txt")).status == 404


async def test_a_path_prefix_a_local_member_holds_never_comes_from_upstream(
    start: Any, first: FileTree
) -> None:
    client = await start()
    assert await body(client, "internal/x.txt") == (200, LOCAL_X)
    for spelling in ("internal/y.txt", "Internal/y.txt", "INTERNAL/x.txt", "\uff29nternal/y.txt"):
        got = await client.get(f"/repository/all/{spelling}")
        assert got.status == 404, spelling
    assert not [p for p in first.requests if p.lower().endswith(("x.txt", "y.txt"))]
    listing = await client.get("/repository/all/internal/")
    names = [c["name"] for c in (await listing.json())["children"]]
    assert names == ["x.txt"]  # the upstream's y.txt is not listed either
    assert "internal/" not in first.requests


async def test_a_prefix_stays_guarded_once_held_and_earlier_files_are_taken_in(
    start: Any, first: FileTree
) -> None:
    client = await start()
    assert client.app is not None
    db = client.app[keys.METADATA].db
    # As a database from before generic_prefixes: the files, no prefix rows.
    await db.execute("DELETE FROM generic_prefixes")
    got = await client.get("/repository/all/INTERNAL/y.txt")
    assert got.status == 404 and first.requests["INTERNAL/y.txt"] == 0
    taken = await db.fetch("SELECT folded FROM generic_prefixes ORDER BY folded")
    assert [r["folded"] for r in taken] == ["", "internal/"]  # taken in once, then marked
    # A name once the team's stays guarded when its files go (as PyPI keeps a project).
    deleted = await client.delete("/repository/all/internal/x.txt")
    assert deleted.status == 204
    assert (await client.get("/repository/all/internal/x.txt")).status == 404
    assert first.requests["internal/x.txt"] == 0
    # A new top-level name is recorded by its write, folded.
    put = await client.put("/repository/all/\uff2eew/a.txt", data=b"new")
    assert put.status == 201
    assert (await client.get("/repository/all/new/b.txt")).status == 404
    assert await db.fetchval("SELECT COUNT(*) FROM generic_prefixes WHERE folded = $1", "new/") == 1


async def test_a_reserved_glob_protects_before_the_first_upload(
    start: Any, first: FileTree
) -> None:
    client = await start({"reserved": ["secret/*"]})
    assert (await client.get("/repository/all/secret/key.txt")).status == 404
    assert (await client.get("/repository/all/Secret/key.txt")).status == 404
    root = await client.get("/repository/all/")
    assert "secret" not in [c["name"] for c in (await root.json())["children"]]
    assert first.requests["secret/key.txt"] == 0 and first.requests["Secret/key.txt"] == 0


async def test_the_allow_list_lets_a_path_come_from_upstream(start: Any) -> None:
    client = await start({"allow": ["internal/y.txt"]})
    assert await body(client, "internal/y.txt") == (200, b"upstream y\n")
    assert await body(client, "internal/x.txt") == (200, LOCAL_X)  # the local still first


async def test_folder_listings_are_merged_and_everything_listed_downloads(
    start: Any,
) -> None:
    client = await start()
    await client.put("/repository/files/top.txt", data=b"local top\n")
    docs = await client.get("/repository/all/docs/")
    assert docs.status == 200
    children = (await docs.json())["children"]
    assert [(c["name"], c["type"], c["member"]) for c in children] == [
        ("a.txt", "file", "up1"),
        ("b.txt", "file", "up2"),
        ("sub", "folder", "up1"),
    ]
    expected = {"a.txt": b"first a\n", "b.txt": b"second b\n"}
    for child in children:
        if child["type"] == "file":
            got = await client.get(child["uri"])
            assert got.status == 200 and await got.read() == expected[child["name"]]
    sub = await client.get(children[2]["uri"])
    assert [c["name"] for c in (await sub.json())["children"]] == ["c.txt"]
    root = await client.get("/repository/all/")
    listed = [(c["name"], c["member"]) for c in (await root.json())["children"]]
    assert listed == [
        ("docs", "up1"),
        ("internal", "files"),
        ("other.txt", "up1"),
        ("pub", "up1"),
        ("secret", "up1"),
        ("top.txt", "files"),
    ]
    paged = await client.get("/repository/all/", params={"limit": "2", "after": "internal/"})
    page = await paged.json()
    assert [c["name"] for c in page["children"]] == ["other.txt", "pub"]
    assert page["next"] == "pub/" and 'rel="next"' in paged.headers["Link"]
    assert (await client.get("/repository/all/nowhere/")).status == 404
    unslashed = await client.get("/repository/all/internal")  # a local folder, listed
    assert [c["name"] for c in (await unslashed.json())["children"]] == ["x.txt"]


async def test_a_failing_member_is_left_out_and_a_stale_copy_is_used(
    start: Any, first: FileTree
) -> None:
    client = await start(first_options={"metadata_ttl": 0.1})
    assert await body(client, "meta.json") == (200, b'{"v": 1}')
    assert (await client.get("/repository/all/docs/")).status == 200
    await expired(client, "meta.json", "up1")
    await expired(client, "docs/", "up1")
    first.fault = "500"
    stale = await client.get("/repository/all/meta.json")
    assert stale.status == 200 and await stale.read() == b'{"v": 1}'
    assert stale.headers["X-Artifactapi-Members-Stale"] == "up1"
    assert stale.headers["Warning"].startswith("110")
    # Never fetched before: the failing member is left out and the next one serves.
    got = await client.get("/repository/all/pub/tool.txt")
    assert got.status == 200 and await got.read() == b"tool from the second upstream\n"
    assert got.headers["X-Artifactapi-Members-Skipped"] == "up1=failed"
    docs = await client.get("/repository/all/docs/")
    assert docs.headers["X-Artifactapi-Members-Stale"] == "up1"
    assert [c["name"] for c in (await docs.json())["children"]] == ["a.txt", "b.txt", "sub"]
    sub = await client.get("/repository/all/docs/sub/")  # never listed: left out
    assert sub.status == 404 and sub.headers["X-Artifactapi-Members-Skipped"] == "up1=failed"


async def test_a_slow_member_is_left_out_within_the_timeout(start: Any, first: FileTree) -> None:
    client = await start({"member_timeout": 1.5})
    first.head_delay = 6.0
    started = time.monotonic()
    # A path of its own: the slow fetch goes on after the test, holding its lease in a
    # Redis the tests share (by repository id, which every test's schema starts again).
    got = await client.get("/repository/all/pub/slow.txt")
    assert time.monotonic() - started < 4.5
    assert got.status == 200 and await got.read() == b"slow from the second upstream\n"
    assert got.headers["X-Artifactapi-Members-Skipped"] == "up1=timeout"


async def test_explain_says_who_serves_a_path_and_why_the_others_do_not(start: Any) -> None:
    client = await start({"reserved": ["secret/*"]})
    got = await client.get("/api/v1/repositories/all/explain", params={"name": "internal/y.txt"})
    explained = await got.json()
    assert got.status == 200 and explained["served_by"] is None
    members = {m["name"]: m for m in explained["members"]}
    assert members["files"]["status"] == "absent" and "internal/" in members["files"]["reason"]
    assert members["up1"]["status"] == "guarded" and members["up2"]["status"] == "guarded"
    assert "held by local member files" in members["up1"]["reason"]
    tool = await client.get("/api/v1/repositories/all/explain", params={"name": "pub/tool.txt"})
    explained = await tool.json()
    assert explained["served_by"] == "up1"
    statuses = {m["name"]: m["status"] for m in explained["members"]}
    assert statuses == {"files": "absent", "up1": "served", "up2": "served"}
    secret = await client.get("/api/v1/repositories/all/explain", params={"name": "secret/k"})
    reasons = {m["name"]: m["reason"] for m in (await secret.json())["members"]}
    assert "reserved by all" in reasons["up1"]
    huge = await client.get("/api/v1/repositories/all/explain", params={"name": "a" * 5000})
    assert huge.status == 400
    bad = await client.get("/api/v1/repositories/all/explain", params={"name": "a/../b"})
    assert bad.status == 400


@pytest.mark.parametrize("kind", ["virtual", "remote"])
def test_a_cooldown_on_generic_is_a_configuration_error(
    make_config: ConfigFactory, kind: str
) -> None:
    """Nothing in the protocol says when a release was published, so a cooldown could
    only refuse everything: it is refused in the configuration instead."""
    options: dict[str, Any] = {"members": ["files"]}
    if kind == "remote":
        options = {"upstream": "http://upstream.invalid"}
    repos = [
        {"name": "files", "format": "generic", "kind": "local"},
        {
            "name": "cooled",
            "format": "generic",
            "kind": kind,
            "options": {**options, "min_release_age": "3d"},
        },
    ]
    with pytest.raises(ConfigError, match="min_release_age"):
        validate_repositories(make_config(repositories=repos), available_formats())


async def test_an_upload_on_one_replica_is_what_the_other_serves_at_once(
    start: Any, first: FileTree
) -> None:
    a, b = await start(replicas=2)
    assert await body(b, "pub/tool.txt") == (200, b"tool from the first upstream\n")
    put = await a.put("/repository/all/pub/tool.txt", data=b"our own tool\n")
    assert put.status == 201, await put.text()
    assert await body(b, "pub/tool.txt") == (200, b"our own tool\n")
    assert (await b.get("/repository/all/pub/only-second.txt")).status == 404  # guarded now
    listing = await b.get("/repository/all/pub/")
    assert [c["name"] for c in (await listing.json())["children"]] == ["tool.txt"]
