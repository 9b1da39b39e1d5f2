"""What every virtual repository shares, whatever its format: writes go to ``deploy_to``
and are authorised there, or are refused in the format's shape; reads take ``read`` on
the virtual; the explain endpoint's bad input; bad configurations stop start-up.
(Each format's merge rules are tested beside its other tests: test_virtual_<format>.py.)"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from app import keys
from app.auth.manage import create_principal
from app.cli import EXIT_CONFIG, main
from app.config import load_config
from app.formats import available_formats, validate_repositories
from app.server import create_app
from tests.integration.conftest import ConfigFactory

REPOS = [
    {"name": "files-local", "format": "generic", "kind": "local"},
    {"name": "files", "format": "generic", "kind": "virtual",
     "options": {"members": ["files-local"], "deploy_to": "files-local"}},
    {"name": "read-only", "format": "generic", "kind": "virtual",
     "options": {"members": ["files-local"]}},
]  # fmt: skip
PERMISSIONS = [
    {"repository": "files", "users": ["through"], "actions": ["write"]},  # the virtual only
    {"repository": "files", "users": ["member"], "actions": ["read"]},
    {"repository": "files-local", "users": ["member"], "actions": ["write"]},
]


def basic(user: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{user}-password".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture
async def client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient:
    app = create_app(make_config(repositories=REPOS, auth={"permissions": PERMISSIONS}))
    client: TestClient = await aiohttp_client(app, anonymous=True)
    for name in ("through", "member"):
        await create_principal(app[keys.AUTH].records, name, password=f"{name}-password")
    return client


async def test_a_write_through_a_virtual_lands_in_deploy_to_with_its_permission(
    client: TestClient,
) -> None:
    response = await client.put(
        "/repository/files/a/b.txt", data=b"through", headers=basic("member")
    )
    assert response.status == 201, await response.text()
    response = await client.get("/repository/files-local/a/b.txt", headers=basic("member"))
    assert response.status == 200 and await response.read() == b"through"  # stored there
    response = await client.get("/repository/files/a/b.txt", headers=basic("member"))
    assert response.status == 200 and await response.read() == b"through"
    # Write on the virtual alone is not write on deploy_to.
    response = await client.put("/repository/files/a/c.txt", data=b"x", headers=basic("through"))
    assert response.status == 403
    response = await client.put("/repository/files/a/c.txt", data=b"x")
    assert response.status == 401
    # The same refusal before the body is sent (Expect: 100-continue).
    response = await client.put(
        "/repository/files/a/c.txt", data=b"x" * 1000,
        headers={**basic("through"), "Expect": "100-continue"},
    )  # fmt: skip
    assert response.status == 403
    response = await client.delete("/repository/files/a/b.txt", headers=basic("member"))
    assert response.status == 403  # delete on deploy_to is another permission


async def test_a_virtual_without_deploy_to_refuses_writes_in_the_formats_shape(
    client: TestClient,
) -> None:
    admin = await _admin(client)
    response = await client.put("/repository/read-only/a/b.txt", data=b"x", headers=admin)
    assert response.status == 405
    error = (await response.json())["error"]
    assert error["code"] and "no deploy_to" in error["message"]


async def test_explain_refuses_bad_input_and_non_virtual_repositories(client: TestClient) -> None:
    admin = await _admin(client)
    base = "/api/v1/repositories"
    response = await client.get(f"{base}/files/explain")
    assert response.status == 401
    for query, status in [("", 400), ("?name=", 400), ("?name=" + "a" * 5000, 400),
                          ("?name=a&version=" + "1" * 300, 400)]:  # fmt: skip
        response = await client.get(f"{base}/files/explain{query}", headers=admin)
        assert response.status == status, query
        assert "name" in (await response.json())["error"]["message"] or "version" in query
    response = await client.get(f"{base}/files-local/explain?name=a", headers=admin)
    assert response.status == 404
    assert "not a virtual repository" in (await response.json())["error"]["message"]
    response = await client.get(f"{base}/nope/explain?name=a", headers=admin)
    assert response.status == 404


async def _admin(client: TestClient) -> dict[str, str]:
    from tests.signin import admin_token

    assert client.app is not None
    return {"Authorization": f"Bearer {await admin_token(client.app)}"}


@pytest.mark.parametrize(
    ("members", "deploy_to", "message"),
    [
        (["nope"], None, "repositories[1].options.members[0]: unknown repository 'nope'"),
        (["npm-local"], None, "'npm-local' is a repository of format npm, not generic"),
        (["files-local", "loop"], None, "v -> loop -> v includes itself"),
        (["files-local"], "npm-local", "deploy_to: 'npm-local' is not a local member"),
    ],
)
def test_a_bad_virtual_stops_config_check_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], members: list[str],
    deploy_to: str | None, message: str,
) -> None:  # fmt: skip
    options: dict[str, Any] = {"members": members}
    if deploy_to:
        options["deploy_to"] = deploy_to
    config = {"repositories": [
        {"name": "files-local", "format": "generic"},
        {"name": "v", "format": "generic", "kind": "virtual", "options": options},
        {"name": "npm-local", "format": "npm"},
        {"name": "loop", "format": "generic", "kind": "virtual", "options": {"members": ["v"]}},
    ]}  # fmt: skip
    path = tmp_path / "artifactapi.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["config", "check", str(path)]) == EXIT_CONFIG
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "env", [{}, {"PYPI_UPSTREAM": "https://pypi.example", "NPM_UPSTREAM": "https://npm.example",
                 "OCI_UPSTREAM": "https://oci.example", "FILES_UPSTREAM": "https://files.example"}],
)  # fmt: skip
def test_the_make_run_configuration_declares_a_virtual_per_format(env: dict[str, str]) -> None:
    config = load_config(Path(__file__).parents[2] / "artifactapi.yaml", env=env)
    validate_repositories(config, available_formats())
    kinds = {(r.format, r.kind) for r in config.repositories}
    for fmt in ("generic", "pypi", "npm", "oci"):
        assert {(fmt, "local"), (fmt, "virtual")} <= kinds
        assert ((fmt, "remote") in kinds) == bool(env)
