"""Trusted publishing against a fake OIDC issuer (an aiohttp server with a discovery
document and a JWKS, signing ID tokens as GitHub Actions does)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from app import keys
from app.server import create_app
from tests.integration.conftest import ConfigFactory

AUDIENCE = "artifactapi"


@dataclass
class Issuer:
    """An OIDC provider: its keys (rotated on demand) and the ID tokens it signs."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    fetched: int = 0

    def rotate(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return kid

    def app(self) -> web.Application:
        async def discovery(request: web.Request) -> web.Response:
            return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(request: web.Request) -> web.Response:
            self.fetched += 1
            published = []
            for kid, key in self.keys.items():
                jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                published.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
            return web.json_response({"keys": published})

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/jwks", jwks)
        return app

    def sign(self, kid: str | None = None, **claims: Any) -> str:
        kid = kid or next(reversed(self.keys))
        now = int(time.time())
        body = {
            "iss": self.url, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 300,
            "jti": uuid.uuid4().hex, "sub": "repo:acme/widgets:ref:refs/tags/v1",
            "repository": "acme/widgets",
            "workflow_ref": "acme/widgets/.github/workflows/release.yml@refs/tags/v1",
            **claims,
        }  # fmt: skip
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@dataclass
class Service:
    client: TestClient
    issuer: Issuer


@pytest.fixture
async def service(aiohttp_client: Any, aiohttp_server: Any, make_config: ConfigFactory) -> Service:
    issuer = Issuer()
    issuer.rotate()
    server: TestServer = await aiohttp_server(issuer.app())
    issuer.url = str(server.make_url("")).rstrip("/")
    publisher = {
        "name": "widgets-release",
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "claims": {"repository": "acme/widgets",
                   "workflow_ref": "acme/widgets/.github/workflows/release.yml@*"},
        "grants": [{"repository": "releases", "actions": ["write"]}],
        "token_ttl": "10m",
    }  # fmt: skip
    repos = [
        {"name": "releases", "format": "generic", "kind": "local"},
        {"name": "other", "format": "generic", "kind": "local"},
    ]
    config = make_config(repositories=repos, auth={"trusted_publishers": [publisher]})
    client: TestClient = await aiohttp_client(create_app(config), anonymous=True)
    return Service(client, issuer)


async def exchange(service: Service, token: str) -> tuple[int, dict[str, Any]]:
    response = await service.client.post("/api/v1/oidc/token", json={"token": token})
    return response.status, await response.json()


async def test_a_ci_job_trades_its_id_token_for_a_scoped_short_lived_token(
    service: Service,
) -> None:
    status, body = await exchange(service, service.issuer.sign())
    assert status == 200, body
    assert body["publisher"] == "widgets-release"
    assert body["expires_at"] == pytest.approx(time.time() + 600, abs=30)
    headers = {"Authorization": f"Bearer {body['token']}"}
    put = await service.client.put("/repository/releases/w-1.0.tgz", data=b"w", headers=headers)
    assert put.status == 201
    other = await service.client.put("/repository/other/w-1.0.tgz", data=b"w", headers=headers)
    assert other.status == 403  # its grants, nothing more
    records = service.client.app[keys.AUTH].records
    [row] = await records.tokens("publisher@widgets-release")
    assert row.scopes == [{"repository": "releases", "actions": ["write"]}]


async def test_an_id_token_buys_one_token_only(service: Service) -> None:
    token = service.issuer.sign()
    assert (await exchange(service, token))[0] == 200
    status, body = await exchange(service, token)
    assert status == 401 and "used already" in json.dumps(body)


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"aud": "someone-else"}, 401),
        ({"exp": int(time.time()) - 3600}, 401),
        ({"repository": "evil/widgets"}, 403),
        ({"workflow_ref": "acme/widgets/.github/workflows/other.yml@refs/heads/main"}, 403),
    ],
)
async def test_id_tokens_that_do_not_qualify_are_refused(
    service: Service, claims: dict[str, Any], status: int
) -> None:
    assert (await exchange(service, service.issuer.sign(**claims)))[0] == status


async def test_forged_and_foreign_id_tokens_are_refused(service: Service) -> None:
    good = jwt.decode(service.issuer.sign(), options={"verify_signature": False})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = next(iter(service.issuer.keys))
    forged = [
        jwt.encode(good, None, algorithm="none"),
        jwt.encode(good, stranger, algorithm="RS256", headers={"kid": kid}),
        jwt.encode(good, stranger, algorithm="RS256", headers={"kid": "unknown"}),
        jwt.encode({**good, "iss": "https://issuer.invalid"}, stranger, algorithm="RS256"),
        "not.a.token",
    ]
    for token in forged:
        status, body = await exchange(service, token)
        assert status == 401, (token[:40], body)
    for bad in (b"not json", b'{"token": 5}', b"[]"):
        response = await service.client.post("/api/v1/oidc/token", data=bad)
        assert response.status == 400


async def test_a_rotated_issuer_key_is_fetched_once_when_first_seen(service: Service) -> None:
    assert (await exchange(service, service.issuer.sign()))[0] == 200
    fetched = service.issuer.fetched
    assert (await exchange(service, service.issuer.sign()))[0] == 200
    assert service.issuer.fetched == fetched  # the keys were kept
    new = service.issuer.rotate()
    assert (await exchange(service, service.issuer.sign(kid=new)))[0] == 200
    assert service.issuer.fetched == fetched + 1
