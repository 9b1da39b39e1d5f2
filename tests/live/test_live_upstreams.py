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


async def _run(*command: str, cwd: Path, env: dict[str, str]) -> None:
    result = await asyncio.to_thread(
        subprocess.run, list(command), capture_output=True, text=True, timeout=300,
        check=False, cwd=cwd, env=env,
    )  # fmt: skip
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
