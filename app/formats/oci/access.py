"""Who may pull, push and delete, the docker way: a 401 with a Bearer challenge naming
the token realm, and ``/v2/token``, which trades credentials (Basic, or the OAuth2
form docker posts) for a short-lived signed token holding the granted actions.

The realm is built from the external URL (``server.base_url``, else trusted forwarded
headers, else the request), so a client behind a TLS-terminating proxy is sent to the
URL it can reach. ``GET /v2/`` answers 401 to anyone who brings no valid credentials,
as distribution does: ``docker login`` believes whatever that answer says.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from aiohttp import hdrs, web

from app.formats.api import (
    ACTION,
    PRINCIPAL,
    PRIVATE,
    Action,
    BadRequest,
    NotFound,
    Principal,
    Services,
    Unauthorized,
    VirtualOptions,
    basic_credentials,
    parse_scopes,
)
from app.formats.oci.context import API_VERSION, Target

_AS_SCOPE: dict[Action, str] = {
    "read": "pull",
    "write": "pull,push",
    "delete": "delete",
    "admin": "*",
}


def challenge(services: Services, request: web.Request, scope: str | None = None) -> str:
    realm = f"{services.external_url(request)}/v2/token"
    value = f'Bearer realm="{realm}",service="{services.auth.config.service}"'
    return f'{value},scope="{scope}"' if scope else value


def action_of(method: str) -> Action:
    if method in ("GET", "HEAD"):
        return "read"
    return "delete" if method == "DELETE" else "write"


async def principal(services: Services, request: web.Request) -> Principal:
    # A 401 for credentials that do not verify gets the challenge in the middleware.
    found = await services.auth.requester(request)
    request[PRINCIPAL] = found
    return found


async def authorise(services: Services, request: web.Request, t: Target, action: Action) -> None:
    """Raise unless the caller may do ``action`` on the image ``t`` names."""
    name = t.name  # as the client spells it: what its bearer token's access names
    request[ACTION] = action  # for the audit log, refused or not
    who = await principal(services, request)
    if not t.repo.anonymous_read:
        request[PRIVATE] = True
    scope = f"repository:{name}:{_AS_SCOPE[action]}"
    await services.auth.authorise(
        who, t.repo.name, action, lambda: challenge(services, request, scope),
        t.repo.anonymous_read, resource=name,
    )  # fmt: skip


async def may_read(services: Services, request: web.Request, t: Target) -> bool:
    """Whether the caller may pull from ``t`` (a mount's source: no error, a fallback)."""
    who = request.get(PRINCIPAL) or await principal(services, request)
    name = f"{t.repo.name}/{t.image}"
    return await services.auth.may(who, t.repo.name, "read", t.repo.anonymous_read, name)


async def api_root(services: Services, request: web.Request) -> web.Response:
    """``GET /v2/``: 200 for valid credentials, else the challenge docker logs in by."""
    who = await principal(services, request)
    if who.anonymous and who.access is None:
        raise Unauthorized(
            "authentication required", headers={"WWW-Authenticate": challenge(services, request)}
        )
    return web.json_response({}, headers=API_VERSION)


async def token(services: Services, request: web.Request) -> web.Response:
    """``GET /v2/token?service=…&scope=…`` (credentials as Basic, or none for what
    anonymous may), and ``POST`` with ``grant_type=password`` or ``refresh_token``
    (an API token) as docker's OAuth2 client sends them."""
    auth = services.auth
    if request.method == "POST":
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        scopes = [v for v in form.getall("scope", []) if isinstance(v, str)]
        header = _oauth_credentials(fields)
    else:
        fields = dict(request.query)
        scopes = request.query.getall("scope", [])
        header = request.headers.get(hdrs.AUTHORIZATION)
    service = fields.get("service")
    if service is not None and service != auth.config.service:
        raise BadRequest(f"this registry's token service is {auth.config.service!r}")
    who = await auth.authenticate(header, request.remote)
    if who.access is not None:
        raise Unauthorized("a bearer token cannot be traded for another")

    def public(repository: str) -> bool:
        try:
            return services.repositories.get(repository, format="oci").anonymous_read
        except NotFound:
            return False

    access: list[dict[str, Any]] = []
    for scope in parse_scopes(scopes):
        given = await auth.granted(who, scope, public)
        written = _deploy_to(services, scope.name)
        if written is not None:  # pushes through a virtual land there, checked there
            there = await auth.granted(who, dataclasses.replace(scope, name=written), public)
            given = [a for a in scope.actions if a in (given if a == "pull" else there)]
        access.append({"type": "repository", "name": scope.name, "actions": given})
    signed, ttl = await auth.bearer.issue(who.name, access, who.token_id)
    body: dict[str, Any] = {
        "token": signed,
        "access_token": signed,
        "expires_in": int(ttl),
        "issued_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if request.method == "POST" and fields.get("grant_type") == "refresh_token":
        body["refresh_token"] = fields.get("refresh_token", "")
    return web.json_response(body)


def _deploy_to(services: Services, name: str) -> str | None:
    """``<deploy_to>/<image>`` when ``name`` is an image of a virtual repository that
    has one."""
    repository, _, image = name.partition("/")
    try:
        repo = services.repositories.get(repository, format="oci")
    except NotFound:
        return None
    options = repo.options
    if repo.kind != "virtual" or not isinstance(options, VirtualOptions):
        return None
    return f"{options.deploy_to}/{image}" if options.deploy_to else None


def _oauth_credentials(fields: dict[str, str]) -> str | None:
    """The form's credentials as the Authorization header they stand for."""
    grant = fields.get("grant_type")
    if grant == "password":
        return basic_credentials(fields.get("username", ""), fields.get("password", ""))
    if grant == "refresh_token":
        return f"Bearer {fields.get('refresh_token', '')}"
    raise BadRequest("grant_type must be password or refresh_token")
