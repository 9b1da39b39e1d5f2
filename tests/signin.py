"""Tests' clients signed in as the admin the first start made: writes need credentials."""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.test_utils import TestClient

from app import keys
from app.auth.manage import create_token


async def admin_token(app: web.Application) -> str:
    secret, _ = await create_token(app[keys.AUTH].records, "admin")
    return secret


async def sign_in(client: TestClient) -> str:
    """Give ``client``'s session an admin token (if its app is ours); the token."""
    app = client.app
    if app is None or keys.AUTH not in app:
        return ""
    token = await admin_token(app)
    client.session.headers[hdrs.AUTHORIZATION] = f"Bearer {token}"
    return token
