"""npm local repositories: packages published here, kept as rows (:mod:`.records`),
their packuments generated from the rows (:mod:`.documents`).

A rendered packument is remembered per replica under the package's serial and the
base URL, so a request costs one query for the serial while nothing changed, and a
change made through any replica is seen by every replica on its next request.

npm's writes are read-modify-write over the whole packument (``GET ?write=true``, then
``PUT`` of the document changed); here each becomes the one change it means, applied
in one transaction on the rows: a publish adds a version, a deprecate sets messages,
an unpublish tombstones versions (``name@version`` is never reused) and lets go of
their blobs. A ``_rev`` a client sends back is checked against the serial, so a change
computed from a stale document is refused (409) instead of undoing another's.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.formats.api import (
    BadRequest,
    Conflict,
    ContentStore,
    Forbidden,
    NotFound,
    PackageChange,
    Rendering,
    Repository,
    rendering,
)
from app.formats.npm import documents, publish
from app.formats.npm.mirror import PackageMirror
from app.formats.npm.names import SEMVER, check_new_package, check_version
from app.formats.npm.records import NpmRecords, StaleRevision, VersionExists
from app.formats.npm.rows import PackageRows, StagedRow, VersionRow

Form = Literal["full", "abbreviated"]
MAX_SEARCH_TERMS = 10
BIG_PACKAGE = 200  # versions: rendered off the event loop beyond this


class Renderings(Protocol):
    """What :class:`NpmLocal` remembers renderings in (the core's LRU)."""

    def get(self, key: Any) -> Rendering | None: ...

    def put(self, key: Any, kept: Rendering) -> Rendering: ...


@dataclass(frozen=True, slots=True)
class Published:
    """What a ``PUT /<package>`` did: published ``version`` (staged as ``stage_id``), or,
    with no version, changed deprecation messages."""

    package: str
    version: str = ""
    stage_id: str | None = None


class NpmLocal:
    def __init__(
        self, records: NpmRecords, cas: ContentStore, renderings: Renderings, max_body: int
    ) -> None:
        self.records, self.cas, self.renderings, self.max_body = records, cas, renderings, max_body
        self.mirror = PackageMirror(records)

    # -- reads ------------------------------------------------------------------------

    async def rows(self, repo: Repository, package: str, version: str | None = None) -> PackageRows:
        """The package's rows (of one version only, if given: a tarball or a version's
        manifest needs no other); :class:`NotFound` if there is no such package."""
        rows = await self.records.load(repo.id, package, version)
        if rows is None:
            raise NotFound(f"{package} not found")
        return rows

    async def packument(
        self, repo: Repository, package: str, base: str, form: Form, gzipped: bool = False
    ) -> Rendering:
        """The packument (gzip-compressed, if asked), remembered by serial; 404 while no
        version is published. Both encodings are made at once and kept: a 5,000-version
        packument is 3 MB of JSON and 100 kB gzipped, compressed once per change rather
        than once per request."""
        state = await self.records.serial(repo.id, package)
        if state is None:
            raise NotFound(f"{package} not found")
        kept = self.renderings.get(("npm-local", repo.id, package, state[1], base, form, gzipped))
        if kept is not None:
            return kept
        current = await self.mirror.current(repo.id, package)
        if current is None:
            raise NotFound(f"{package} not found")
        rows, fragments = current
        if not rows.published():
            raise NotFound(f"{package} not found: every version is unpublished or staged")
        render = documents.full if form == "full" else documents.abbreviated

        def made() -> tuple[Rendering, Rendering]:
            body = render(rows, base, fragments)
            return rendering(body), rendering(gzip.compress(body, compresslevel=5, mtime=0))

        big = len(rows.versions) > BIG_PACKAGE
        plain, packed = await asyncio.to_thread(made) if big else made()
        key = ("npm-local", repo.id, package, rows.serial, base, form)
        self.renderings.put((*key, False), plain)
        self.renderings.put((*key, True), packed)
        return packed if gzipped else plain

    async def version(
        self, repo: Repository, package: str, wanted: str, base: str
    ) -> dict[str, Any]:
        """One version's manifest, by version or dist-tag (``npm view pkg@1.0.0``)."""
        wanted = (await self.tags(repo, package)).get(wanted, wanted)
        rows = await self.rows(repo, package, wanted)
        for row in rows.published():
            return documents.manifest(rows, row, base)
        raise NotFound(f"version not found: {wanted}")

    async def tarball(self, repo: Repository, package: str, filename: str) -> VersionRow:
        """The published version whose tarball ``filename`` is (``<name>-<version>.tgz``)."""
        prefix = documents.tarball_name(package, "").removesuffix(".tgz")
        if filename.startswith(prefix) and filename.endswith(".tgz"):
            rows = await self.rows(repo, package, filename[len(prefix) : -len(".tgz")])
            for row in rows.published():
                return row
        raise NotFound(f"{package}/-/{filename} not found")

    async def attestations(self, repo: Repository, package: str, version: str) -> list[Any]:
        """The provenance bundles published with a version (registry.npmjs.org's
        ``/-/npm/v1/attestations/<name>@<version>``)."""
        rows = await self.rows(repo, package, version)
        found = []
        for attachment in rows.attachments:
            if attachment.version == version and attachment.filename.endswith(".sigstore"):
                chunks = [c async for c in self.cas.open(attachment.blob_digest)]
                bundle = json.loads(b"".join(chunks))
                kind = attachment.predicate_type or documents.PROVENANCE
                found.append({"predicateType": kind, "bundle": bundle})
        if not found:
            raise NotFound(f"no attestations for {package}@{version}")
        return found

    async def tags(self, repo: Repository, package: str) -> dict[str, str]:
        tags = await self.records.tags(repo.id, package)
        if tags is None:
            raise NotFound(f"{package} not found")
        return tags

    async def search(self, repo: Repository, text: str, offset: int, size: int) -> dict[str, Any]:
        """``npm search``: the packages whose names hold every word of ``text``, in the
        registry's ``/-/v1/search`` shape (no scores to speak of: each is 1)."""
        terms = text.lower().split()[:MAX_SEARCH_TERMS]
        rows, total = await self.records.search(repo.id, terms, offset, size)
        objects = []
        for row in rows:
            manifest = json.loads(row["manifest"])
            publisher = (manifest.get("_npmUser") or {}).get("name", "")
            package = {
                "name": row["name"],
                "scope": row["name"][1:].partition("/")[0] if "/" in row["name"] else "unscoped",
                "version": row["version"],
                "date": documents.iso(row["published_at"]),
                "links": {},
                "publisher": {"username": publisher},
                "maintainers": [{"username": publisher}] if publisher else [],
            }
            for key in ("description", "keywords"):
                if key in manifest:
                    package[key] = manifest[key]
            score = {"final": 1, "detail": {"quality": 1, "popularity": 1, "maintenance": 1}}
            objects.append({"package": package, "score": score, "searchScore": 1})
        return {"objects": objects, "total": total, "time": documents.iso(time.time())}

    # -- publish ----------------------------------------------------------------------

    async def put(
        self,
        repo: Repository,
        package: str,
        body: AsyncIterable[bytes],
        actor: str,
        stage: bool = False,
    ) -> Published:
        """A ``PUT /<package>``: a publish when it attaches a tarball (staged, for
        ``npm stage publish``), else npm's deprecate (the packument sent back with
        ``deprecated`` changed: only that is applied)."""
        check_new_package(package)
        put = await publish.read(body, package, self.cas, self.max_body)
        if not put.blobs and "_attachments" not in put.document and not stage:
            return await self._deprecate(repo, package, put.document)
        new = publish.new_version(put, package, actor)
        stage_id = str(uuid.uuid4()) if stage else None
        try:
            await self.records.publish(
                repo.id, package, new, (stage_id, actor) if stage_id else None
            )
        except VersionExists:
            raise Forbidden(
                f"You cannot publish over the previously published versions: {new.version}"
            ) from None
        return Published(package, new.version, stage_id)

    async def _deprecate(
        self, repo: Repository, package: str, document: dict[str, Any]
    ) -> Published:
        rows = await self.records.load(repo.id, package)
        if rows is None:
            raise BadRequest(f"a publish of {package} attaches its tarball: none was sent")
        versions = document.get("versions")
        if not isinstance(versions, dict):
            raise BadRequest("a packument without attachments changes versions' deprecated only")
        messages: dict[str, str | None] = {}
        for row in rows.published():
            sent = versions.get(row.version)
            if not isinstance(sent, dict):
                continue
            message = sent.get("deprecated") or None
            if message is not None and (not isinstance(message, str) or len(message) > 1024):
                raise BadRequest(f"versions[{row.version!r}].deprecated: text of 1024 at most")
            if message != row.deprecated:
                messages[row.version] = message
        if messages:
            await self.records.deprecate(rows.id, messages)
        return Published(package)

    # -- unpublish and tags -------------------------------------------------------------

    async def revise(
        self,
        repo: Repository,
        package: str,
        rev: str,
        document: dict[str, Any],
        may_delete: Callable[[], Awaitable[None]],
    ) -> list[str]:
        """``PUT /<package>/-rev/<rev>``: npm's unpublish of one version sends the
        packument without it; its removal (and the tags sent) applied at once."""
        rows = await self.rows(repo, package)
        versions = document.get("versions")
        tags = document.get("dist-tags")  # the tags it wants: npm moves latest itself
        if not isinstance(versions, dict) or not isinstance(tags, dict):
            raise BadRequest("the packument needs versions and dist-tags objects")
        gone = [v.version for v in rows.published() if v.version not in versions]
        if gone:
            await may_delete()
        wanted = {t: v for t, v in tags.items() if isinstance(t, str) and isinstance(v, str)}
        return await self._unpublish(rows, gone, rev, wanted)

    async def unpublish(
        self, repo: Repository, package: str, rev: str | None, tarball: str | None = None
    ) -> list[str]:
        """``DELETE /<package>/-rev/<rev>`` (every version) or of one tarball (``DELETE
        /<package>/-/<file>/-rev/<rev>``, done already if the ``PUT`` before it removed
        the version)."""
        rows = await self.rows(repo, package)
        if tarball is None:
            return await self._unpublish(rows, None, rev)
        named = [
            v.version
            for v in rows.versions
            if documents.tarball_name(package, v.version) == tarball
        ]
        if not named:
            raise NotFound(f"{package}/-/{tarball} not found")
        return await self._unpublish(rows, named, rev)

    async def _unpublish(
        self, rows: PackageRows, versions: list[str] | None, rev: str | None,
        tags: dict[str, str] | None = None,
    ) -> list[str]:  # fmt: skip
        expected = documents.revision_serial(rev) if rev is not None else None
        try:
            return await self.records.unpublish(rows.id, versions, expected, tags)
        except StaleRevision:
            raise Conflict("Document update conflict: the package changed; read it again") from None

    async def set_tag(
        self, repo: Repository, package: str, tag: str, version: object
    ) -> dict[str, str]:
        """Point ``tag`` at a published version; the package's tags afterwards."""
        check_version(tag)
        if not isinstance(version, str) or SEMVER.match(tag):
            raise BadRequest("a dist-tag is a name (not a version) and its body a version string")
        if not await self.records.set_tag(await self._id(repo, package), tag, version):
            raise NotFound(f"version not found: {package}@{version[:256]}")
        return await self.tags(repo, package)

    async def remove_tag(self, repo: Repository, package: str, tag: str) -> dict[str, str]:
        if not await self.records.remove_tag(await self._id(repo, package), tag):
            raise NotFound(f"{tag} is not a dist-tag on {package}")
        return await self.tags(repo, package)

    async def _id(self, repo: Repository, package: str) -> int:
        state = await self.records.serial(repo.id, package)
        if state is None:
            raise NotFound(f"{package} not found")
        return state[0]

    # -- staged publishes -------------------------------------------------------------

    async def staged(self, repo: Repository, stage_id: str) -> StagedRow:
        found = await self.records.staged(repo.id, stage_id)
        if found is None:
            raise NotFound(f"no staged package {stage_id}")
        return found

    async def staged_list(
        self, repo: Repository, package: str | None, page: int, per_page: int
    ) -> tuple[list[StagedRow], int]:
        """One page of the staged versions (of ``package``, if given) and their total."""
        return await self.records.staged_list(repo.id, package, page * per_page, per_page)

    async def approve(self, repo: Repository, stage_id: str) -> StagedRow:
        found = await self.records.approve(repo.id, stage_id)
        if found is None:
            raise NotFound(f"no staged package {stage_id}")
        return found

    async def reject(self, repo: Repository, stage_id: str) -> StagedRow:
        found = await self.records.reject(repo.id, stage_id)
        if found is None:
            raise NotFound(f"no staged package {stage_id}")
        return found

    # -- the management API -----------------------------------------------------------

    async def packages(self, repo: Repository, after: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.records.packages(repo.id, after, limit)
        return [
            {
                "name": r["name"],
                "versions": r["versions"],
                "created": documents.iso(r["created_at"]),
                "modified": documents.iso(r["modified_at"]),
            }
            for r in rows
        ]

    async def package(self, repo: Repository, name: str) -> dict[str, Any]:
        rows = await self.rows(repo, name)
        versions = []
        for v in rows.versions:
            files = []
            if v.tarball_digest is not None:
                files.append({
                    "name": documents.tarball_name(rows.name, v.version), "size": v.size,
                    "digest": v.tarball_digest, "integrity": v.integrity, "shasum": v.shasum,
                })  # fmt: skip
            files += [
                {"name": a.filename, "size": a.size, "digest": a.blob_digest}
                for a in rows.attachments
                if a.version == v.version
            ]
            versions.append({
                "version": v.version, "state": v.state, "published": documents.iso(v.published_at),
                "deprecated": v.deprecated, "files": files,
            })  # fmt: skip
        return {
            "name": rows.name,
            "dist-tags": await self.tags(repo, name),
            "created": documents.iso(rows.created_at),
            "modified": documents.iso(rows.modified_at),
            "versions": versions,
        }

    async def change(self, repo: Repository, change: PackageChange) -> dict[str, Any]:
        """Delete is unpublish (the name@version stays taken); npm has no yank, so a
        yank deprecates the version with the reason given and unyank undeprecates."""
        rows = await self.rows(repo, change.package)
        if change.file is not None:
            raise BadRequest("npm keeps one tarball per version: delete the version instead")
        if change.version is not None and change.version not in {
            v.version for v in rows.published()
        }:
            raise NotFound(f"version not found: {change.package}@{change.version}")
        if change.operation == "delete":
            versions = None if change.version is None else [change.version]
            await self.records.unpublish(rows.id, versions)
            if change.version is None:
                return {}
        else:
            assert change.version is not None  # the routes yank versions or files only
            message = (change.reason or "yanked") if change.operation == "yank" else None
            await self.records.deprecate(rows.id, {change.version: message})
        return await self.package(repo, change.package)
