"""Real clients against a PyPI local repository: a wheel and an sdist built in the test
(``python -m build``, offline: poetry-core is the build backend, from this venv),
published with ``twine upload`` (again with ``--skip-existing``), ``uv publish`` and
``poetry publish``, then installed with ``pip install`` and ``uv pip install``. The
repository is private: every client sends the token as the password of ``__token__``.
twine runs in both shapes, the others against the embedded one."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import keys
from app.auth.manage import create_token
from app.server import create_app
from tests.integration.conftest import ConfigFactory

BIN = Path(sys.executable).parent
REPOS = [{"name": "pypi-local", "format": "pypi", "kind": "local"}]
PROJECT = "Probe.Pkg"
WHEEL = "probe_pkg-1.0.0-py3-none-any.whl"
SDIST = "probe_pkg-1.0.0.tar.gz"
PYPROJECT = """\
[project]
name = "Probe.Pkg"
version = "1.0.0"
description = "a package the tests publish"
requires-python = ">=3.8"
classifiers = ["Programming Language :: Python :: 3"]

[tool.poetry]
packages = [{include = "probe_pkg", from = "src"}]

[build-system]
requires = ["poetry-core>=2"]
build-backend = "poetry.core.masonry.api"
"""


def _clean_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "NO_PROXY": "*", "HOME": str(home), "PIP_CONFIG_FILE": os.devnull}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "PIP_INDEX_URL",
                 "UV_INDEX_URL", "TWINE_USERNAME", "TWINE_PASSWORD"):  # fmt: skip
        env.pop(name, None)
    env.update(
        {
            "UV_NO_CONFIG": "1",
            "UV_CACHE_DIR": str(home / "uv-cache"),
            "POETRY_CONFIG_DIR": str(home / "poetry-config"),
            "POETRY_CACHE_DIR": str(home / "poetry-cache"),
            "POETRY_DATA_DIR": str(home / "poetry-data"),
        }
    )
    return env


async def run(
    command: Sequence[str], home: Path, cwd: Path | None = None, ok: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(
        subprocess.run,
        list(command),
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**_clean_env(home), **env},
        timeout=180,
    )
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def build(project: Path, out: Path, home: Path, value: int = 1) -> list[Path]:
    (project / "src" / "probe_pkg").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "src" / "probe_pkg" / "__init__.py").write_text(f"VALUE = {value}\n")
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(project)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=_clean_env(home), timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [out / WHEEL, out / SDIST]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("dists")
    return build(root / "project", root / "dist", root)


@dataclass
class Index:
    client: TestClient
    token: str
    home: Path

    @property
    def base(self) -> str:
        return str(self.client.make_url("/repository/pypi-local/")).rstrip("/")

    @property
    def simple(self) -> str:
        """The index URL with the credentials pip and uv take in it."""
        url = self.client.make_url("/repository/pypi-local/simple/")
        return str(url.with_user("__token__").with_password(self.token))

    async def files(self) -> list[str]:
        response = await self.client.get("/repository/pypi-local/simple/probe-pkg/",
                                         headers={"Accept": "application/vnd.pypi.simple.v1+json"})  # fmt: skip
        if response.status == 404:
            return []
        assert response.status == 200, await response.text()
        document: dict[str, Any] = await response.json(content_type=None)
        return sorted(f["filename"] for f in document["files"])

    async def installs(self, home: Path) -> None:
        """pip and uv pip both install it from here and import it."""
        for installer in ("pip", "uv"):
            target = home / f"target-{installer}"
            if installer == "pip":
                command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                           "--no-cache-dir", "--no-input", "--target", str(target)]  # fmt: skip
            else:
                command = [str(BIN / "uv"), "pip", "install", "--no-cache",
                           "--python", sys.executable, "--target", str(target)]  # fmt: skip
            await run([*command, "--index-url", self.simple, "probe-pkg==1.0.0"], home)
            check = [sys.executable, "-c", "import probe_pkg; print(probe_pkg.VALUE)"]
            done = await run(check, home, PYTHONPATH=str(target))
            assert done.stdout.strip() == "1", installer


@pytest.fixture
async def index(aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path) -> Index:
    app = create_app(make_config(repositories=REPOS))
    client = await aiohttp_client(app)
    token, _ = await create_token(app[keys.AUTH].records, "admin")
    return Index(client, token, tmp_path)


async def test_twine_uploads_again_shows_why_it_refuses_and_pip_and_uv_install(
    index: Index, dists: list[Path], tmp_path: Path
) -> None:
    twine = [str(BIN / "twine"), "upload", "--repository-url", index.base + "/legacy/",
             "-u", "__token__", "-p", index.token, "--disable-progress-bar", "--non-interactive"]  # fmt: skip
    await run([*twine, *map(str, dists)], tmp_path)
    assert await index.files() == sorted([WHEEL, SDIST])
    await run([*twine, *map(str, dists)], tmp_path)  # the same files again: a 200 each

    # Other bytes under the same names: twine says why (our status line is its message).
    changed = build(tmp_path / "changed", tmp_path / "changed-dist", tmp_path, value=2)
    refused = await run([*twine, *map(str, changed)], tmp_path, ok=False)
    assert refused.returncode != 0
    said = " ".join((refused.stdout + refused.stderr).split())  # rich wraps its lines
    assert "HTTPError: 400 Bad Request" in said, said
    assert f"File already exists ({WHEEL}) with other content" in said, said
    assert await index.files() == sorted([WHEEL, SDIST])
    await index.installs(tmp_path)


async def test_twine_skip_existing_skips_what_we_answer(
    index: Index, dists: list[Path], tmp_path: Path
) -> None:
    """twine 7 refuses ``--skip-existing`` for any index but pypi.org's before it sends
    a byte; what it would skip by is :func:`twine.commands.upload.skip_upload`, asked
    here of the answers twine's own upload code gets from us."""
    from twine.commands.upload import skip_upload
    from twine.package import PackageFile
    from twine.repository import Repository

    twine = [str(BIN / "twine"), "upload", "--repository-url", index.base + "/legacy/",
             "-u", "__token__", "-p", index.token, "--disable-progress-bar", "--skip-existing"]  # fmt: skip
    said = await run([*twine, *map(str, dists)], tmp_path, ok=False)
    assert "--skip-existing" in said.stdout + said.stderr and await index.files() == []

    repository = Repository(index.base + "/legacy/", "__token__", index.token, True)
    changed = build(tmp_path / "changed", tmp_path / "changed-dist", tmp_path, value=2)
    try:
        for path in (*dists, *changed):
            package = PackageFile.from_filename(str(path), None)
            response = await asyncio.to_thread(repository.upload, package)
            first = path in dists
            assert response.status_code == (200 if first else 400), response.text
            assert skip_upload(response, True, package) is not first
    finally:
        repository.close()
    assert await index.files() == sorted([WHEEL, SDIST])


