"""npm local repositories with the real npm CLI (npm 11), in both shapes: publish
(scoped and unscoped), install, view, dist-tag, deprecate and undeprecate, unpublish of a
version and of a package, and staged publishing (``npm stage publish|list|view|approve|
reject``), search; pnpm and yarn 4 publishing and installing."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.integration.test_npm_auth import Npm
from tests.signin import admin_token

REPO = "npm-local"
LOCAL = {"name": REPO, "format": "npm", "kind": "local"}
# make test (make clients) puts pnpm (pinned in tests/clients/package-lock.json) beside the venv's Python.
CLIENTS = Path(sys.prefix) / "node" / "node_modules" / ".bin"
PNPM, YARN = CLIENTS / "pnpm", CLIENTS / "yarn"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Publisher(Npm):
    """npm with a token, and package folders of its own to publish."""

    def package(self, name: str, version: str, **fields: Any) -> Path:
        folder = self.home / "src" / name.replace("/", "__") / version
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"name": name, "version": version, "main": "index.js", **fields}
        (folder / "package.json").write_text(json.dumps(manifest))
        (folder / "index.js").write_text(f"module.exports = {json.dumps(name + '@' + version)};\n")
        return folder

    def publish(self, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run_in(folder, "publish", *args)

    def run_in(self, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["npm", *self.args(*args)], cwd=folder, env=self.env(),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip


@pytest.fixture
async def npm(aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path) -> Publisher:
    app = create_app(make_config(repositories=[LOCAL]))
    client: TestClient = await aiohttp_client(app)
    publisher = Publisher(tmp_path / "npm", str(client.make_url(f"/repository/{REPO}/")))
    publisher.use(await admin_token(app))
    return publisher


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


async def view(npm: Npm, *args: str) -> Any:
    return json.loads(ok(await asyncio.to_thread(npm.run, "view", *args, "--json")))


@pytest.mark.parametrize("name", ["npm-local-demo", "@acme/util"])
async def test_publish_install_and_view(npm: Publisher, name: str) -> None:
    for version in ("1.0.0", "1.1.0"):
        ok(await asyncio.to_thread(npm.publish, npm.package(name, version, description="x")))
    again = await asyncio.to_thread(npm.publish, npm.package(name, "1.1.0"), "--force")
    assert again.returncode != 0
    assert "You cannot publish over the previously published versions: 1.1.0" in again.stderr
    seen = await view(npm, name)
    assert seen["versions"] == ["1.0.0", "1.1.0"] and seen["dist-tags"] == {"latest": "1.1.0"}
    assert seen["description"] == "x"
    assert (await view(npm, f"{name}@1.0.0"))["version"] == "1.0.0"
    ok(await asyncio.to_thread(npm.run, "install", "--no-audit", f"{name}@1.0.0"))
    installed = npm.home / "project" / "node_modules" / name / "package.json"
    assert json.loads(installed.read_text())["version"] == "1.0.0"
    ok(await asyncio.to_thread(npm.run, "install", "--no-audit", name))
    assert json.loads(installed.read_text())["version"] == "1.1.0"


async def test_search(npm: Publisher) -> None:
    for name in ("find-me", "@acme/find_me-too", "other"):
        folder = npm.package(name, "1.0.0", description=f"about {name}", keywords=["k"])
        ok(await asyncio.to_thread(npm.publish, folder))
    found = json.loads(ok(await asyncio.to_thread(npm.run, "search", "find", "--json")))
    assert [(p["name"], p["version"], p["description"]) for p in found] == [
        ("@acme/find_me-too", "1.0.0", "about @acme/find_me-too"),
        ("find-me", "1.0.0", "about find-me"),
    ]
    assert found[0]["publisher"]["username"] == "admin" and found[0]["keywords"] == ["k"]
    # LIKE's wildcards are the name's own characters, not patterns.
    underscored = json.loads(ok(await asyncio.to_thread(npm.run, "search", "find_", "--json")))
    assert [p["name"] for p in underscored] == ["@acme/find_me-too"]
    shown = ok(await asyncio.to_thread(npm.run, "search", "other"))
    assert "other" in shown and "about other" in shown


@pytest.mark.parametrize("name", ["tagged", "@acme/tagged"])
async def test_dist_tags(npm: Publisher, name: str) -> None:
    for version in ("1.0.0", "2.0.0-rc.1"):
        ok(await asyncio.to_thread(npm.publish, npm.package(name, version), "--tag", "next"))
    assert "next: 2.0.0-rc.1" in ok(await asyncio.to_thread(npm.run, "dist-tag", "ls", name))
    # The first version became latest: a package always has one.
    ok(await asyncio.to_thread(npm.run, "dist-tag", "add", f"{name}@2.0.0-rc.1", "beta"))
    ok(await asyncio.to_thread(npm.run, "dist-tag", "add", f"{name}@1.0.0", "next"))
    ok(await asyncio.to_thread(npm.run, "dist-tag", "rm", name, "beta"))
    listed = ok(await asyncio.to_thread(npm.run, "dist-tag", "ls", name))
    assert listed.split() == ["latest:", "1.0.0", "next:", "1.0.0"]
    missing = await asyncio.to_thread(npm.run, "dist-tag", "add", f"{name}@9.9.9", "x")
    assert missing.returncode != 0
    assert (await view(npm, name))["dist-tags"] == {"latest": "1.0.0", "next": "1.0.0"}


async def test_deprecate_and_undeprecate(npm: Publisher) -> None:
    name = "old-thing"
    for version in ("1.0.0", "1.0.1", "2.0.0"):
        ok(await asyncio.to_thread(npm.publish, npm.package(name, version)))
    ok(await asyncio.to_thread(npm.run, "deprecate", f"{name}@<2", "use 2.x"))
    assert (await view(npm, f"{name}@1.0.0"))["deprecated"] == "use 2.x"
    assert "deprecated" not in await view(npm, f"{name}@2.0.0")
    installed = await asyncio.to_thread(npm.run, "install", "--no-audit", f"{name}@1.0.1")
    assert "deprecated" in ok(installed) + installed.stderr
    ok(await asyncio.to_thread(npm.run, "undeprecate", f"{name}@1.0.1"))
    assert "deprecated" not in await view(npm, f"{name}@1.0.1")
    assert (await view(npm, f"{name}@1.0.0"))["deprecated"] == "use 2.x"


@pytest.mark.parametrize("name", ["gone-soon", "@acme/gone-soon"])
async def test_unpublish_a_version_then_the_package(npm: Publisher, name: str) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        ok(await asyncio.to_thread(npm.publish, npm.package(name, version)))
    ok(await asyncio.to_thread(npm.run, "unpublish", f"{name}@1.2.0"))
    seen = await view(npm, name)
    assert seen["versions"] == ["1.0.0", "1.1.0"] and seen["dist-tags"] == {"latest": "1.1.0"}
    # name@version is never reusable.
    again = await asyncio.to_thread(npm.publish, npm.package(name, "1.2.0"))
    assert again.returncode != 0, again.stdout
    assert "cannot publish over the previously published versions" in again.stderr
    ok(await asyncio.to_thread(npm.run, "unpublish", name, "--force"))
    gone = await asyncio.to_thread(npm.run, "view", name, "--json")
    assert gone.returncode != 0 and "E404" in gone.stdout + gone.stderr
    refused = await asyncio.to_thread(npm.publish, npm.package(name, "1.0.0"))
    assert refused.returncode != 0
    ok(await asyncio.to_thread(npm.publish, npm.package(name, "3.0.0")))
    assert (await view(npm, name))["versions"] == ["3.0.0"]


@pytest.mark.parametrize("name", ["staged-pkg", "@acme/staged-pkg"])
async def test_staged_publishing(npm: Publisher, name: str) -> None:
    ok(await asyncio.to_thread(npm.publish, npm.package(name, "1.0.0")))
    staged = ok(await asyncio.to_thread(npm.run_in, npm.package(name, "1.1.0"), "stage", "publish"))
    (first,) = UUID.findall(staged)
    rejected = ok(
        await asyncio.to_thread(npm.run_in, npm.package(name, "1.2.0"), "stage", "publish")
    )
    (second,) = UUID.findall(rejected)
    listed = json.loads(ok(await asyncio.to_thread(npm.run, "stage", "list", name, "--json")))
    assert sorted((i["id"], i["version"]) for i in listed) == sorted(
        [(first, "1.1.0"), (second, "1.2.0")]
    )
    item = json.loads(ok(await asyncio.to_thread(npm.run, "stage", "view", first, "--json")))
    assert item["packageName"] == name and item["version"] == "1.1.0" and item["actor"] == "admin"
    # Invisible to installs until approved, but downloadable for review.
    assert (await view(npm, name))["versions"] == ["1.0.0"]
    ok(await asyncio.to_thread(npm.run, "stage", "download", first))
    safe = name.replace("@", "").replace("/", "-")
    downloaded = npm.home / "project" / f"{safe}-1.1.0-{first}.tgz"
    assert downloaded.stat().st_size > 0
    ok(await asyncio.to_thread(npm.run, "stage", "approve", first))
    ok(await asyncio.to_thread(npm.run, "stage", "reject", second))
    seen = await view(npm, name)
    assert seen["versions"] == ["1.0.0", "1.1.0"] and seen["dist-tags"]["latest"] == "1.1.0"
    assert "No staged" in ok(await asyncio.to_thread(npm.run, "stage", "list", name))
    ok(await asyncio.to_thread(npm.run, "install", "--no-audit", f"{name}@1.1.0"))


def pnpm(npm: Publisher, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pnpm in ``folder``, its registry and token in the folder's .npmrc (pnpm reads no
    --userconfig), its store under the test's home."""
    store = f"store-dir={npm.home / 'pnpm-store'}\n"
    (folder / ".npmrc").write_text(
        npm.userconfig.read_text() + f"registry={npm.registry}\n" + store
    )
    return subprocess.run(
        [str(PNPM), *args], cwd=folder,
        env={**npm.env(), "HOME": str(npm.home)}, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip


def yarn(npm: Publisher, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """yarn 4 in ``folder``: the registry, its token and every cache set in .yarnrc.yml."""
    token = (npm.token() or "").strip()
    rc = {
        "npmRegistryServer": npm.registry.rstrip("/"), "npmAuthToken": token, "npmAlwaysAuth": True,
        "unsafeHttpWhitelist": ["127.0.0.1", "localhost"], "enableTelemetry": False,
        "enableGlobalCache": False, "cacheFolder": str(npm.home / "yarn-cache"),
        "globalFolder": str(npm.home / "yarn-global"), "nodeLinker": "node-modules",
        "npmMinimalAgeGate": 0,  # yarn 4 holds back versions younger than a day by default
        "enableImmutableInstalls": False,  # on under CI=true: the test's project has no lock yet
    }  # fmt: skip
    (folder / ".yarnrc.yml").write_text(json.dumps(rc))  # JSON is YAML
    (folder / "yarn.lock").touch()  # the folder is a project of its own
    return subprocess.run(
        [str(YARN), *args], cwd=folder, env={**npm.env(), "HOME": str(npm.home)},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


# How each client publishes from a package folder (yarn only from a project of its own).
PUBLISHES = {
    "pnpm": (PNPM, pnpm, [("publish", "--no-git-checks")]),
    "yarn": (YARN, yarn, [("install",), ("npm", "publish")]),
}


@pytest.mark.parametrize("scope", ["", "@acme/"])
@pytest.mark.parametrize("client", sorted(PUBLISHES))
async def test_pnpm_and_yarn_publish_and_install(npm: Publisher, client: str, scope: str) -> None:
    binary, run, steps = PUBLISHES[client]
    assert binary.exists(), f"{binary} is missing: run make clients"
    name = f"{scope}{client}-published"
    folder = npm.package(name, "1.0.0", description=f"from {client}")
    for step in steps:
        ok(await asyncio.to_thread(run, npm, folder, *step))
    seen = await view(npm, name)
    assert seen["versions"] == ["1.0.0"] and seen["description"] == f"from {client}"
    consumer = npm.home / f"{client}-consumer"
    consumer.mkdir()
    (consumer / "package.json").write_text(json.dumps({"name": "c", "version": "0.0.0"}))
    ok(await asyncio.to_thread(run, npm, consumer, "add", name))
    installed = consumer / "node_modules" / name / "package.json"
    assert json.loads(installed.read_text())["version"] == "1.0.0"
