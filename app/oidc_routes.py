"""``POST /api/v1/oidc/token``: trusted publishing's exchange. The body is
``{"token": "<OIDC ID token>"}`` (PyPI's mint-token shape); the answer a short-lived
API token for the publisher the ID token proves to be (see :mod:`app.auth.oidc`)."""

from __future__ import annotations

import json

from aiohttp import web

from app.auth.oidc import TrustedPublishing
from app.errors import BadRequest

PUBLISHING: web.AppKey[TrustedPublishing] = web.AppKey("trusted_publishing")


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/oidc/token", mint)


async def mint(request: web.Request) -> web.Response:
    if (request.content_length or 0) > 64 * 1024:
        raise BadRequest("the body is a JSON object with one ID token")
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise BadRequest('the body must be JSON: {"token": "<ID token>"}') from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise BadRequest('the body must be JSON: {"token": "<ID token>"}')
    minted = await request.app[PUBLISHING].exchange(token)
    return web.json_response(
        {
            "success": True,
            "token": minted.secret,
            "expires_at": minted.token.expires_at,
            "publisher": minted.publisher.name,
            "scopes": minted.token.scopes,
        }
    )
