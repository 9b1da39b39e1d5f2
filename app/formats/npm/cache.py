"""The packument cache: raw upstream packuments kept by the engine as metadata
documents (see :meth:`RemoteEngine.document`), the full and abbreviated forms apart.

Why not :meth:`RemoteEngine.serve`: a packument has to be rewritten (tarball URLs
point at us, built from the request's own host) before anyone sees it. So the raw
document is cached and rewritten on the way out; its tarball links are recorded
whenever a new copy is fetched.
"""

from __future__ import annotations

from aiohttp import web

from app import keys
from app.errors import NotFound
from app.formats.npm import packuments
from app.formats.npm.names import Target
from app.proxy.engine import Document, Fetch
from app.proxy.entries import Link, Links
from app.proxy.renderings import sized
from app.repositories import Repository


def cache_key(target: Target, abbreviated: bool) -> str:
    # "#" is in no package name nor tarball path: the two forms never collide with
    # each other or with a tarball's entry.
    return f"{target.package}#{'abbreviated' if abbreviated else 'full'}"


async def packument(
    request: web.Request, repo: Repository, target: Target, abbreviated: bool
) -> Document:
    fetch = Fetch(
        path=cache_key(target, abbreviated),
        upstream_path=target.upstream_name,
        kind="metadata",
        accept=packuments.ACCEPT_ABBREVIATED if abbreviated else packuments.ACCEPT_FULL,
    )
    links = Links(request.app[keys.METADATA].db)

    def read_links(body: bytes) -> list[Link]:
        document = packuments.parse(body, target.package)
        packuments.check(document, target.package)
        return packuments.links(document, target)

    async def accept(body: bytes) -> None:
        # Checked before it is cached: a broken document never replaces a good copy.
        await links.put_many(repo.id, await sized(read_links, body))

    upstream = request.app[keys.UPSTREAMS][repo.name]
    try:
        return await request.app[keys.PROXY].document(repo, upstream, fetch, accept)
    except NotFound as exc:
        raise NotFound(f"{target.package} not found", headers=exc.headers) from None
