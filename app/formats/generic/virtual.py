"""Virtual generic repositories: one file tree over ordered members.

Merge rules:

- a file: the first member (in order) that has the path serves it, a local's row or
  a remote's copy through the core (as data, never HTTP to ourselves);
- a folder listing: the union of the members' listings, the first member (in order)
  winning per entry, sorted and paged as a local listing is; every entry's ``uri``
  points back through the virtual, so whatever is listed downloads there;
- the guard's unit is a path's first segment: a local member holding any file under
  ``internal/`` (or the top-level file ``internal``) holds every path below it, and no
  remote member is asked for one; ``reserved`` globs match the whole path (``internal/*``).
  Names are compared NFKC-normalised and case-folded, so ``Internal/`` or a look-alike
  spelling of it cannot reach an upstream; the local itself answers only for the exact
  spelling it stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from app.formats.api import (
    MEMBER_HEADERS,
    Answer,
    BlobBody,
    Cached,
    Dateless,
    Held,
    Member,
    MethodNotAllowed,
    Missing,
    NotFound,
    Opened,
    Repository,
    Virtual,
    VirtualOptions,
    Virtuals,
    answer_headers,
    edge,
    explained,
    first_served,
    leave_the_others,
    send_blob,
)
from app.formats.generic.listings import Entry, Listed, local_entry, remote_entries, uri
from app.formats.generic.local import LocalFiles
from app.formats.generic.paths import file_path, folder_path
from app.formats.generic.records import FileRow, first_segment, folded
from app.formats.generic.remote import GenericRemote
from app.formats.generic.shapes import http_date, listing_limit

# Top-level entries of a local member's files from before generic_prefixes, taken in once
# for the guard: a tree with more is guarded by exact spelling beyond them.
MAX_SEGMENTS = 100_000


class VirtualGenericOptions(Dateless, VirtualOptions):
    """No cooldown: the protocol says nothing of when a release was published."""


_Lister = Callable[[Member], Awaitable[list[Entry] | None]]


class GenericVirtual:
    def __init__(self, files: LocalFiles, remote: GenericRemote, virtuals: Virtuals) -> None:
        self.files, self.remote, self.virtuals = files, remote, virtuals

    def of(self, repo: Repository) -> Virtual:
        return self.virtuals.of(repo, folded)

    # -- the guard ------------------------------------------------------------------

    async def held(self, repo: Repository, segments: list[str]) -> set[str]:
        """Which of ``segments`` (folded first segments) a local member holds: one
        indexed lookup (every write records its own segment)."""
        records = self.files.records
        held = await records.held_prefixes(repo.id, segments)
        if held is None:  # files from before the prefixes were kept: taken in once
            entries = await records.list_folder(repo.id, "", MAX_SEGMENTS)
            await records.take_in_prefixes(repo.id, (e.key for e in entries))
            held = await records.held_prefixes(repo.id, segments) or set()
        return held

    async def holds(self, repo: Repository, path: str) -> str | None:
        """The first segment of ``path`` a local member holds, in any spelling."""
        key = first_segment(path)
        return key if await self.held(repo, [folded(key)]) else None

    # -- a file -----------------------------------------------------------------------

    async def file(self, repo: Repository, path: str) -> tuple[Virtual, list[Answer[Any]]]:
        virtual = self.of(repo)

        async def question(member: Member) -> Held[FileRow | Opened] | Opened | None:
            if member.local:
                prefix = await self.holds(member.repo, path)
                if prefix is None:
                    return None
                row = await self.files.get(member.repo, path)
                return Held(row, f"holds {prefix} (guarding it), not {path}")
            opened = await self.remote.open(member.repo, path)
            return None if isinstance(opened, Missing) else opened

        return virtual, await virtual.ask(folded(path), question)

    async def serve_file(
        self, request: web.Request, repo: Repository, path: str
    ) -> web.StreamResponse:
        _virtual, answers = await self.file(repo, path)
        served = first_served(answers)
        leave_the_others(answers, served)
        headers = answer_headers(answers)
        if served is None:
            # A folder asked for without its trailing slash is listed, as a local does.
            for member in self.of(repo).locals:
                if await self.files.records.has_folder(member.repo.id, path + "/"):
                    return await self.serve_listing(request, repo, path + "/")
            raise NotFound(f"{path} not found in {repo.name}", headers=headers)
        value = served.value
        request[MEMBER_HEADERS] = {**headers, "X-Artifactapi-Served-By": served.name}
        if isinstance(value, FileRow):
            row = value
            body = BlobBody.stored(self.files.cas, row.blob_digest, row.size, row.content_type)
            headers = {
                "X-Checksum-Sha256": row.blob_digest.removeprefix("sha256:"),
                "Last-Modified": http_date(row.updated_at),
            }
            return await send_blob(request, body, headers)
        assert value is not None
        return await edge.respond(request, value)

    # -- a folder ---------------------------------------------------------------------

    async def listing(
        self, repo: Repository, folder: str, limit: int, after: str
    ) -> tuple[list[Answer[Any]], list[Entry]]:
        virtual = self.of(repo)
        # The root holds every first segment: each entry is guarded on its own below.
        key = folded(folder)

        async def question(member: Member) -> list[Entry] | None:
            if member.local:
                rows = await self.files.records.list_folder(member.repo.id, folder, limit, after)
                if not rows and (not folder or await self.holds(member.repo, folder) is None):
                    return None
                return [local_entry(repo, member.repo, folder, e) for e in rows]
            document = await self.remote.document(member.repo, folder)
            if isinstance(document, Missing):
                return None
            page = await document.read()
            return Listed(remote_entries(repo, member.repo, folder, page, after), document.how)

        if folder:
            answers = await virtual.ask(key, question)
        else:
            answers = await self._root(virtual, question)
        merged: dict[str, Entry] = {}
        for answer in answers:
            if answer.status == "served":
                for entry in answer.value or []:
                    merged.setdefault(entry.key, entry)
        page = sorted(merged.values(), key=lambda e: e.key.encode())[:limit]
        return answers, page

    async def _root(self, virtual: Virtual, question: _Lister) -> list[Answer[Any]]:
        """The root holds every first segment, so no one name guards it: the locals
        are listed aside (their answering must not keep every remote out), the remotes
        asked, and each remote entry dropped where the guard would refuse its path, so
        a listed entry is one the virtual serves."""

        async def remotes_only(member: Member) -> list[Entry] | None:
            return None if member.local else await question(member)

        locals_ = virtual.locals
        listed, answers = await asyncio.gather(
            asyncio.gather(*(question(m) for m in locals_)),
            virtual.ask("", remotes_only),
        )
        names = sorted(
            {folded(e.key) for a in answers if a.status == "served" for e in a.value or []}
        )
        held_sets = await asyncio.gather(*(self.held(m.repo, names) for m in locals_))
        held = {m.repo.name: found for m, found in zip(locals_, held_sets, strict=True)}
        entries = {m.repo.name: value for m, value in zip(locals_, listed, strict=True)}
        for answer in answers:
            if answer.member.local:
                value = entries[answer.name]
                if value is not None:
                    answer.status, answer.value = "served", value
                continue
            if answer.status != "served":
                continue
            kept = Listed([], "STALE" if answer.stale else "HIT")
            for entry in answer.value or []:
                name = folded(entry.key)
                by = [local for local, names in held.items() if name in names]
                if virtual.guarded(answer.member, name, by) is None:
                    kept.append(entry)
            answer.value = kept
        return answers

    async def serve_listing(
        self, request: web.Request, repo: Repository, folder: str
    ) -> web.StreamResponse:
        limit = listing_limit(request)
        after = request.query.get("after", "")
        answers, page = await self.listing(repo, folder, limit, after)
        headers = answer_headers(answers)
        request[MEMBER_HEADERS] = headers
        if not page and not after and not any(a.status == "served" for a in answers):
            raise NotFound(f"folder {folder} not found in {repo.name}", headers=headers)
        body: dict[str, object] = {
            "repository": repo.name,
            "path": folder,
            "children": [e.body for e in page],
        }
        if len(page) == limit:
            body["next"] = token = page[-1].key
            query = urlencode({"limit": limit, "after": token})
            headers["Link"] = f'<{uri(repo, folder)}?{query}>; rel="next"'
        return web.json_response(body, headers=headers)

    # -- explain ----------------------------------------------------------------------

    async def explain(self, repo: Repository, name: str) -> dict[str, Any]:
        if not name or name.endswith("/"):
            folder = folder_path(name)
            answers, _page = await self.listing(repo, folder, 1000, "")
            lister = next((a.name for a in answers if a.status == "served"), None)
            return explained(
                self.of(repo), name, None, answers, lister,
                lambda a: {"entries": len(a.value or [])} if a.status == "served" else {},
            )  # fmt: skip
        path = file_path(name)
        virtual, answers = await self.file(repo, path)
        served = first_served(answers)
        leave_the_others(answers, None)
        return explained(virtual, name, None, answers, served.name if served else None, _details)

    async def handle(self, request: web.Request, repo: Repository, path: str) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            # Writes never get here: the dispatcher sends them to deploy_to (or 405s).
            raise MethodNotAllowed(
                f"{request.method} is not supported here", headers={"Allow": "GET, HEAD"}
            )
        if not path or path.endswith("/"):
            return await self.serve_listing(request, repo, folder_path(path))
        return await self.serve_file(request, repo, file_path(path))


def _details(answer: Answer[Any]) -> dict[str, Any]:
    value = answer.value
    if isinstance(value, FileRow):
        return {"sha256": value.blob_digest.removeprefix("sha256:"), "size": value.size}
    if isinstance(value, Cached):
        return {"sha256": value.blob.digest.removeprefix("sha256:"), "size": value.blob.size}
    return {}
