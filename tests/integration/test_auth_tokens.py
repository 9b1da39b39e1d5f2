"""The OCI token flow (docker's token spec) and what must hold across replicas: keys in
the shared database, rotation, retirement, revocation within a second everywhere."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from app import keys
from app.auth.bearer import new_signing_key
from app.auth.manage import create_principal, create_token
from app.config import Config
from app.server import create_app
from tests.integration.conftest import ConfigFactory

REPOS = [
    {"name": "docker", "format": "oci", "kind": "local"},
    {"name": "public", "format": "oci", "kind": "local", "anonymous_read": True},
]
PERMISSIONS = [{"repository": "docker", "users": ["dev"], "actions": ["read"]}]


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config(repositories=REPOS, auth={"permissions": PERMISSIONS})


async def replica(aiohttp_client: Any, config: Config) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(config), anonymous=True)
    return client


@pytest.fixture
async def one(aiohttp_client: Any, config: Config) -> TestClient:
    client = await replica(aiohttp_client, config)
    await create_principal(client.app[keys.AUTH].records, "dev", password="dev-password")
    return client


async def token_for(client: TestClient, scope: str, headers: dict[str, str] | None = None) -> Any:
    response = await client.get(
        "/v2/token", params={"service": "artifactapi", "scope": scope}, headers=headers or {}
    )
    assert response.status == 200, await response.text()
    return await response.json()


def _with_claims(token: str, claims: dict[str, Any]) -> str:
    """``token`` with other claims and its own signature."""
    header, _, signature = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{body}.{signature}"


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_a_token_holds_what_was_asked_and_granted_and_nothing_more(one: TestClient) -> None:
    body = await token_for(one, "repository:docker/app:pull,push", basic("dev", "dev-password"))
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    claims = claims_of(body["token"])
    # dev may read docker, not write: a partial grant, not an error.
    assert claims["access"] == [{"type": "repository", "name": "docker/app", "actions": ["pull"]}]
    assert claims["sub"] == "dev" and claims["aud"] == "artifactapi" and claims["iss"]
    assert {"exp", "nbf", "iat", "jti"} <= set(claims)
    assert jwt.get_unverified_header(body["token"])["kid"]
    pulled = await one.get("/v2/docker/app/tags/list", headers=bearer(body["token"]))
    assert pulled.status == 404  # allowed: the image does not exist yet
    pushed = await one.post("/v2/docker/app/blobs/uploads/", headers=bearer(body["token"]))
    assert pushed.status == 403
    other = await one.get("/v2/public/app/tags/list", headers=bearer(body["token"]))
    assert other.status == 401  # the token names docker/app only
    assert 'scope="repository:public/app:pull"' in other.headers["WWW-Authenticate"]


async def test_anonymous_tokens_carry_what_anonymous_may(one: TestClient) -> None:
    body = await token_for(one, "repository:public/app:pull repository:docker/app:pull")
    assert claims_of(body["token"])["access"] == [
        {"type": "repository", "name": "public/app", "actions": ["pull"]},
        {"type": "repository", "name": "docker/app", "actions": []},
    ]
    assert (await one.get("/v2/public/app/tags/list", headers=bearer(body["token"]))).status == 404
    assert (await one.get("/v2/docker/app/tags/list", headers=bearer(body["token"]))).status == 401


async def test_injected_scopes_grant_nothing_extra(one: TestClient) -> None:
    admin_token, _ = await create_token(one.app[keys.AUTH].records, "admin")
    asked = "repository:docker/app:pull,push repository:public/x:* repository:../etc:pull"
    body = await token_for(one, asked, basic("dev", "dev-password"))
    access = claims_of(body["token"])["access"]
    assert access == [
        {"type": "repository", "name": "docker/app", "actions": ["pull"]},
        {"type": "repository", "name": "public/x", "actions": ["pull"]},
    ]
    body = await token_for(one, "repository:docker/app:push", basic("admin", admin_token))
    assert claims_of(body["token"])["access"][0]["actions"] == ["push"]


async def test_the_oauth2_form_docker_posts(one: TestClient) -> None:
    form = {"grant_type": "password", "username": "dev", "password": "dev-password",
            "service": "artifactapi", "scope": "repository:docker/app:pull",
            "client_id": "docker"}  # fmt: skip
    response = await one.post("/v2/token", data=form)
    assert response.status == 200
    assert claims_of((await response.json())["access_token"])["sub"] == "dev"
    wrong = await one.post("/v2/token", data={**form, "password": "nope"})
    assert wrong.status == 401
    odd = await one.post("/v2/token", data={**form, "grant_type": "authorization_code"})
    assert odd.status == 400


async def test_forged_tokens_are_refused(one: TestClient) -> None:
    good = (await token_for(one, "repository:docker/app:pull", basic("dev", "dev-password")))[
        "token"
    ]
    claims = claims_of(good)
    kid = jwt.get_unverified_header(good)["kid"]
    stranger = new_signing_key()
    forged = {
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "another key": jwt.encode(
            claims, stranger.private_pem, algorithm="ES256", headers={"kid": kid}
        ),
        "HS256 with a secret": jwt.encode(
            claims, "a shared secret of thirty-two bytes!", algorithm="HS256", headers={"kid": kid}
        ),
        "tampered access": _with_claims(
            good,
            {
                **claims,
                "access": [{"type": "repository", "name": "docker/app", "actions": ["push"]}],
            },
        ),
    }
    for what, token in forged.items():
        response = await one.post("/v2/docker/app/blobs/uploads/", headers=bearer(token))
        assert response.status == 401, what
    records = one.app[keys.AUTH].records
    key = (await records.signing_keys())[0]
    expired = jwt.encode(
        {**claims, "exp": int(time.time()) - 60}, key.private_pem, algorithm="ES256",
        headers={"kid": kid},
    )  # fmt: skip
    assert (await one.get("/v2/docker/app/tags/list", headers=bearer(expired))).status == 401


async def test_two_replicas_accept_each_others_tokens_and_revocations(
    aiohttp_client: Any, config: Config, one: TestClient
) -> None:
    two = await replica(aiohttp_client, config)
    body = await token_for(one, "repository:docker/app:pull", basic("dev", "dev-password"))
    assert (await two.get("/v2/docker/app/tags/list", headers=bearer(body["token"]))).status == 404
    records = one.app[keys.AUTH].records
    secret, row = await create_token(records, "dev")
    assert (await two.get("/v2/docker/app/tags/list", headers=bearer(secret))).status == 404
    assert await records.revoke_token(row.id)  # on the first replica's side
    await refused_within_a_second(two, bearer(secret), "a revoked token")
    # A disabled user: their password, their API tokens and their bearer tokens, everywhere.
    other, _ = await create_token(records, "dev")
    signed = (await token_for(two, "repository:docker/app:pull", basic("dev", "dev-password")))[
        "token"
    ]
    for headers in (bearer(other), bearer(signed), basic("dev", "dev-password")):
        assert (await two.get("/v2/docker/app/tags/list", headers=headers)).status == 404
    assert await records.update_principal("dev", disabled=True)
    for headers in (bearer(other), bearer(signed), basic("dev", "dev-password")):
        await refused_within_a_second(two, headers, "a disabled user's credential")


async def refused_within_a_second(client: TestClient, headers: dict[str, str], what: str) -> None:
    deadline = time.monotonic() + 1.0
    while (await client.get("/v2/docker/app/tags/list", headers=headers)).status != 401:
        assert time.monotonic() < deadline, f"the other replica still accepts {what}"
        await asyncio.sleep(0.05)


async def test_a_tokens_last_use_is_recorded(one: TestClient) -> None:
    auth = one.app[keys.AUTH]
    secret, row = await create_token(auth.records, "dev")
    assert row.last_used_at is None
    before = time.time()
    assert (await one.get("/v2/docker/app/tags/list", headers=bearer(secret))).status == 404
    await auth.flush_uses()  # what the watch does every ten seconds
    used = await auth.records.token(row.id)
    assert used is not None and used.last_used_at is not None and used.last_used_at >= before


async def test_rotation_keeps_old_tokens_and_retirement_ends_them(one: TestClient) -> None:
    auth = one.app[keys.AUTH]
    before = (await token_for(one, "repository:docker/app:pull", basic("dev", "dev-password")))[
        "token"
    ]
    old_kid = jwt.get_unverified_header(before)["kid"]
    new = await auth.keys.rotate()
    after = (await token_for(one, "repository:docker/app:pull", basic("dev", "dev-password")))[
        "token"
    ]
    assert jwt.get_unverified_header(after)["kid"] == new.kid != old_kid
    for token in (before, after):
        assert (await one.get("/v2/docker/app/tags/list", headers=bearer(token))).status == 404
    assert await auth.records.retire_signing_key(old_kid)
    await auth.look()
    assert (await one.get("/v2/docker/app/tags/list", headers=bearer(before))).status == 401
    assert (await one.get("/v2/docker/app/tags/list", headers=bearer(after))).status == 404


@pytest.mark.parametrize(
    ("server", "headers", "realm"),
    [
        ({"base_url": "https://registry.example.com"}, {}, "https://registry.example.com"),
        (
            {"trust_forwarded": True},
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "cr.example.org"},
            "https://cr.example.org",
        ),
        ({}, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}, None),
    ],
)
async def test_the_realm_is_where_clients_reach_the_service(
    aiohttp_client: Any, make_config: ConfigFactory, server: dict[str, Any],
    headers: dict[str, str], realm: str | None,
) -> None:  # fmt: skip
    """Behind a TLS-terminating proxy the realm must be the URL the client can reach:
    the configured base URL, else trusted forwarded headers, else the request's own
    (untrusted forwarded headers are ignored)."""
    client = await aiohttp_client(
        create_app(make_config(repositories=REPOS, server=server)), anonymous=True
    )
    answer = await client.get("/v2/", headers=headers)
    expected = realm or f"http://{client.host}:{client.port}"
    assert answer.headers["WWW-Authenticate"] == (
        f'Bearer realm="{expected}/v2/token",service="artifactapi"'
    )


async def test_a_bearer_token_dies_with_the_api_token_it_was_bought_with(
    one: TestClient,
) -> None:
    auth = one.app[keys.AUTH]
    secret, row = await create_token(auth.records, "dev")
    body = await token_for(one, "repository:docker/app:pull", basic("dev", secret))
    assert claims_of(body["token"])["tid"] == row.id
    assert (await one.get("/v2/docker/app/tags/list", headers=bearer(body["token"]))).status == 404
    assert await auth.records.revoke_token(row.id)
    await auth.look()
    assert (await one.get("/v2/docker/app/tags/list", headers=bearer(body["token"]))).status == 401
