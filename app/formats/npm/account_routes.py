"""Which of npm's account endpoints a path is, and the handler that answers it.

These paths are checked before a remote repository's (:func:`app.formats.npm.remote.
serve`): none of them is a package, and none is relayed upstream, since the
credentials npm sends here are for this service.
"""

from __future__ import annotations

from aiohttp import web

from app.formats.api import MethodNotAllowed, NotFound, Repository
from app.formats.npm import account, login
from app.formats.npm.credentials import Accounts

PREFIXES = ("-/user/", "-/v1/login", "-/v1/done/", "-/whoami", "-/npm/v1/tokens")
LOGOUT = "-/user/token/"
TOKEN = "-/npm/v1/tokens/token/"
MAX_SESSION = 64  # a session id is 32 characters


def is_account_path(path: str) -> bool:
    return path.startswith(PREFIXES)


async def serve(
    accounts: Accounts, request: web.Request, repo: Repository, path: str
) -> web.Response:
    method = request.method
    if path == "-/whoami":
        _allow(method, "GET")
        return await account.whoami(accounts, request)
    if path.startswith(login.COUCH_USER) and path != login.COUCH_USER:
        _allow(method, "PUT")
        return await login.couch(accounts, request, path.removeprefix(login.COUCH_USER))
    if path.startswith(LOGOUT) and path != LOGOUT:
        _allow(method, "DELETE")
        return await account.logout(accounts, request, path.removeprefix(LOGOUT))
    if path == "-/v1/login":
        _allow(method, "POST")
        return await login.start(accounts, request, repo)
    session = _session(path, "-/v1/login/")
    if session is not None:
        _allow(method, "GET", "POST")
        return await login.page(accounts, request, repo, session)
    session = _session(path, "-/v1/done/")
    if session is not None:
        _allow(method, "GET")
        return await login.done(accounts, request, repo, session)
    if path == "-/npm/v1/tokens":
        _allow(method, "GET", "POST")
        handler = account.tokens if method == "GET" else account.create
        return await handler(accounts, request)
    if path.startswith(TOKEN) and path != TOKEN:
        _allow(method, "DELETE")
        return await account.revoke(accounts, request, path.removeprefix(TOKEN))
    raise NotFound(f"{path} not found")


def _session(path: str, prefix: str) -> str | None:
    session = path.removeprefix(prefix)
    if session == path or not session or "/" in session:
        return None
    return session if len(session) <= MAX_SESSION else ""


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise MethodNotAllowed(
            f"{method} is not allowed here", headers={"Allow": ", ".join(allowed)}
        )
