"""PyPI remote repositories: a pull-through cache of a "simple" index, driven by real
pip and by hand, in both shapes, against a fake index that counts what it is asked."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app import keys
from app.auth.manage import create_principal, create_token
from tests.integration.conftest import RemoteFactory
from tests.upstreams import RawFile, RawUpstream
from tests.waiting import expired

Remote = Callable[..., Any]
WHEEL = "demo-1.0-py3-none-any.whl"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# What a proxy in front of an index answers when its session is gone: 200, and no page.
LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Please log in</h1>"
    '<form method="post" action="/login"><input name="user"><input type="password"></form>'
    '<a href="/login">Log in</a> <a href="/help/">help</a> <a href="/reset">Forgot password</a>'
    "</body></html>"
)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel() -> bytes:
    files = {
        "demo/__init__.py": b"VALUE = 42\n",
        "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        "demo-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    record += "demo-1.0.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("demo-1.0.dist-info/RECORD", record)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Index:
    """A simple index: ``/simple/<project>/`` in HTML (JSON when asked), files under
    ``/packages/``. ``corrupt`` serves files other than their published hash;
    ``fault = "500"`` breaks every answer, ``"login"`` answers every page and the list
    with a login page (200 text/html), ``"other"`` with JSON that is not the page asked
    for (another project's, an error object)."""

    files: dict[str, bytes] = field(default_factory=dict)  # filename -> body
    requires_python: str = ">=3.8"
    yanked: set[str] = field(default_factory=set)
    corrupt: bool = False
    html_only: bool = False  # an old index: PEP 503 HTML whatever the client asks
    fault: str | None = None
    requests: Counter[str] = field(default_factory=Counter)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/simple/", self.projects)
        app.router.add_get("/simple/{project}/", self.page)
        app.router.add_get("/packages/{filename}", self.file)
        return app

    async def projects(self, request: web.Request) -> web.Response:
        """Like pypi.org: root-relative links, and JSON for those who ask; one anchor
        names no project a client could ask for."""
        self.requests["simple/"] += 1
        if self.fault == "login":
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        if self.fault == "other":
            return web.json_response({"detail": "Authentication credentials were not provided."})
        if JSON_TYPE in request.headers.get("Accept", "") and not self.html_only:
            projects = [{"name": "demo"}, {"name": "Other_Project"}, {"name": "../x"}]
            return web.json_response(
                {"meta": {"api-version": "1.1"}, "projects": projects}, content_type=JSON_TYPE
            )
        return web.Response(
            text='<a href="/simple/demo/">demo</a><a href="/simple/other-project/">Other_Project</a>'
            '<a href="/simple/x/">../x</a>',
            content_type="text/html",
        )

    async def page(self, request: web.Request) -> web.Response:
        project = request.match_info["project"]
        self.requests[f"simple/{project}/"] += 1
        if self.fault == "500":
            return web.Response(status=500, text="broken")
        if self.fault == "login":
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        if self.fault == "other":
            document = {"meta": {"api-version": "1.0"}, "name": "other", "files": []}
            return web.Response(body=json.dumps(document), content_type=JSON_TYPE)
        if project != "demo":
            return web.Response(status=404)
        if JSON_TYPE in request.headers.get("Accept", "") and not self.html_only:
            files = [
                {
                    "filename": name,
                    "url": f"../../packages/{name}",
                    "hashes": {"sha256": sha256(body)},
                    "requires-python": self.requires_python,
                    "yanked": name in self.yanked,
                    "core-metadata": {"sha256": sha256(_metadata(body))},
                }
                for name, body in self.files.items()
            ]
            files.append({"filename": "passwd-1.0.tar.gz", "url": "file:///etc/passwd",
                          "hashes": {}})  # fmt: skip
            document = {"meta": {"api-version": "1.0"}, "name": "demo", "files": files}
            return web.Response(body=json.dumps(document), content_type=JSON_TYPE)
        links = []
        for name, body in self.files.items():
            yanked = ' data-yanked="broken build"' if name in self.yanked else ""
            links.append(
                f'<a href="/packages/{name}#sha256={sha256(body)}"'
                f' data-requires-python="{self.requires_python.replace(">", "&gt;")}"'
                f' data-dist-info-metadata="sha256={sha256(_metadata(body))}"{yanked}>{name}</a>'
            )
        links.append('<a href="file:///etc/passwd">passwd-1.0.tar.gz</a>')
        links.append('<a href="/packages/x">../evil-1.0.tar.gz</a>')
        return web.Response(text="<html><body>" + "\n".join(links) + "</body></html>",
                            content_type="text/html")  # fmt: skip

    async def file(self, request: web.Request) -> web.Response:
        filename = request.match_info["filename"]
        self.requests[filename] += 1
        if self.fault == "500":
            return web.Response(status=500)
        name, metadata = filename.removesuffix(".metadata"), filename.endswith(".metadata")
        if name not in self.files:
            return web.Response(status=404)
        body = _metadata(self.files[name]) if metadata else self.files[name]
        if self.corrupt:
            body = body[:-1] + bytes([body[-1] ^ 1])
        return web.Response(body=body, content_type="application/octet-stream")


def _metadata(wheel: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        return archive.read("demo-1.0.dist-info/METADATA")


@pytest.fixture
def index() -> Index:
    return Index(files={WHEEL: build_wheel()})


@pytest.fixture
async def upstream(aiohttp_server, index: Index) -> TestServer:  # type: ignore[no-untyped-def]
    return await aiohttp_server(index.app())


@pytest.fixture
def service(remote_service: RemoteFactory, upstream: TestServer) -> Remote:
    return functools.partial(remote_service, "pypi-remote", "pypi", upstream)


async def pip(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_PROXY": "*", "PIP_CONFIG_FILE": os.devnull}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "PIP_INDEX_URL"):
        env.pop(name, None)
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check",
               "--no-cache-dir", "--no-input"]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


async def test_pip_downloads_and_installs_through_the_cache(
    service: Remote, index: Index, tmp_path: Path
) -> None:
    client = await service()
    url = str(client.make_url("/repository/pypi-remote/simple/"))
    for attempt in ("first", "second"):
        target = tmp_path / attempt
        await pip("download", "--no-deps", "--index-url", url, "demo==1.0", "-d", str(target))
        assert (target / WHEEL).read_bytes() == index.files[WHEEL]
    installed = tmp_path / "installed"
    await pip("install", "--target", str(installed), "--index-url", url, "demo")
    assert (installed / "demo" / "__init__.py").read_text() == "VALUE = 42\n"
    assert index.requests[WHEEL] == 1  # the other downloads were cache hits
    hit = await client.get(f"/repository/pypi-remote/files/demo/{WHEEL}")
    assert hit.headers["X-Cache"] == "HIT" and await hit.read() == index.files[WHEEL]


async def test_pip_installs_from_a_private_index_with_credentials_in_the_url(
    service: Remote, index: Index, tmp_path: Path
) -> None:
    """A keyring-free ``PIP_INDEX_URL`` with a user and an API token (or a password):
    pip sends them as Basic on the page and on every file; without them it is refused."""
    client = await service(anonymous_read=False)
    records = client.app[keys.AUTH].records
    await create_principal(records, "builder", password="builder-password")
    await records.grant("user:builder", "pypi-remote", ["read"])
    token, _ = await create_token(records, "builder")
    index_url = client.make_url("/repository/pypi-remote/simple/")
    anonymous = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url", str(index_url),
         "demo==1.0", "-d", str(tmp_path / "refused"), "--no-input", "--no-cache-dir",
         "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )  # fmt: skip
    assert anonymous.returncode != 0 and not (tmp_path / "refused" / WHEEL).exists()
    for user, secret in (("builder", token), ("builder", "builder-password")):
        url = str(index_url.with_user(user).with_password(secret))
        target = tmp_path / secret[:4]
        await pip("install", "--target", str(target), "--index-url", url, "demo")
        assert (target / "demo" / "__init__.py").read_text() == "VALUE = 42\n"


async def test_pages_in_both_forms_are_rewritten(service: Remote, index: Index) -> None:
    index.yanked.add(WHEEL)
    index.html_only = True
    wheel = index.files[WHEEL]
    client = await service()
    page = await client.get("/repository/pypi-remote/simple/demo/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["X-Cache"] == "MISS"
    text = await page.text()
    assert f'href="../../files/demo/{WHEEL}#sha256={sha256(wheel)}"' in text
    assert 'data-requires-python="&gt;=3.8"' in text and 'data-yanked="broken build"' in text
    assert f'data-core-metadata="sha256={sha256(_metadata(wheel))}"' in text
    assert "passwd" not in text and "evil" not in text and "/packages/" not in text

    again = await client.get("/repository/pypi-remote/simple/demo/", headers={"Accept": JSON_TYPE})
    assert again.headers["Content-Type"] == JSON_TYPE and again.headers["X-Cache"] == "HIT"
    document = await again.json(content_type=None)
    # An HTML upstream gives no sizes: not PEP 700's 1.1, which promises them.
    assert document["meta"] == {"api-version": "1.0"} and document["name"] == "demo"
    [file] = document["files"]
    assert file["url"] == f"../../files/demo/{WHEEL}#sha256={sha256(wheel)}"
    assert file["hashes"] == {"sha256": sha256(wheel)}
    assert file["requires-python"] == ">=3.8" and file["yanked"] == "broken build"
    assert file["core-metadata"] == {"sha256": sha256(_metadata(wheel))}
    assert index.requests["simple/demo/"] == 1

    metadata = await client.get(f"/repository/pypi-remote/files/demo/{WHEEL}.metadata")
    assert metadata.status == 200 and await metadata.read() == _metadata(wheel)

    for name in ("Demo", "DEMO", "demo"):
        moved = await client.get(f"/repository/pypi-remote/simple/{name}", allow_redirects=False)
        assert moved.status == 301
        assert moved.headers["Location"] == "/repository/pypi-remote/simple/demo/"
    head = await client.head("/repository/pypi-remote/simple/demo/")
    assert head.status == 200 and head.headers["X-Cache"] == "HIT"
    missing = await client.get("/repository/pypi-remote/simple/nothing/")
    assert missing.status == 404
    listing = await client.get("/repository/pypi-remote/simple/")
    text = await listing.text()
    assert listing.status == 200 and listing.headers["Content-Type"].startswith("text/html")
    # Relative to our /simple/, whatever the upstream's links were; junk left out.
    assert '<a href="demo/">demo</a>' in text
    assert '<a href="other-project/">Other_Project</a>' in text and "../x" not in text
    as_json = await client.get("/repository/pypi-remote/simple/", headers={"Accept": JSON_TYPE})
    assert as_json.headers["Content-Type"] == JSON_TYPE
    assert (await as_json.json())["projects"] == [{"name": "demo"}, {"name": "Other_Project"}]
    assert index.requests["simple/"] == 1  # one cached list, rendered in both forms
    posted = await client.post("/repository/pypi-remote/simple/demo/")
    assert posted.status == 405


async def test_a_json_upstream_is_parsed_too(service: Remote, index: Index) -> None:
    index.yanked.add(WHEEL)
    client = await service()
    page = await client.get("/repository/pypi-remote/simple/demo/", headers={"Accept": JSON_TYPE})
    [file] = (await page.json(content_type=None))["files"]
    assert file["url"] == f"../../files/demo/{WHEEL}#sha256={sha256(index.files[WHEEL])}"
    assert file["yanked"] is True and file["requires-python"] == ">=3.8"
    assert file["core-metadata"] == {"sha256": sha256(_metadata(index.files[WHEEL]))}
    wheel = await client.get(f"/repository/pypi-remote/files/demo/{WHEEL}")
    assert wheel.status == 200 and await wheel.read() == index.files[WHEEL]
    listing = await client.get("/repository/pypi-remote/simple/")
    text = await listing.text()
    assert '<a href="demo/">demo</a>' in text and "../x" not in text


async def test_a_wheel_not_matching_its_hash_is_not_cached(
    service: Remote, index: Index, capsys: pytest.CaptureFixture[str]
) -> None:
    index.corrupt = True
    client = await service()
    assert (await client.get("/repository/pypi-remote/simple/demo/")).status == 200
    url = f"/repository/pypi-remote/files/demo/{WHEEL}"
    for _ in range(2):
        try:
            response = await client.get(url)
            body = await response.read()
        except aiohttp.ClientPayloadError:
            continue  # cut short: the engine's answer once the body had started
        assert response.status == 502 or len(body) < len(index.files[WHEEL]), response.status
    assert index.requests[WHEEL] == 2  # never cached
    logged = capsys.readouterr()
    assert "upstream body rejected" in logged.out + logged.err


async def test_only_files_a_page_listed_are_fetched(service: Remote, index: Index) -> None:
    client = await service()
    unlisted = await client.get(f"/repository/pypi-remote/files/demo/{WHEEL}")
    assert unlisted.status == 404 and index.requests[WHEEL] == 0
    assert (await client.get("/repository/pypi-remote/simple/demo/")).status == 200
    for path in (
        "files/demo/..%2F..%2Fetc%2Fpasswd",
        "files/demo/%2E%2E",
        "files/..%2F/x.whl",
        "files/demo/passwd-1.0.tar.gz",
        "files/demo/sub/demo.whl",
    ):
        response = await client.get(f"/repository/pypi-remote/{path}")
        assert 400 <= response.status < 500, path
    assert sum(index.requests.values()) == 1  # only the page


async def test_a_stale_page_is_served_when_the_upstream_fails(
    service: Remote, index: Index
) -> None:
    client = await service(metadata_ttl=0.1)
    fresh = await client.get("/repository/pypi-remote/simple/demo/")
    assert fresh.status == 200 and fresh.headers["X-Cache"] == "MISS"
    expected = await fresh.text()
    await expired(client, "simple/demo/")
    index.fault = "500"
    stale = await client.get("/repository/pypi-remote/simple/demo/")
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    assert stale.headers["Warning"].startswith("110") and await stale.text() == expected
    assert index.requests["simple/demo/"] == 2
    index.fault = None
    await expired(client, "simple/demo/")
    refreshed = await client.get("/repository/pypi-remote/simple/demo/")
    assert refreshed.headers["X-Cache"] == "MISS" and await refreshed.text() == expected


@pytest.mark.parametrize("fault", ["login", "other"])
@pytest.mark.parametrize("accept", ["text/html", JSON_TYPE])
async def test_a_page_that_is_not_the_projects_is_an_upstream_failure(
    service: Remote, index: Index, fault: str, accept: str
) -> None:
    """A login page (or another project's page) answered 200 never replaces a good
    copy: an expired copy stands in, with its links; with none the answer is a 502."""
    client = await service(metadata_ttl=0.1)
    url, headers = "/repository/pypi-remote/simple/demo/", {"Accept": accept}
    fresh = await client.get(url, headers=headers)
    assert fresh.status == 200 and fresh.headers["X-Cache"] == "MISS"
    good = await fresh.read()
    assert WHEEL.encode() in good
    await expired(client, "simple/demo/")
    index.fault = fault
    for _ in range(2):
        stale = await client.get(url, headers=headers)
        assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
        assert stale.headers["Warning"].startswith("110") and await stale.read() == good
    assert index.requests["simple/demo/"] == 3  # asked each time, cached never
    index.fault = None
    assert (await client.get(url, headers=headers)).headers["X-Cache"] == "MISS"


@pytest.mark.parametrize("fault", ["login", "other"])
async def test_a_page_that_is_not_the_projects_is_a_502_without_a_copy(
    service: Remote, index: Index, fault: str
) -> None:
    index.fault = fault
    client = await service()
    for path in ("simple/demo/", "simple/"):
        for _ in range(2):
            refused = await client.get(f"/repository/pypi-remote/{path}")
            assert refused.status == 502, path
            error = (await refused.json())["error"]
            assert error["code"] == "BAD_GATEWAY" and "simple" in error["message"], error
        assert index.requests[path] == 2  # nothing was cached
    index.fault = None
    page = await client.get("/repository/pypi-remote/simple/demo/")
    assert page.headers["X-Cache"] == "MISS" and WHEEL in await page.text()


@pytest.mark.parametrize("fault", ["login", "other"])
async def test_a_project_list_that_is_not_one_leaves_the_copy_standing(
    service: Remote, index: Index, fault: str
) -> None:
    client = await service(metadata_ttl=0.1)
    fresh = await client.get("/repository/pypi-remote/simple/")
    assert fresh.status == 200 and fresh.headers["X-Cache"] == "MISS"
    good = await fresh.text()
    assert '<a href="demo/">demo</a>' in good
    await expired(client, "simple/")
    index.fault = fault
    stale = await client.get("/repository/pypi-remote/simple/")
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    assert await stale.text() == good
    as_json = await client.get("/repository/pypi-remote/simple/", headers={"Accept": JSON_TYPE})
    assert as_json.headers["X-Cache"] == "STALE"
    assert (await as_json.json())["projects"] == [{"name": "demo"}, {"name": "Other_Project"}]


async def test_a_file_without_length_is_cached_when_its_published_hash_proves_it(
    remote_service: RemoteFactory,
) -> None:
    """An upstream that ends bodies by closing the connection (no length, no chunks):
    a file whose page published its sha256 is proven whole by it and cached; cut short,
    it fails that check and is not."""
    wheel = build_wheel()
    raw = RawUpstream()
    await raw.start()
    try:
        page = f'<a href="/packages/{WHEEL}#sha256={sha256(wheel)}">{WHEEL}</a>'
        raw.files["simple/demo/"] = RawFile(page.encode(), "close", content_type="text/html")
        raw.files[f"packages/{WHEEL}"] = RawFile(wheel, "cut", cut_at=len(wheel) // 2)
        client = await remote_service("pypi-remote", "pypi", raw.url)
        listed = await client.get("/repository/pypi-remote/simple/demo/")
        assert listed.status == 200 and WHEEL in await listed.text()
        url = f"/repository/pypi-remote/files/demo/{WHEEL}"
        cut = await client.get(url)
        with pytest.raises(aiohttp.ClientPayloadError):
            await cut.read()
        raw.files[f"packages/{WHEEL}"] = RawFile(wheel, "close")
        for expected in ("MISS", "HIT"):
            response = await client.get(url)
            assert response.headers["X-Cache"] == expected and await response.read() == wheel
        assert raw.requests[f"packages/{WHEEL}"] == 2
        # The page itself had no length and no digest: served, never cached.
        again = await client.get("/repository/pypi-remote/simple/demo/")
        assert again.headers["X-Cache"] == "MISS" and raw.requests["simple/demo/"] == 2
    finally:
        await raw.close()
