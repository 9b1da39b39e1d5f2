"""``/api/v1/``: managing who may do what over HTTP (what ``artifactapi user | token |
perm | key | audit`` do against the database), and ``/api/v1/whoami``.

Administrators only, but for ``whoami`` and a signed-in user's own tokens. Every
change is audited (:mod:`app.auth.audit`), refused or not, under ``admin: <object>.
<verb>``. No answer carries a password, its hash or a token's secret, but for the
one that makes the token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from app import admin_inputs as inputs
from app import keys
from app.auth import manage
from app.auth.audit import ACTION, MAX_PAGE, PAGE, TARGET
from app.auth.records import AuthRecords, PrincipalRow
from app.auth.service import PRINCIPAL, Auth, Principal, is_admin, signed_in
from app.backends.metadata import Conflict as RowConflict
from app.errors import BadRequest, Conflict, Forbidden, NotFound

Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    for method, path, handler, change, admin in _ROUTES:
        app.router.add_route(method, f"/api/v1{path}", _route(handler, change, admin))


def _route(
    handler: Handler, change: str | None, admin: bool
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The caller (an administrator unless ``admin`` is False), then ``handler``;
    ``change`` names what the audit log records."""

    async def route(request: web.Request) -> web.StreamResponse:
        if change is not None:
            request[ACTION] = f"admin: {change}"
        auth = request.app[keys.AUTH]
        who = await auth.requester(request)
        request[PRINCIPAL] = who  # the audit log's actor, refused or not
        signed_in(who, admin)
        response = await handler(request, who)
        if change is not None:
            await auth.look()  # this replica drops what the change made stale at once
        return response

    return route


# -- who am I ------------------------------------------------------------------------


async def whoami(request: web.Request, who: Principal) -> web.Response:
    return web.json_response(
        {"name": who.name, "kind": who.kind, "admin": is_admin(who), "groups": sorted(who.groups),
         "token_id": who.token_id}
    )  # fmt: skip


# -- users and service accounts ------------------------------------------------------


async def list_users(request: web.Request, who: Principal) -> web.Response:
    return web.json_response([row.public() for row in await _records(request).principals()])


async def create_user(request: web.Request, who: Principal) -> web.Response:
    body = await inputs.body(request, {"name", "kind", "password", "admin", "description"})
    name = inputs.name(body.get("name"), "name")
    request[TARGET] = f"user:{name}"
    kind = body.get("kind", "user")
    if kind not in ("user", "service"):
        raise BadRequest("kind: user or service")
    password = inputs.text(body, "password", None, blank=False)
    if kind == "service" and password is not None:
        raise BadRequest("password: a service account signs in with tokens only")
    try:
        row = await manage.create_principal(
            _records(request), name, password, inputs.flag(body, "admin", False), kind,
            inputs.text(body, "description", "") or "",
        )  # fmt: skip
    except RowConflict:
        raise Conflict(f"{name} exists") from None
    return web.json_response(
        row.public(), status=201, headers={"Location": f"/api/v1/users/{name}"}
    )


async def get_user(request: web.Request, who: Principal) -> web.Response:
    return web.json_response((await _principal(request)).public())


async def update_user(request: web.Request, who: Principal) -> web.Response:
    row = await _principal(request)
    body = await inputs.body(request, {"admin", "disabled", "description", "password"})
    if not body:
        raise BadRequest("name at least one of admin, disabled, description, password")
    fields: dict[str, Any] = {
        k: inputs.flag(body, k, False) for k in ("admin", "disabled") if k in body
    }
    if "description" in body:
        fields["description"] = inputs.text(body, "description", "")
    if row.name == who.name and (fields.get("admin") is False or fields.get("disabled")):
        raise BadRequest("an administrator cannot demote or disable themselves")
    password = inputs.text(body, "password", None, blank=False)
    if password is not None and row.kind == "service":
        raise BadRequest("password: a service account signs in with tokens only")
    records = _records(request)
    if fields and not await records.update_principal(row.name, **fields):
        raise NotFound(f"no user or service account {row.name}")
    if password is not None and not await manage.set_password(records, row.name, password):
        raise NotFound(f"no user or service account {row.name}")
    return web.json_response((await _principal(request)).public())


