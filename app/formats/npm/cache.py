"""The packument cache: raw upstream packuments kept by the remote core as metadata
documents (see :meth:`RemoteCore.document`), the full and abbreviated forms apart.

Why not :meth:`RemoteCore.open`: a packument has to be rewritten (tarball URLs point
at us, built from the request's own host) before anyone sees it. So the raw document
is cached and rewritten on the way out; its tarball links are recorded whenever a new
copy is fetched.
"""

from __future__ import annotations

from app.formats.api import (
    Document,
    Fetch,
    Link,
    Missing,
    NotFound,
    RemoteCore,
    Repository,
    Upstream,
    sized,
)
from app.formats.npm import packuments
from app.formats.npm.names import Target


def cache_key(target: Target, abbreviated: bool) -> str:
    # "#" is in no package name nor tarball path: the two forms never collide with
    # each other or with a tarball's entry.
    return f"{target.package}#{'abbreviated' if abbreviated else 'full'}"


async def cached_packument(
    core: RemoteCore, upstream: Upstream, repo: Repository, target: Target, abbreviated: bool
) -> Document | Missing:
    fetch = Fetch(
        path=cache_key(target, abbreviated),
        upstream_path=target.upstream_name,
        kind="metadata",
        accept=packuments.ACCEPT_ABBREVIATED if abbreviated else packuments.ACCEPT_FULL,
    )

    def read_links(body: bytes) -> list[Link]:
        document = packuments.parse(body, target.package)
        packuments.check(document, target.package)
        return packuments.links(document, target)

    async def accept(body: bytes) -> None:
        # Checked before it is cached: a broken document never replaces a good copy.
        await core.links.put_many(repo.id, await sized(read_links, body))

    return await core.document(repo, upstream, fetch, accept)


async def packument(
    core: RemoteCore, upstream: Upstream, repo: Repository, target: Target, abbreviated: bool
) -> Document:
    """The cached packument; :class:`NotFound` if the upstream has no such package."""
    doc = await cached_packument(core, upstream, repo, target, abbreviated)
    if isinstance(doc, Missing):
        raise NotFound(f"{target.package} not found", headers={"X-Cache": doc.how})
    return doc
