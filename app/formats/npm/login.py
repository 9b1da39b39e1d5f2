"""``npm login``: both ways the CLI signs in, each ending with a new API token.

- legacy (``--auth-type=legacy``, and what npm falls back to): ``PUT /-/user/
  org.couchdb.user:<name>`` with the password in the body, answered with the token;
- web (npm 9+'s default): ``POST /-/v1/login`` opens a session and names two URLs,
  one for the browser (:mod:`app.formats.npm.login_page`: a form that checks the
  password), one the CLI polls until the sign-in is done and the token is its.

Nobody registers here (an unknown name is a wrong login): users are made by an
administrator.
"""

from __future__ import annotations

from aiohttp import web

from app.formats.api import ApiError, BadRequest, NotFound, Repository, Unauthorized, create_token
from app.formats.npm import login_page
from app.formats.npm.credentials import NO_STORE, Accounts, json_object, password_user
from app.formats.npm.sessions import SignedIn

COUCH_USER = "-/user/org.couchdb.user:"
DESCRIPTION = "npm login"
POLL_AFTER = "1"  # seconds the CLI waits between polls of the done URL


class Gone(ApiError):
    status = 410
    code = "GONE"


async def couch(accounts: Accounts, request: web.Request, name: str) -> web.Response:
    """The legacy login: npm sends ``{"name", "password", ...}`` (adduser an email too)."""
    body = await json_object(request)
    if body.get("name", name) != name:
        raise BadRequest("the body names another user than the URL")
    user = await password_user(accounts.auth, request, name, body.get("password"))
    secret, _ = await create_token(accounts.auth.records, user, description=DESCRIPTION)
    answer = {"ok": True, "id": f"org.couchdb.user:{user}", "token": secret}
    return web.json_response(answer, status=201, headers=NO_STORE)


async def start(accounts: Accounts, request: web.Request, repo: Repository) -> web.Response:
    """Open a web login session (its body, ``{}`` or adduser's ``{"create": true}``,
    changes nothing: both only sign in)."""
    await json_object(request)
    opened = await accounts.sessions.open(repo.id)
    base = f"{accounts.external_url(request)}/repository/{repo.name}/-/v1"
    return web.json_response(
        {
            "loginUrl": f"{base}/login/{opened.session}",
            "doneUrl": f"{base}/done/{opened.session}?secret={opened.secret}",
        },
        headers=NO_STORE,
    )


async def page(
    accounts: Accounts, request: web.Request, repo: Repository, session: str
) -> web.Response:
    """The browser's side: the form (GET), or the sign-in it posts (POST)."""
    if not await accounts.sessions.pending(repo.id, session):
        return login_page.gone()
    if request.method == "GET":
        return login_page.form(repo.name)
    form = await request.post()
    name = form.get("username")
    try:
        user = await password_user(accounts.auth, request, name, form.get("password"))
    except Unauthorized as refused:
        return login_page.form(repo.name, refused.message, name if isinstance(name, str) else "")
    if not await accounts.sessions.sign_in(repo.id, session, user):
        return login_page.gone()
    return login_page.signed_in(user)


async def done(
    accounts: Accounts, request: web.Request, repo: Repository, session: str
) -> web.Response:
    """The CLI's poll: 202 until someone signs in, then the token, once."""
    outcome = await accounts.sessions.collect(repo.id, session, request.query.get("secret", ""))
    if outcome == "pending":
        return web.json_response({}, status=202, headers={"Retry-After": POLL_AFTER, **NO_STORE})
    if outcome == "expired":
        raise Gone("this login took too long: run npm login again")
    if not isinstance(outcome, SignedIn):
        raise NotFound("no such login session, or its token was collected")
    user = await accounts.auth.records.principal(outcome.principal)
    if user is None or user.disabled:  # between the sign-in and this poll
        raise Unauthorized(f"{outcome.principal} may not sign in any more")
    secret, _ = await create_token(accounts.auth.records, user.name, description=DESCRIPTION)
    return web.json_response({"token": secret}, headers=NO_STORE)