async def delete_user(request: web.Request, who: Principal) -> web.Response:
    name = inputs.name(request.match_info["name"], "user")
    request[TARGET] = f"user:{name}"
    if name == who.name:
        raise BadRequest("an administrator cannot delete themselves")
    if not await _records(request).delete_principal(name):
        raise NotFound(f"no user or service account {name}")
    return web.Response(status=204)


# -- groups ----------------------------------------------------------------------------


async def list_groups(request: web.Request, who: Principal) -> web.Response:
    groups = await _records(request).groups()
    return web.json_response([{"name": n, "members": m} for n, m in groups.items()])


async def create_group(request: web.Request, who: Principal) -> web.Response:
    name = inputs.name((await inputs.body(request, {"name"})).get("name"), "name")
    request[TARGET] = f"group:{name}"
    try:
        await _records(request).create_group(name)
    except RowConflict:
        raise Conflict(f"group {name} exists") from None
    return web.json_response(
        {"name": name, "members": []}, status=201, headers={"Location": f"/api/v1/groups/{name}"}
    )


async def delete_group(request: web.Request, who: Principal) -> web.Response:
    name = inputs.name(request.match_info["name"], "group")
    request[TARGET] = f"group:{name}"
    if not await _records(request).delete_group(name):
        raise NotFound(f"no group {name}")
    return web.Response(status=204)


async def set_member(request: web.Request, who: Principal) -> web.Response:
    group = inputs.name(request.match_info["name"], "group")
    member = inputs.name(request.match_info["member"], "member")
    request[TARGET] = f"group:{group}/{member}"
    if not await _records(request).set_member(group, member, request.method == "PUT"):
        raise NotFound(f"no group {group} or no user or service account {member}")
    return web.Response(status=204)


# -- tokens: an administrator's for anyone, a user's own ----------------------------------


async def list_tokens(request: web.Request, who: Principal) -> web.Response:
    owner = request.query.get("user")
    if owner is not None:
        inputs.name(owner, "user")
    if not is_admin(who):
        _own_tokens(who, owner)
        owner = who.name
    return web.json_response([t.public() for t in await _records(request).tokens(owner)])


async def create_token(request: web.Request, who: Principal) -> web.Response:
    body = await inputs.body(request, {"user", "scopes", "description", "expires_in"})
    owner = inputs.name(body.get("user", who.name), "user")
    request[TARGET] = f"user:{owner}"
    if not is_admin(who):
        _own_tokens(who, owner)
    scopes = body.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, dict) for s in scopes):
        raise BadRequest('scopes: a list of {"repository": …, "actions": […]}')
    try:
        secret, row = await manage.create_token(
            _records(request), owner, manage.checked_scopes(scopes),
            inputs.text(body, "description", "") or "", inputs.duration(body.get("expires_in")),
        )  # fmt: skip
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    request[TARGET] = f"token:{row.id}"
    # The one answer that carries the secret: it is stored nowhere to show again.
    return web.json_response({**row.public(), "token": secret}, status=201)


async def revoke_token(request: web.Request, who: Principal) -> web.Response:
    token_id = inputs.token_id(request.match_info["id"])
    request[TARGET] = f"token:{token_id}"
    if not is_admin(who):
        _own_tokens(who, who.name)
    records = _records(request)
    row = await records.token(token_id)
    # Someone else's token is as unknown to a user as one that does not exist.
    if row is None or not (is_admin(who) or row.principal.name == who.name):
        raise NotFound(f"no token {token_id}")
    if not await records.revoke_token(token_id):
        raise NotFound(f"token {token_id} is revoked already")
    return web.Response(status=204)


# -- permissions, signing keys, the audit log ----------------------------------------------


async def list_permissions(request: web.Request, who: Principal) -> web.Response:
    auth = _auth(request)
    return web.json_response(await manage.all_permissions(auth.records, auth.config))


