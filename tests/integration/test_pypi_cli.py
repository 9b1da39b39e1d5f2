"""``artifactapi pypi yank | unyank | delete``: run as a process against the database a
running server uses (embedded: one SQLite file), whose pages follow on the next request."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient

from app.config import load_config
from app.server import create_app
from tests.processes import REPO_ROOT
from tests.pypi_dists import JSON_TYPE, upload, wheel, wheel_name

REPO = "/repository/pypi-local"


def write_config(root: Path) -> Path:
    path = root / "artifactapi.yaml"
    config = {
        "database": {"url": f"sqlite:///{root / 'meta.db'}"},
        "storage": {"driver": "filesystem", "root": str(root / "blobs")},
        "cache": {"url": "memory://"},
        "auth": {"initial_admin_password_file": str(root / "initial-admin-password")},
        "repositories": [
            {"name": "pypi-local", "format": "pypi", "kind": "local"},
            {"name": "files", "format": "generic", "kind": "local"},
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "app", "pypi", *args, "--config", str(config)]
    return await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )


async def files(client: TestClient) -> list[dict[str, Any]]:
    response = await client.get(f"{REPO}/simple/demo-pkg/", headers={"Accept": JSON_TYPE})
    if response.status == 404:
        return []
    document: dict[str, Any] = await response.json(content_type=None)
    return list(document["files"])


async def test_yank_unyank_and_delete_from_the_command_line(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    client = await aiohttp_client(create_app(load_config(str(config))))
    for version in ("1.0", "2.0"):
        form = upload(wheel("demo_pkg", version), wheel_name("demo_pkg", version), version=version)
        assert (await client.post(f"{REPO}/", data=form.form())).status == 200

    done = await cli(config, "yank", "pypi-local", "Demo_Pkg", "1.0", "--reason", "broken build")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["versions"][0]["yanked"] is True
    assert [f.get("yanked") for f in await files(client)] == ["broken build", None]

    done = await cli(config, "unyank", "pypi-local", "demo-pkg", "1.0")
    assert done.returncode == 0, done.stderr
    assert [f.get("yanked") for f in await files(client)] == [None, None]

    second = wheel_name("demo_pkg", "2.0")
    done = await cli(config, "delete", "pypi-local", "demo-pkg", "2.0", "--file", second)
    assert done.returncode == 0, done.stderr
    assert [f["filename"] for f in await files(client)] == [wheel_name()]

    for refused, says in (
        (["yank", "pypi-local", "demo-pkg", "9.0"], "nothing matches"),
        (["yank", "pypi-local", "no-such", "1.0"], "nothing matches"),
        (["yank", "files", "demo-pkg", "1.0"], "not found"),
        (["yank", "nowhere", "demo-pkg", "1.0"], "not found"),
    ):
        done = await cli(config, *refused)
        assert done.returncode == 1 and says in done.stderr, (refused, done.stderr)

    done = await cli(config, "delete", "pypi-local", "demo-pkg")
    assert done.returncode == 0 and json.loads(done.stdout) == {}, done.stderr
    assert await files(client) == []
    # The deleted names stay reserved.
    response = await client.post(f"{REPO}/", data=upload(wheel()).form())
    assert response.status == 400 and "reserved" in response.reason
