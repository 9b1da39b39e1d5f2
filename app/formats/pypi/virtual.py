"""Virtual PyPI repositories: one index URL over local, remote and virtual members.

    simple/                      → the union of the members' project lists
    simple/<project>/            → the merged page (:mod:`merge`); other spellings: 301
    files/<project>/<filename>   → the file (and ``.metadata``) from the member whose
                                   file the merged page lists: listed ⇒ downloadable

Uploads never get here: the dispatcher re-targets a write to ``deploy_to`` (or
refuses it with a 405) before the format sees it.

Members are asked at once and as data (``Virtual.ask``): a local member for its
project's serial, a remote member for its cached page through the remote core (its
TTLs, single flight, stale-if-error). The dependency-confusion guard keys a project by
its PEP 503 name, exactly as pip and uv spell it, and a name that is not ASCII is no
PyPI name at all (404: a look-alike never reaches an upstream). A merged page is
remembered by what it was made of (each serving member's serial or page digest, the
form, the minute when a cooldown holds): a publish on any replica moves a serial, so
every replica renders anew on its next request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.formats.api import (
    LEFT_OUT,
    MEMBER_HEADERS,
    Answer,
    BadGateway,
    BadRequest,
    Document,
    Member,
    MethodNotAllowed,
    Missing,
    NotFound,
    Rendering,
    Renderings,
    Repository,
    Virtual,
    Virtuals,
    answer_headers,
    edge,
    explained,
    rendering,
)
from app.formats.pypi import merge, pages, paths, simple
from app.formats.pypi.index import dist_file
from app.formats.pypi.local import PypiLocal, page_response, serve_file
from app.formats.pypi.remote import PypiRemote

# The project list is asked under a key no project has: no local member "holds" it, so
# the guard keeps no remote's list out (its names stay listed; their pages and files
# are what the guard keeps from the remotes), except a ``reserved: ["*"]``.
_LIST_KEY = ""


@dataclass(frozen=True, slots=True)
class LocalProject:
    """A local member holds the project, at this serial."""

    serial: int


Found = LocalProject | pages.ProjectPage


def _made_of(found: Found) -> int | str:
    return found.serial if isinstance(found, LocalProject) else found.digest


class PypiVirtual:
    def __init__(
        self, virtuals: Virtuals, local: PypiLocal, remote: PypiRemote, renderings: Renderings
    ) -> None:
        self.virtuals, self.local, self.remote = virtuals, local, remote
        self.renderings = renderings
        self.local_files: merge.Memo[merge.Files] = merge.Memo()
        self.remote_files: merge.Memo[merge.Files] = merge.Memo()
        self.lists: merge.Memo[list[str]] = merge.Memo()

    def of(self, repo: Repository) -> Virtual:
        return self.virtuals.of(repo, simple.normalize)

    # -- members, asked ---------------------------------------------------------------

    async def asked(self, virtual: Virtual, key: str) -> list[Answer[Found]]:
        """Every member's answer for project ``key`` (normalised)."""

        async def question(member: Member) -> Found | None:
            if member.local:
                serial = await self.local.records.serial(member.repo.id, key)
                return None if serial is None else LocalProject(serial)
            found = await self.remote.document(member.repo, key)
            return None if isinstance(found, Missing) else found

        return await virtual.ask(key, question)

    async def files(self, answer: Answer[Found], key: str) -> merge.Files:
        """What a member that answered has of ``key``, kept by its serial or digest."""
        found = answer.value
        assert found is not None
        repo = answer.member.repo
        memo_key = (repo.id, key, _made_of(found))
        if isinstance(found, pages.ProjectPage):
            kept = self.remote_files.get(memo_key)
            if kept is None:
                kept = merge.Files.parsed(found.page)
                self.remote_files.put(memo_key, kept, len(kept.by_name) + 1)
            return kept
        kept = self.local_files.get(memo_key)
        if kept is None:
            rows = await self.local.records.files(repo.id, key)
            kept = merge.Files.of((dist_file(row), row.version) for row in rows)
            self.local_files.put(memo_key, kept, len(kept.by_name) + 1)
        return kept

    async def served(
        self, answers: list[Answer[Found]], key: str
    ) -> list[tuple[Answer[Found], merge.Files]]:
        return [(a, await self.files(a, key)) for a in answers if a.status == "served"]

    def cooling(self, virtual: Virtual, key: str, now: float) -> merge.Cooling:
        return lambda member, published: virtual.cooling(member, key, published, now)

    # -- what the routes answer -------------------------------------------------------

    async def page(
        self, repo: Repository, key: str, as_json: bool
    ) -> tuple[Rendering | None, list[Answer[Found]]]:
        """The merged page of ``key`` (None: no member has it) and the answers it was
        made from (for the response's headers)."""
        virtual = self.of(repo)
        answers = await self.asked(virtual, key)
        served = [a for a in answers if a.status == "served" and a.value is not None]
        if not served:
            return None, answers
        now = time.time()
        cools = any(virtual.cooldown_ages(a.member, key) for a in served if not a.member.local)
        made_of = tuple((a.name, _made_of(a.value)) for a in served if a.value is not None)
        minute = int(now // 60) if cools else None  # a file listed then is only older later
        render_key = ("pypi-virtual-page", repo.id, key, made_of, as_json, minute)
        kept = self.renderings.get(render_key)
        if kept is None:
            files = [(a.member, f) for a, f in await self.served(answers, key)]
            won = merge.winners(files, self.cooling(virtual, key, now))
            page = merge.page(key, won)
            body = simple.render_json(page, key) if as_json else simple.render_html(page, key)
            kept = self.renderings.put(render_key, rendering(body))
        return kept, answers

    async def projects(
        self, repo: Repository, as_json: bool
    ) -> tuple[Rendering, list[Answer[Document]]]:
        """The union of the members' project lists."""
        virtual = self.of(repo)

        async def question(member: Member) -> Document | None:
            if member.local:
                return None  # read below: a local's list must not count as holding a name
            upstream = self.remote.upstreams[member.repo.name]
            doc = await pages.list_document(self.remote.core, member.repo, upstream)
            return None if isinstance(doc, Missing) else doc

        serial = self.local.records.repository_serial
        serials, answers = await asyncio.gather(
            asyncio.gather(*(serial(m.repo.id) for m in virtual.locals)),
            virtual.ask(_LIST_KEY, question, lambda doc: doc.how == "STALE"),
        )
        local_serials = dict(zip((m.repo.name for m in virtual.locals), serials, strict=True))
        made_of: list[tuple[str, int | str]] = []
        for answer in answers:
            if answer.member.local:
                made_of.append((answer.name, local_serials[answer.name]))
            elif answer.value is not None:
                made_of.append((answer.name, answer.value.digest))
        render_key = ("pypi-virtual-list", repo.id, tuple(made_of), as_json)
        kept = self.renderings.get(render_key)
        if kept is None:
            lists = [await self._names(a, local_serials) for a in answers]
            names = merge.project_names(lists)
            render = simple.render_projects_json if as_json else simple.render_projects_html
            kept = self.renderings.put(render_key, rendering(render(names)))
        return kept, answers

    async def _names(self, answer: Answer[Document], serials: dict[str, int]) -> list[str]:
        repo = answer.member.repo
        if answer.member.local:
            memo_key: tuple[Any, ...] = ("local", repo.id, serials[answer.name])
        elif answer.value is not None:
            memo_key = ("remote", repo.id, answer.value.digest)
        else:
            return []
        kept = self.lists.get(memo_key)
        if kept is None:
            if answer.value is None:
                kept = [p.display_name for p in await self.local.records.projects(repo.id)]
            else:
                kept = await pages.list_names(answer.value)
            self.lists.put(memo_key, kept, len(kept) + 1)
        return kept

    async def file(
        self, request: web.Request, repo: Repository, project: str, filename: str
    ) -> web.StreamResponse:
        """A file (or its ``.metadata``) from the member whose file the page lists."""
        if not simple.valid_project(project) or not simple.safe_filename(filename):
            raise NotFound(f"no file {filename[:200]!r}")
        key = simple.normalize(project)
        name = filename.removesuffix(".metadata")
        virtual = self.of(repo)
        answers = await self.asked(virtual, key)
        served = [(a.member, files) for a, files in await self.served(answers, key)]
        winner = merge.serving(served, self.cooling(virtual, key, time.time()), name)
        headers = answer_headers(answers)
        if winner is None:
            left_out = [a.name for a in answers if a.status in LEFT_OUT]
            if left_out:  # it may be theirs: not a 404 a client would cache as "none"
                said = f"{filename[:200]}: {', '.join(left_out)} did not answer"
                raise BadGateway(said, headers=headers)
            raise NotFound(f"no file {filename[:200]!r} in {repo.name}", headers=headers)
        if name != filename and not winner.file.core_metadata:
            raise NotFound(f"{name[:200]} has no core metadata", headers=headers)
        member = winner.member.repo
        request[MEMBER_HEADERS] = {**headers, "X-Artifactapi-Served-By": member.name}
        if winner.member.local:
            return await serve_file(self.local, request, member, key, filename)
        return await edge.respond(
            request, await self.remote.open(member, f"files/{key}/{filename}")
        )

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        """Which member serves ``name`` (and ``version``), and why each other does not."""
        if not simple.valid_project(name):
            raise BadRequest(f"{name[:200]!r} is no PyPI project name (ASCII letters, digits, -_.)")
        key = simple.normalize(name)
        virtual = self.of(repo)
        answers = await self.asked(virtual, key)
        served = await self.served(answers, key)
        now = time.time()
        cooling = self.cooling(virtual, key, now)
        won = merge.winners([(a.member, f) for a, f in served], cooling)
        wanted = None if version is None else merge.normalised_version(version)
        details: dict[str, dict[str, Any]] = {}
        for answer, files in served:
            details[answer.name] = _detail(answer, files, won, wanted, cooling)
        served_by = next(
            (w.member.repo.name for w in won.values() if wanted is None or w.version == wanted),
            None,
        )
        return explained(
            virtual, name, version, answers, served_by, lambda a: details.get(a.name, {})
        )


def _detail(
    answer: Answer[Found],
    files: merge.Files,
    won: dict[str, merge.Winner],
    wanted: str | None,
    cooling: merge.Cooling,
) -> dict[str, Any]:
    """What one serving member has, what of it the virtual serves from it, and (its
    status and reason set) why it serves nothing."""
    member = answer.member
    has = {n: f for n, (f, v) in files.by_name.items() if wanted is None or v == wanted}
    serves = [n for n in has if n in won and won[n].member.repo.name == answer.name]
    young = [n for n, f in has.items() if cooling(member, simple.published(f.upload_time))]
    if not has:
        answer.status, answer.reason = "absent", f"no files of version {wanted}"
    elif not serves and len(young) == len(has):
        answer.status = "cooldown"
        answer.reason = f"{len(young)} file(s) younger than min_release_age or of unknown age"
    elif not serves:
        answer.reason = "each of its files is served by an earlier member"
    versions = {v for f, v in files.by_name.values() if v is not None}
    return {
        "versions": sorted(versions, key=merge.version_key),
        "files": sorted(has),
        "serves": sorted(serves),
        "cooling": [{"filename": n, "upload_time": has[n].upload_time} for n in sorted(young)],
    }


async def serve(
    virtual: PypiVirtual, request: web.Request, repo: Repository, path: str
) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        said = f"{request.method} is not supported here"
        raise MethodNotAllowed(said, headers={"Allow": "GET, HEAD"})
    where = paths.route(repo, path)
    if isinstance(where, web.Response):
        return where
    as_json = simple.wants_json(request.headers.get("Accept", ""))
    if isinstance(where, paths.ProjectList):
        listed, answers = await virtual.projects(repo, as_json)
        return page_response(request, listed, as_json, answer_headers(answers))
    if isinstance(where, paths.ProjectPage):
        page, found = await virtual.page(repo, where.project, as_json)
        if page is None:
            said = f"no project {where.project} in {repo.name}"
            raise NotFound(said, headers=answer_headers(found))
        return page_response(request, page, as_json, answer_headers(found))
    return await virtual.file(request, repo, where.project, where.filename)
