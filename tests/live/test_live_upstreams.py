"""Smoke tests against real public upstreams, through real clients. They run only
when ``ARTIFACTAPI_LIVE_PYPI_URL`` / ``ARTIFACTAPI_LIVE_NPM_URL`` name the upstreams
(e.g. https://pypi.org and https://registry.npmjs.org); CI never needs the network."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from tests import shapes

PYPI = os.environ.get("ARTIFACTAPI_LIVE_PYPI_URL")
NPM = os.environ.get("ARTIFACTAPI_LIVE_NPM_URL")


async def _completed(
    *command: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, list(command), capture_output=True, text=True, timeout=300,
        check=False, cwd=cwd, env=env,
    )  # fmt: skip


async def _run(*command: str, cwd: Path, env: dict[str, str]) -> None:
    result = await _completed(*command, cwd=cwd, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not PYPI, reason="ARTIFACTAPI_LIVE_PYPI_URL not set")
async def test_pip_through_a_live_pypi(aiohttp_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = {"name": "pypi", "format": "pypi", "kind": "remote", "options": {"upstream": PYPI}}
    client: TestClient = await aiohttp_client(
        create_app(shapes.embedded(tmp_path, repositories=[repo]))
    )
    index = str(client.make_url("/repository/pypi/simple/"))
    # Only our index: no pip.conf, find-links or extra indexes of this machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        await _run(
            sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps",
            "--index-url", index, "six==1.16.0", "-d", str(out), cwd=tmp_path, env=env,
        )  # fmt: skip
        assert [p.name for p in out.iterdir()] == ["six-1.16.0-py2.py3-none-any.whl"]
    # The project list (tens of MB on pypi.org), with links relative to this repository.
    listing = await client.get("/repository/pypi/simple/")
    assert listing.status == 200 and '<a href="six/">six</a>' in await listing.text()


@pytest.mark.skipif(not NPM, reason="ARTIFACTAPI_LIVE_NPM_URL not set")
async def test_npm_through_a_live_registry(aiohttp_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = {"name": "npm", "format": "npm", "kind": "remote", "options": {"upstream": NPM}}
    client: TestClient = await aiohttp_client(
        create_app(shapes.embedded(tmp_path, repositories=[repo]))
    )
    registry = str(client.make_url("/repository/npm/"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "smoke", "version": "1.0.0"}))
    userconfig = tmp_path / "npmrc"
    userconfig.write_text("")
    env = {**os.environ, "npm_config_userconfig": str(userconfig)}
    await _run(
        "npm", "install", "--registry", registry, "--no-audit", "--no-fund",
        "--cache", str(tmp_path / "npm-cache"), "is-number@7.0.0", cwd=project, env=env,
    )  # fmt: skip
    installed = json.loads((project / "node_modules/is-number/package.json").read_text())
    assert installed["version"] == "7.0.0"
    # What is relayed (the audit npm runs by default, a search) or answered here (ping)
    # ends through us as it does against the upstream itself: a read-only mirror has no
    # search or audit, and npm says so either way.
    for command in (["audit", "--json"], ["search", "--json", "is-number"], ["ping"]):
        ours, theirs = [
            await _completed("npm", *command, "--registry", url, cwd=project, env=env)
            for url in (registry, str(NPM))
        ]
        assert ours.returncode == theirs.returncode, (command, ours.stdout + ours.stderr)
        if command[0] == "search" and ours.returncode == 0:
            assert "is-number" in [p["name"] for p in json.loads(ours.stdout)]
    latest = await client.get("/repository/npm/is-number/7.0.0")
    assert (await latest.json())["version"] == "7.0.0"
