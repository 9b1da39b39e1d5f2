"""``npm whoami``, ``npm logout`` and ``npm token list|create|revoke``: each about the
caller's own account, whatever repository's URL npm was given.

npm's token API shows a token by its first characters (``token``) and its id
(``key``); a read-only token is one scoped to reading every repository. A CIDR
allow-list is refused rather than ignored: a token the user believes bound to some
addresses must not work from all of them.
"""

from __future__ import annotations

import datetime
from typing import Any

from aiohttp import web

from app.formats.api import BadRequest, NotFound, TokenRow, create_token, token_digest
from app.formats.npm.credentials import (
    NO_STORE,
    Accounts,
    caller,
    json_object,
    password_user,
    token_manager,
)

READ_ONLY = [{"repository": "*", "actions": ["read"]}]
MAX_DAYS = 3650
DESCRIPTION = "npm token create"


async def whoami(accounts: Accounts, request: web.Request) -> web.Response:
    principal = await caller(accounts.auth, request)
    return web.json_response({"username": principal.name})


async def logout(accounts: Accounts, request: web.Request, secret: str) -> web.Response:
    """``DELETE /-/user/token/<token>``: revoke the token npm was using."""
    await caller(accounts.auth, request)
    await _revoke_secret(accounts, secret)
    return web.json_response({"ok": True})


async def tokens(accounts: Accounts, request: web.Request) -> web.Response:
    principal = await token_manager(accounts.auth, request)
    rows = await accounts.auth.records.tokens(principal.name)
    shown = [_shown(row) for row in rows if row.revoked_at is None]
    return web.json_response({"objects": shown, "total": len(shown), "urls": {}})


async def create(accounts: Accounts, request: web.Request) -> web.Response:
    """``npm token create``: the password again, as npm asks for it."""
    principal = await token_manager(accounts.auth, request)
    body = await json_object(request)
    if body.get("cidr_whitelist"):
        raise BadRequest("CIDR allow-lists are not supported: create the token without one")
    await password_user(accounts.auth, request, principal.name, body.get("password"))
    readonly = body.get("readonly") is True
    description = body.get("description") or body.get("name") or DESCRIPTION
    if not isinstance(description, str) or len(description) > 256:
        raise BadRequest("description: text of at most 256 characters")
    days = body.get("expires")
    if days is not None and (
        not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= MAX_DAYS
    ):
        raise BadRequest(f"expires: a number of days, 1 to {MAX_DAYS}")
    secret, row = await create_token(
        accounts.auth.records,
        principal.name,
        scopes=READ_ONLY if readonly else None,
        description=description,
        expires_in=days * 86400.0 if days is not None else None,
    )
    return web.json_response({**_shown(row), "token": secret}, headers=NO_STORE)


async def revoke(accounts: Accounts, request: web.Request, key: str) -> web.Response:
    """``DELETE /-/npm/v1/tokens/token/<key>``: by id, or by the whole token (what
    ``npm token revoke <token>`` sends)."""
    principal = await token_manager(accounts.auth, request)
    if not (key.isascii() and key.isdigit() and len(key) < 19):
        await _revoke_secret(accounts, key)
        return web.Response(status=204)
    token = await accounts.auth.records.token(int(key))
    # Another's token is as unknown as a token that never was.
    if token is None or token.principal.name != principal.name:
        raise NotFound("no such token of yours")
    await _revoke(accounts, token)
    return web.Response(status=204)


async def _revoke_secret(accounts: Accounts, secret: str) -> None:
    """Revoke the token whose whole secret was sent, whoever's it is. Whoever has a
    secret can already do all it does; and the secret is in the request's path, so
    in the access log: every token named there must be dead once it is answered."""
    token = await accounts.auth.records.token_by_digest(token_digest(secret))
    if token is None:
        raise NotFound("no such token")
    await _revoke(accounts, token)


async def _revoke(accounts: Accounts, token: TokenRow) -> None:
    if token.revoked_at is not None:
        return
    await accounts.auth.records.revoke_token(token.id)
    # This replica forgets the token at once; the others within Auth's poll.
    await accounts.auth.look()


def _shown(row: TokenRow) -> dict[str, Any]:
    return {
        "token": row.prefix,
        "key": str(row.id),
        "name": row.description,
        "readonly": row.scopes == READ_ONLY,
        "created": _iso(row.created_at),
        "updated": _iso(row.last_used_at or row.created_at),
        "expires": _iso(row.expires_at) if row.expires_at is not None else None,
        "cidr_whitelist": None,
    }


def _iso(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
