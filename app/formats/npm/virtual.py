"""npm virtual repositories: one registry URL over local and remote npm repositories.

Each member is asked as data, never over HTTP: a local member's packument comes from
:class:`~.local.NpmLocal` (rendered for the virtual's URL, remembered by serial), a
remote's from the packument cache (:mod:`.cache`). :class:`~app.formats.api.Virtual`
asks the local members first, lets the dependency-confusion guard decide which
remotes may answer, and asks those at once within ``member_timeout``. The answers
are merged by :mod:`.merging`'s rules.

Fresh at once: a merged packument is remembered under what it was made from (each
local member's rendering, which changes with the package's serial on every replica,
and each remote member's cached document digest), the form and base URL, and the
minute while a cooldown holds. A publish through any replica makes a new key on the
next request everywhere; nothing has to be invalidated.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from app.formats.api import (
    LEFT_OUT,
    Answer,
    BadGateway,
    CacheStatus,
    Member,
    Missing,
    NotFound,
    Rendering,
    Renderings,
    Repository,
    Virtual,
    Virtuals,
    answer_headers,
    explained,
    rendering,
)
from app.formats.npm import documents, packuments
from app.formats.npm.cache import cached_packument
from app.formats.npm.local import NpmLocal
from app.formats.npm.merging import Form, Merge, Source, merge
from app.formats.npm.names import Target, check_package
from app.formats.npm.remote import NpmRemote

BIG_MERGE = 500  # versions: merged off the event loop beyond this
KEPT_MERGES = 512  # indexes remembered per process (the bodies: in the renderings)


def normalise(name: str) -> str:
    """npm's own comparison of names: lower case, scope included (new names must be
    lower case, so ``@ACME/x`` can only ever be ``@acme/x``'s look-alike)."""
    return name.lower()


@dataclass(frozen=True, slots=True)
class Part:
    """What one member has for a package, read only when a merge is made."""

    made_from: str  # the local rendering's ETag or the remote copy's digest
    how: CacheStatus | None  # a remote's copy: HIT, MISS, STALE
    load: Callable[[], Awaitable[dict[str, Any] | None]]  # None: holds the name, lists nothing


@dataclass(frozen=True, slots=True)
class Index:
    """Which member serves each version and file of a merged packument (small: kept
    apart from the body, which the renderings' byte budget holds)."""

    versions: dict[str, str]  # version -> member
    files: dict[str, str]  # tarball file name -> version
    hidden: dict[str, dict[str, str]]  # member -> version held back by a cooldown -> file
    offered: dict[str, list[str]]  # member -> the versions it lists (after its cooldown)
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class Merged:
    """A merged packument as served, and its index."""

    rendering: Rendering
    index: Index
    packed: Rendering | None = None  # the rendering gzip-compressed, when still kept

    @property
    def versions(self) -> dict[str, str]:
        return self.index.versions

    @property
    def files(self) -> dict[str, str]:
        return self.index.files

    @property
    def hidden(self) -> dict[str, dict[str, str]]:
        return self.index.hidden

    @property
    def offered(self) -> dict[str, list[str]]:
        return self.index.offered

    @property
    def tags(self) -> dict[str, str]:
        return self.index.tags


@dataclass(frozen=True, slots=True)
class Asked:
    """Every member's answer for one package, and their merge (None: no member has it)."""

    answers: list[Answer[Part]]
    merged: Merged | None

    @property
    def headers(self) -> dict[str, str]:
        return answer_headers(self.answers)

    def served_by(self, version: str) -> Member:
        assert self.merged is not None
        name = self.merged.versions[version]
        return next(a.member for a in self.answers if a.name == name)


