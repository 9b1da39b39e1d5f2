"""Who is asking a repository's endpoint, and whether they may: the one check the
``/repository/`` dispatcher and the packages API both make before a handler runs; and
where a write through a virtual repository goes."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from app import keys
from app.auth.audit import ACTION
from app.auth.permissions import Action
from app.auth.service import PRINCIPAL, PRIVATE
from app.errors import MethodNotAllowed
from app.formats.base import Format
from app.repositories import Repository
from app.virtual import VirtualOptions


async def authorised(request: web.Request, repo: Repository, action: Action, fmt: Format) -> None:
    """Who is asking, whether they may, and who it was for the handler (``PRINCIPAL``)."""
    auth = request.app[keys.AUTH]
    request[ACTION] = action  # for the audit log, refused or not
    principal = await auth.requester(request)
    request[PRINCIPAL] = principal
    if not repo.anonymous_read:
        request[PRIVATE] = True
    if not auth.allowed_lately(principal, repo.name, action, repo.anonymous_read):
        await auth.authorise(
            principal, repo.name, action, partial(fmt.challenge, request, repo), repo.anonymous_read
        )


def written_to(
    request: web.Request, repo: Repository, action: Action | None, fmt: Format, path: str
) -> Repository:
    """Where a request goes: a write or delete through a virtual repository goes to its
    ``deploy_to`` (and is authorised there), as does a read of what only it keeps
    (:meth:`Format.deployed`: npm's staged publishes); without one a write is refused
    (405)."""
    if repo.kind != "virtual" or action is None:
        return repo
    if action == "read" and not fmt.deployed(request, path):
        return repo
    options = repo.options
    target = options.deploy_to if isinstance(options, VirtualOptions) else None
    if target is None:
        raise MethodNotAllowed(
            f"repository {repo.name} is virtual with no deploy_to: publish to a local repository"
        )
    return request.app[keys.REPOSITORIES].get(target)