# make test (make clients) puts twine 6.1 in a venv of its own: the last twine whose
# --skip-existing works against an index other than pypi.org's.
TWINE6 = BIN.parent / "twine6" / "bin" / "twine"


@pytest.mark.parametrize("shape", ["embedded"])
async def test_twine_6_skip_existing_goes_on_past_what_is_there(
    index: Index, dists: list[Path], tmp_path: Path
) -> None:
    assert TWINE6.exists(), f"{TWINE6} is missing: run make clients"
    twine = [str(TWINE6), "upload", "--repository-url", index.base + "/legacy/", "-u", "__token__",
             "-p", index.token, "--disable-progress-bar", "--non-interactive", "--skip-existing"]  # fmt: skip
    await run([*twine, *map(str, dists)], tmp_path)
    assert await index.files() == sorted([WHEEL, SDIST])
    # Other bytes under the same names: skipped, and the upload as a whole succeeds.
    changed = build(tmp_path / "changed", tmp_path / "changed-dist", tmp_path, value=2)
    done = await run([*twine, *map(str, changed)], tmp_path)
    said = " ".join((done.stdout + done.stderr).split())
    for name in (WHEEL, SDIST):
        assert f"Skipping {name} because it appears to already exist" in said, said
    assert await index.files() == sorted([WHEEL, SDIST])
    await index.installs(tmp_path)  # still the first build's bytes


@pytest.mark.parametrize("shape", ["embedded"])
async def test_uv_publish_and_install(index: Index, dists: list[Path], tmp_path: Path) -> None:
    publish = [str(BIN / "uv"), "publish", "--no-cache", "--publish-url", index.base + "/",
               "--username", "__token__", "--password", index.token]  # fmt: skip
    await run([*publish, *map(str, dists)], tmp_path)
    assert await index.files() == sorted([WHEEL, SDIST])
    await run([*publish, *map(str, dists)], tmp_path)  # a retry changes nothing
    # --check-url: uv reads our index first and skips what is there already.
    checked = await run([*publish, "--check-url", index.simple, *map(str, dists)], tmp_path)
    for name in (WHEEL, SDIST):
        assert f"File {name} already exists, skipping" in checked.stderr, checked.stderr
    changed = build(tmp_path / "changed", tmp_path / "changed-dist", tmp_path, value=2)
    refused = await run([*publish, *map(str, changed)], tmp_path, ok=False)
    assert refused.returncode != 0 and "File already exists" in refused.stderr
    await index.installs(tmp_path)


@pytest.mark.parametrize("shape", ["embedded"])
async def test_poetry_publish(index: Index, dists: list[Path], tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    shutil.copytree(dists[0].parent, project / "dist")
    poetry = [str(BIN / "poetry"), "publish", "--repository", "local", "--no-interaction"]
    await run(
        poetry,
        tmp_path,
        cwd=project,
        POETRY_REPOSITORIES_LOCAL_URL=index.base + "/legacy/",
        POETRY_HTTP_BASIC_LOCAL_USERNAME="__token__",
        POETRY_HTTP_BASIC_LOCAL_PASSWORD=index.token,
    )
    assert await index.files() == sorted([WHEEL, SDIST])
    await index.installs(tmp_path)
