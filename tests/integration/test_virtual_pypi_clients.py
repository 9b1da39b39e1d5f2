"""Real clients against a virtual PyPI repository over a local member and a remote one
(the fake index of test_virtual_pypi.py, real wheels): ``twine upload`` into the
virtual lands in ``deploy_to``; ``pip install`` and ``uv pip install`` of that package
from the virtual resolve its dependency from the remote; the dependency-confusion case
(a local ``internal-lib 1.0`` against the upstream's ``99.0``, a reserved name with no
local version) and the cooldown, as pip and uv see them. twine runs in both shapes,
the installers against the embedded one."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app import keys
from app.auth.manage import create_token
from app.server import create_app
from tests.integration.conftest import ConfigFactory
from tests.integration.test_pypi_clients import BIN, run
from tests.integration.test_virtual_pypi import (
    Upstream,
    dist,
    page,
    public_upstream,
    repositories,
)
from tests.pypi_dists import wheel, wheel_name

APP_METADATA = b"Metadata-Version: 2.1\nName: team-app\nVersion: 1.0\nRequires-Dist: public-dep\n\n"


@dataclass
class Index:
    client: TestClient
    token: str
    home: Path

    def url(self, path: str) -> str:
        return str(self.client.make_url(f"/repository/{path}"))

    def simple(self, repo: str = "pypi") -> str:
        url = self.client.make_url(f"/repository/{repo}/simple/")
        return str(url.with_user("__token__").with_password(self.token))

    async def install(
        self, installer: str, *requirements: str, repo: str = "pypi", ok: bool = True
    ) -> tuple[Path, str]:
        """``requirements`` installed into a fresh target by pip or uv; the target and
        what the installer said."""
        target = self.home / f"target-{installer}-{len(list(self.home.iterdir()))}"
        if installer == "pip":
            command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                       "--no-cache-dir", "--no-input", "--target", str(target)]  # fmt: skip
        else:
            command = [str(BIN / "uv"), "pip", "install", "--no-cache",
                       "--python", sys.executable, "--target", str(target)]  # fmt: skip
        done = await run(
            [*command, "--index-url", self.simple(repo), *requirements], self.home, ok=ok
        )
        return target, done.stdout + done.stderr


def installed(target: Path) -> set[str]:
    return {p.name.removesuffix(".dist-info") for p in target.glob("*.dist-info")}


@pytest.fixture
def upstream_index() -> Upstream:
    upstream = public_upstream()
    upstream.projects["public-dep"][0] = dist(
        "public_dep", "1.0", wheel={"module": b"VALUE = 'up'\n"}
    )
    return upstream


@pytest.fixture
async def index(
    aiohttp_client: Any,
    aiohttp_server: Any,
    make_config: ConfigFactory,
    tmp_path: Path,
    upstream_index: Upstream,
) -> Index:
    server: TestServer = await aiohttp_server(upstream_index.app())
    app = create_app(make_config(repositories=repositories(server)))
    client = await aiohttp_client(app)
    token, _ = await create_token(app[keys.AUTH].records, "admin")
    home = tmp_path / "home"
    home.mkdir()
    return Index(client, token, home)


async def twine_upload(index: Index, path: Path, repo: str = "pypi") -> None:
    twine = [str(BIN / "twine"), "upload", "--repository-url", index.url(f"{repo}/legacy/"),
             "-u", "__token__", "-p", index.token, "--disable-progress-bar", "--non-interactive"]  # fmt: skip
    await run([*twine, str(path)], index.home)


def write_wheel(where: Path, name: str, version: str, **kwargs: Any) -> Path:
    path = where / wheel_name(name, version)
    path.write_bytes(wheel(name, version, **kwargs))
    return path


async def test_twine_uploads_into_the_virtual_and_lands_in_deploy_to(
    index: Index, tmp_path: Path
) -> None:
    path = write_wheel(tmp_path, "team_app", "1.0", metadata=APP_METADATA)
    await twine_upload(index, path)
    client = index.client
    client.session.headers["Authorization"] = f"Bearer {index.token}"
    direct = await page(client, "pypi-local", "team-app")
    assert [f["filename"] for f in direct["files"]] == [path.name]
    assert [f["filename"] for f in (await page(client, "pypi", "team-app"))["files"]] == [path.name]


@pytest.mark.parametrize("shape", ["embedded"])
@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_installs_from_the_virtual_with_a_dependency_from_the_remote(
    index: Index, tmp_path: Path, installer: str
) -> None:
    await twine_upload(index, write_wheel(tmp_path, "team_app", "1.0", metadata=APP_METADATA))
    target, said = await index.install(installer, "team-app")
    # public-dep 1.1 is yanked: 1.0 is the one an unpinned requirement gets
    assert installed(target) == {"team_app-1.0", "public_dep-1.0"}, said
    check = [sys.executable, "-c", "import public_dep; print(public_dep.VALUE)"]
    done = await run(check, index.home, PYTHONPATH=str(target))
    assert done.stdout.strip() == "up"


@pytest.mark.parametrize("shape", ["embedded"])
@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_dependency_confusion_gets_the_local_version(
    index: Index, tmp_path: Path, installer: str, upstream_index: Upstream
) -> None:
    await twine_upload(
        index, write_wheel(tmp_path, "internal_lib", "1.0", module=b"VALUE = 'ours'\n")
    )
    for spelling in ("internal-lib", "Internal_Lib", "internal.lib"):
        target, said = await index.install(installer, spelling)
        assert installed(target) == {"internal_lib-1.0"}, said
    check = [sys.executable, "-c", "import internal_lib; print(internal_lib.VALUE)"]
    assert (await run(check, index.home, PYTHONPATH=str(target))).stdout.strip() == "ours"
    _, said = await index.install(installer, "internal-lib==99.0", ok=False)
    assert "99.0" in said
    # A reserved name with no local version: not found, not the upstream's.
    target, said = await index.install(installer, "acme-tools", ok=False)
    assert not target.exists() or not installed(target), said
    assert upstream_index.requests["simple/internal-lib/"] == 0
    assert upstream_index.requests["simple/acme-tools/"] == 0
    assert upstream_index.requests[wheel_name("internal_lib", "99.0")] == 0


@pytest.mark.parametrize("shape", ["embedded"])
@pytest.mark.parametrize("installer", ["pip", "uv"])
async def test_the_cooldown_keeps_a_release_of_now_out_of_installs(
    index: Index, installer: str, upstream_index: Upstream
) -> None:
    target, said = await index.install(installer, "fresh-pkg", repo="pypi-wait")
    assert installed(target) == {"fresh_pkg-1.0"}, said  # 2.0 is of now, 3.0 of no known age
    _, said = await index.install(installer, "fresh-pkg==2.0", repo="pypi-wait", ok=False)
    assert "2.0" in said
    assert upstream_index.requests[wheel_name("fresh_pkg", "2.0")] == 0
    target, said = await index.install(installer, "fresh-pkg", repo="pypi")  # no cooldown
    assert installed(target) == {"fresh_pkg-3.0"}, said