async def grant(request: web.Request, who: Principal) -> web.Response:
    body = await inputs.body(request, {"subject", "repository", "actions"})
    subject, repository = inputs.text(body, "subject", ""), inputs.text(body, "repository", "")
    assert subject is not None and repository is not None
    request[TARGET] = f"{subject} in {repository}"
    actions = body.get("actions")
    try:
        checked = manage.checked_grant(
            subject, repository, actions if isinstance(actions, list) else []
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    await _records(request).grant(subject, repository, checked)
    return web.json_response(
        {"subject": subject, "repository": repository, "actions": checked}, status=201
    )


async def revoke(request: web.Request, who: Principal) -> web.Response:
    subject, repository = request.query.get("subject"), request.query.get("repository")
    if not subject or not repository:
        raise BadRequest("name the grant: ?subject=user:NAME|group:NAME&repository=PATTERN")
    request[TARGET] = f"{subject} in {repository}"
    if not await _records(request).revoke(subject, repository):
        raise NotFound(f"no grant to {subject} in {repository}")
    return web.Response(status=204)


async def list_keys(request: web.Request, who: Principal) -> web.Response:
    return web.json_response([k.public() for k in await _records(request).signing_keys()])


async def rotate_key(request: web.Request, who: Principal) -> web.Response:
    key = await _auth(request).keys.rotate()
    request[TARGET] = f"key:{key.kid}"
    return web.json_response(key.public(), status=201)


async def retire_key(request: web.Request, who: Principal) -> web.Response:
    kid = request.match_info["kid"]
    request[TARGET] = f"key:{kid}"
    if not await _records(request).retire_signing_key(kid):
        raise NotFound(f"no key {kid} that verifies")
    return web.Response(status=204)


async def audit_log(request: web.Request, who: Principal) -> web.Response:
    """Newest first; ``next`` is the URL of the page after this one (None: the last)."""
    query = request.query
    actor, action = query.get("actor"), query.get("action")
    since = inputs.since(query["since"]) if "since" in query else None
    limit = inputs.whole(query.get("limit", str(PAGE)), "limit", 1, MAX_PAGE)
    before = inputs.whole(query["before"], "before", 1, 2**62) if "before" in query else None
    entries = await _auth(request).audit.records.entries(actor, action, since, before, limit)
    following = None
    if len(entries) == limit:
        kept = {k: v for k, v in query.items() if k != "before"}
        following = f"/api/v1/audit?{urlencode({**kept, 'before': entries[-1]['id']})}"
    return web.json_response({"entries": entries, "next": following})


# -- input ---------------------------------------------------------------------------------


def _auth(request: web.Request) -> Auth:
    return request.app[keys.AUTH]


def _records(request: web.Request) -> AuthRecords:
    return request.app[keys.AUTH].records


async def _principal(request: web.Request) -> PrincipalRow:
    name = inputs.name(request.match_info["name"], "user")
    request[TARGET] = f"user:{name}"
    row = await _records(request).principal(name)
    if row is None:
        raise NotFound(f"no user or service account {name}")
    return row


def _own_tokens(who: Principal, owner: str | None) -> None:
    """A user manages their own tokens, with their password or a token of all they may."""
    if owner is not None and owner != who.name:
        raise Forbidden(f"{who.name} may manage only their own tokens")
    if who.scopes is not None or who.access is not None:
        raise Forbidden("a token with scopes cannot manage tokens")


# (method, path under /api/v1, handler, the change audited, administrators only)
_ROUTES: list[tuple[str, str, Handler, str | None, bool]] = [
    ("GET", "/whoami", whoami, None, False),
    ("GET", "/users", list_users, None, True),
    ("POST", "/users", create_user, "user.create", True),
    ("GET", "/users/{name}", get_user, None, True),
    ("PATCH", "/users/{name}", update_user, "user.update", True),
    ("DELETE", "/users/{name}", delete_user, "user.delete", True),
    ("GET", "/groups", list_groups, None, True),
    ("POST", "/groups", create_group, "group.create", True),
    ("DELETE", "/groups/{name}", delete_group, "group.delete", True),
    ("PUT", "/groups/{name}/members/{member}", set_member, "group.add_member", True),
    ("DELETE", "/groups/{name}/members/{member}", set_member, "group.remove_member", True),
    ("GET", "/tokens", list_tokens, None, False),
    ("POST", "/tokens", create_token, "token.create", False),
    ("DELETE", "/tokens/{id}", revoke_token, "token.revoke", False),
    ("GET", "/permissions", list_permissions, None, True),
    ("POST", "/permissions", grant, "permission.grant", True),
    ("DELETE", "/permissions", revoke, "permission.revoke", True),
    ("GET", "/signing-keys", list_keys, None, True),
    ("POST", "/signing-keys", rotate_key, "key.rotate", True),
    ("DELETE", "/signing-keys/{kid}", retire_key, "key.retire", True),
    ("GET", "/audit", audit_log, None, True),
]
