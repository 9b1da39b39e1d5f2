"""Who is signing in, or asking about their own account, on npm's account endpoints.

These requests are not authorised against the repository (:meth:`NpmFormat.action`
says None for them): a user's tokens are the service's, not one repository's, and a
sign-in carries its credentials in the body. What each needs is checked here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.formats.api import (
    PRINCIPAL,
    Auth,
    BadRequest,
    ExternalUrl,
    Forbidden,
    Principal,
    Unauthorized,
    basic_credentials,
    read_body,
)
from app.formats.npm.sessions import LoginSessions

MAX_NAME = 128
MAX_PASSWORD = 1024
MAX_BODY = 64 * 1024  # a login or a token request: a few fields
WRONG = "user name or password is wrong"
# Answers carrying a token: nobody between here and npm should keep a copy.
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Accounts:
    """What the account endpoints use, built once (NpmFormat.bind)."""

    auth: Auth
    sessions: LoginSessions
    external_url: ExternalUrl  # the login and done URLs point back at this service


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (small), or :class:`BadRequest`."""
    try:
        body = json.loads(await read_body(request, MAX_BODY) or b"{}")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body is not a JSON object")
    return body


async def password_user(auth: Auth, request: web.Request, name: object, password: object) -> str:
    """``name`` if ``password`` is that user's password; :class:`Unauthorized` if not.

    Checked by the core, as an HTTP Basic login would be (failures throttled and
    logged by name, never with the password). An API token given as the password is
    refused: a sign-in makes a token with everything its owner may do, and a token
    limited by scopes must not be traded for one."""
    if not isinstance(name, str) or not isinstance(password, str):
        raise Unauthorized(WRONG)
    if not name or ":" in name or len(name) > MAX_NAME or not password:
        raise Unauthorized(WRONG)
    if len(password) > MAX_PASSWORD:
        raise Unauthorized(WRONG)
    principal = await auth.authenticate(basic_credentials(name, password), request.remote)
    if principal.token_id is not None or principal.kind != "user" or principal.name != name:
        raise Unauthorized(WRONG)
    return name


async def caller(auth: Auth, request: web.Request) -> Principal:
    """Who sent the request (a password or any token); :class:`Unauthorized` if nobody."""
    principal = await auth.requester(request)
    if principal.anonymous or not principal.name:
        raise Unauthorized("this requires you to be logged in")
    request[PRINCIPAL] = principal
    return principal


async def token_manager(auth: Auth, request: web.Request) -> Principal:
    """The caller, if their credential may manage their tokens: a password or a token
    with all its owner may do (a scoped or OCI bearer token may not)."""
    principal = await caller(auth, request)
    if principal.scopes is not None or principal.access is not None:
        raise Forbidden("a token limited by scopes cannot manage tokens")
    return principal