class NpmVirtual:
    def __init__(
        self, virtuals: Virtuals, local: NpmLocal, remote: NpmRemote, renderings: Renderings
    ) -> None:
        self.virtuals, self.local, self.remote, self.renderings = (
            virtuals, local, remote, renderings,
        )  # fmt: skip
        self._indexes: OrderedDict[Hashable, Index] = OrderedDict()

    def of(self, repo: Repository) -> Virtual:
        return self.virtuals.of(repo, normalise)

    async def asked(self, repo: Repository, package: str, form: Form, base: str) -> Asked:
        """Every member asked for ``package`` and the answers merged for ``base``."""
        virtual = self.of(repo)
        key = normalise(package)
        target = Target(package)

        async def question(member: Member) -> Part | None:
            if member.local:
                return await self._local_part(member.repo, package, key, form, base)
            # A cooldown needs each version's time: only the full form has it.
            full = form == "full" or bool(virtual.cooldown_ages(member, key))
            return await self._remote_part(member.repo, target, full)

        answers = await virtual.ask(key, question, stale=lambda part: part.how == "STALE")
        served = [a for a in answers if a.status == "served" and a.value is not None]
        if not served:
            return Asked(answers, None)
        now = time.time()
        cooling = any(virtual.cooldown_ages(a.member, key) for a in served if not a.member.local)
        made_from = tuple((a.name, a.value.made_from) for a in served if a.value is not None)
        cache_key = (
            "npm-virtual", repo.name, package, form, base, made_from,
            int(now // 60) if cooling else None,
        )  # fmt: skip
        index = self._indexes.get(cache_key)
        body = self.renderings.get(cache_key) if index is not None else None
        if index is not None and body is not None:
            self._indexes.move_to_end(cache_key)
            return Asked(answers, Merged(body, index, self.renderings.get((*cache_key, "gzip"))))
        members = {a.name: a.member for a in served}
        sources = [
            Source(a.name, not a.member.local, await a.value.load())
            for a in served
            if a.value is not None
        ]

        def hides(member: str, version: str, published: float | None) -> bool:
            return virtual.cooling(members[member], key, published, now)

        def made() -> Merged:
            done = merge(sources, target, form, base, hides if cooling else None)
            return _merged(done)

        listed = sum(len(s.document.get("versions") or ()) for s in sources if s.document)
        merged = await asyncio.to_thread(made) if listed > BIG_MERGE else made()
        self.renderings.put(cache_key, merged.rendering)
        if merged.packed is not None:
            self.renderings.put((*cache_key, "gzip"), merged.packed)
        self._indexes[cache_key] = merged.index
        while len(self._indexes) > KEPT_MERGES:
            self._indexes.popitem(last=False)
        return Asked(answers, merged)

    async def _local_part(
        self, repo: Repository, package: str, key: str, form: Form, base: str
    ) -> Part | None:
        try:
            rendered = await self.local.packument(repo, package, base, form)
        except NotFound:
            # A package whose versions are all unpublished, or the name in its only
            # spelling npm publishes (lower case), is still the team's: it holds the
            # name against the remotes, with nothing to list.
            for name in {package, key}:
                state = await self.local.records.serial(repo.id, name)
                if state is not None:
                    return Part(f"held:{state[1]}", None, _nothing)
            return None

        async def load() -> dict[str, Any]:
            parsed: dict[str, Any] = json.loads(rendered.body)
            return parsed

        return Part(rendered.etag, None, load)

    async def _remote_part(self, repo: Repository, target: Target, full: bool) -> Part | None:
        upstream = self.remote.upstreams[repo.name]
        core = self.remote.core
        doc = await cached_packument(core, upstream, repo, target, not full)
        if isinstance(doc, Missing):
            return None

        async def load() -> dict[str, Any]:
            return packuments.parse(await doc.read(), target.package)

        return Part(f"{'full' if full else 'abbreviated'}:{doc.digest}", doc.how, load)

    async def audit_question(
        self, repo: Repository, asked: dict[str, Any]
    ) -> tuple[Member, dict[str, Any]] | None:
        """The bulk audit's question ({name: [versions]}) as the first remote member may
        see it: only the names the guard lets it answer for, so the team's own package
        names never leave; None if no remote member or no name is left."""
        virtual = self.of(repo)
        remote = next((m for m in virtual.members if not m.local), None)
        if remote is None:
            return None
        keys = {name: normalise(name) for name in asked}
        lookup = sorted(set(keys) | set(keys.values()))
        holders: dict[str, list[str]] = {}
        for member in virtual.locals:
            held = await self.local.records.held(member.repo.id, lookup)
            for name, key in keys.items():
                if name in held or key in held:
                    holders.setdefault(key, []).append(member.repo.name)
        kept = {
            name: versions
            for name, versions in asked.items()
            if virtual.guarded(remote, keys[name], holders.get(keys[name], [])) is None
        }
        return (remote, kept) if kept else None

    async def explain(self, repo: Repository, name: str, version: str | None) -> dict[str, Any]:
        package = check_package(name)
        asked = await self.asked(repo, package, "full", f"/repository/{repo.name}")
        merged = asked.merged
        served_by: str | None = None
        if merged is not None:
            wanted = merged.tags.get(version, version) if version else merged.tags.get("latest")
            if wanted is not None:
                served_by = merged.versions.get(wanted)
            elif version is None and merged.versions:
                served_by = next(iter(merged.versions.values()))
            for answer in asked.answers:
                held_back = merged.hidden.get(answer.name, {})
                if answer.status != "served" or not held_back:
                    continue
                if (version is not None and version in held_back) or not merged.offered.get(
                    answer.name
                ):
                    answer.status = "cooldown"
                    answer.reason = (
                        f"{version or ', '.join(sorted(held_back))} published within"
                        " min_release_age"
                    )

        def details(answer: Answer[Any]) -> dict[str, Any]:
            if merged is None:
                return {}
            return {
                "versions": merged.offered.get(answer.name, []),
                "held_back": sorted(merged.hidden.get(answer.name, {})),
            }

        return explained(self.of(repo), name, version, asked.answers, served_by, details)


async def _nothing() -> None:
    return None


def _merged(done: Merge) -> Merged:
    tags = done.document.get("dist-tags") or {}
    index = Index(done.served, done.files, done.hidden, done.offered, dict(tags))
    body = documents.dumps(done.document)
    # Compressed once per merge, not per request: a 6,000-version packument is 2 MB of
    # JSON and a tenth of that gzipped, what npm and pnpm ask for.
    return Merged(rendering(body), index, rendering(gzip.compress(body, compresslevel=5, mtime=0)))


def left_out(answers: Sequence[Answer[Any]]) -> bool:
    return any(a.status in LEFT_OUT for a in answers)


def nobody(package: str, asked: Asked) -> Exception:
    """Why no member serves ``package``: 502 if a member that may have it could not
    be asked (npm must not take the package for missing), else 404."""
    if left_out(asked.answers):
        return BadGateway(
            f"{package}: no member could answer; members skipped", headers=asked.headers
        )
    guarded = [a.reason for a in asked.answers if a.status == "guarded"]
    why = f" ({guarded[0]}; remote members not asked)" if guarded else ""
    return NotFound(f"{package} not found{why}", headers=asked.headers)
