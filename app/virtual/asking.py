"""Asking a virtual repository's members, as data and all at once.

A format hands :meth:`Virtual.ask` a question (one member → its answer, or None when
it has nothing), never an HTTP request to ourselves. Local members are asked first,
together: which of them hold the name decides the guard. Then every remote member
the guard lets through is asked at once, each within ``member_timeout``; one that
fails or is slow is left out (its answer says why, and so do the response's
headers), and its fetch goes on in the background to fill the cache for next time.

A local member that fails is not left out: not knowing whether it holds the name,
the guard could not keep the name from the remotes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import structlog
from aiohttp import web

from app.errors import ApiError
from app.proxy.cooldown import Cooldown, CooldownOptions, Patterns
from app.repositories import Repositories, Repository
from app.virtual.members import Member, Members
from app.virtual.options import VirtualOptions

log = structlog.get_logger(__name__)
T = TypeVar("T")

# served: it answered; absent: it has nothing for the name; guarded: a remote the
# dependency-confusion guard kept out; cooldown: what it has is too young; failed,
# timeout: a remote left out of this answer.
Status = Literal["served", "absent", "guarded", "cooldown", "failed", "timeout"]
LEFT_OUT: frozenset[Status] = frozenset({"failed", "timeout"})
SKIPPED_HEADER = "X-Artifactapi-Members-Skipped"
STALE_HEADER = "X-Artifactapi-Members-Stale"
_background: set[asyncio.Task[object]] = set()  # slow members' fetches, finishing


@dataclass(slots=True)
class Answer(Generic[T]):
    member: Member
    status: Status
    value: T | None = None
    reason: str = ""
    stale: bool = False  # served from an expired copy: the upstream failed
    held: bool = False  # a local member holds the name, whether or not it served

    @property
    def name(self) -> str:
        return self.member.repo.name


@dataclass(frozen=True, slots=True)
class Held(Generic[T]):
    """What a local member's question returns where the member holds the name (an image
    with manifests, a folder with files): what it has for the question, or None with
    why not; either way the guard keeps the name from the remotes."""

    value: T | None
    lacking: str = ""  # the reason an absent answer gives (explain)


@dataclass(frozen=True, slots=True)
class _Guard:
    virtual: Repository[VirtualOptions]
    reserved: Patterns
    allow: Patterns
    locals: frozenset[str]  # the local members under this virtual


class Virtual:
    """One virtual repository as its format asks it; names normalised by ``normalise``
    (each format's own: PEP 503 for PyPI, lower case for npm scopes and OCI)."""

    def __init__(self, members: Members, normalise: Callable[[str], str]) -> None:
        self.repo = members.virtual
        self.members = members.members
        self.deploy_to = members.deploy_to
        self.timeout = self.repo.options.member_timeout
        self.normalise = normalise
        locals_ = {m.repo.name for m in self.members if m.local}
        outer = _Guard(
            self.repo, Patterns.of(self.repo.options.reserved, normalise),
            Patterns.of(self.repo.options.allow, normalise), frozenset(locals_),
        )  # fmt: skip
        self._guards: dict[str, tuple[_Guard, ...]] = {}
        self._cooldowns: dict[str, tuple[Cooldown, ...]] = {}
        for member in self.members:
            guards = [outer]
            cooldowns = [Cooldown.of(self.repo.options, normalise)]
            for inner in member.via:
                inner_locals = {m.repo.name for m in self.members if m.local and inner in m.via}
                guards.append(_Guard(
                    inner, Patterns.of(inner.options.reserved, normalise),
                    Patterns.of(inner.options.allow, normalise), frozenset(inner_locals),
                ))  # fmt: skip
                cooldowns.append(Cooldown.of(inner.options, normalise))
            own = member.repo.options
            if isinstance(own, CooldownOptions) and not member.local:
                cooldowns.append(Cooldown.of(own, normalise))
            self._guards[member.repo.name] = tuple(guards)
            self._cooldowns[member.repo.name] = tuple(c for c in cooldowns if c.min_age)

    @property
    def locals(self) -> list[Member]:
        return [m for m in self.members if m.local]

    def guarded(self, member: Member, key: str, held_by: Sequence[str]) -> str | None:
        """Why the guard keeps remote ``member`` from answering for ``key`` (normalised),
        given the local members that hold it; None if it may answer."""
        for guard in self._guards[member.repo.name]:
            if not guard.virtual.options.guard or guard.allow.match(key):
                continue
            holders = [name for name in held_by if name in guard.locals]
            if holders:
                return f"{key} is held by local member {holders[0]}"
            glob = guard.reserved.match(key)
            if glob is not None:
                return f"{key} is reserved by {guard.virtual.name} ({glob!r})"
        return None

    def cooling(self, member: Member, key: str, published: float | None, now: float) -> bool:
        """Whether a release ``member`` (a remote) published at ``published`` is still
        inside a cooldown that holds for it (the virtual's, an inner one's, its own)."""
        if member.local:
            return False  # the team's own releases are not upstream releases
        return any(c.hides(key, published, now) for c in self._cooldowns[member.repo.name])

    def cooldown_ages(self, member: Member, key: str) -> list[float]:
        return [c.min_age or 0.0 for c in self._cooldowns[member.repo.name] if c.applies(key)]

    async def ask(
        self,
        key: str,
        question: Callable[[Member], Awaitable[T | Held[T] | None]],
        stale: Callable[[T], bool] | None = None,
    ) -> list[Answer[T]]:
        """Every member's answer for ``key`` (normalised), in member order. An answer is
        stale when ``stale`` says so; by default when its value is a result of the remote
        core served from an expired copy (``how == "STALE"``)."""
        stale = stale or _expired
        answers: dict[str, Answer[T]] = {}
        local_answers = await asyncio.gather(*(_asked(m, question, stale) for m in self.locals))
        for answer in local_answers:
            answers[answer.name] = answer
        held_by = [a.name for a in local_answers if a.status == "served" or a.held]
        asked: dict[str, asyncio.Task[Answer[T]]] = {}
        for member in self.members:
            if member.local:
                continue
            why = self.guarded(member, key, held_by)
            if why is not None:
                answers[member.repo.name] = Answer(member, "guarded", reason=why)
            else:
                asked[member.repo.name] = asyncio.ensure_future(_asked(member, question, stale))
        if asked:
            started = time.monotonic()
            await asyncio.wait(asked.values(), timeout=self.timeout)
            for name, task in asked.items():
                if task.done():
                    answers[name] = task.result()
                    continue
                waited = time.monotonic() - started
                member = next(m for m in self.members if m.repo.name == name)
                answers[name] = Answer(member, "timeout", reason=f"no answer in {waited:.1f} s")
                _background.add(task)
                task.add_done_callback(_background.discard)
        return [answers[m.repo.name] for m in self.members]


async def _asked(
    member: Member,
    question: Callable[[Member], Awaitable[T | Held[T] | None]],
    stale: Callable[[T], bool] | None,
) -> Answer[T]:
    try:
        value = await question(member)
    except ApiError as error:
        if error.status == 404:
            return Answer(member, "absent", reason=error.message)
        if member.local:
            raise
        return Answer(member, "failed", reason=f"{error.status} {error.message}"[:300])
    except (TimeoutError, OSError) as error:
        if member.local:
            raise
        log.warning("virtual_member_failed", member=member.repo.name, error=str(error)[:300])
        return Answer(member, "failed", reason=f"{type(error).__name__}: {error}"[:300])
    held = isinstance(value, Held)
    if isinstance(value, Held):
        if value.value is None:
            return Answer(member, "absent", reason=value.lacking, held=True)
        value = value.value
    if value is None:
        return Answer(member, "absent")
    return Answer(member, "served", value, stale=bool(stale and stale(value)), held=held)


# What an answer through a virtual says about its members (skipped, stale, who served
# it), put on the response as it is prepared (member_headers): a download still arriving
# from an upstream is streamed by the core's edge, past any handler's headers.
MEMBER_HEADERS = web.RequestKey("virtual_member_headers", dict)


async def member_headers(request: web.Request, response: web.StreamResponse) -> None:
    extra = request.get(MEMBER_HEADERS)
    if extra:
        response.headers.update(extra)


def _expired(value: object) -> bool:
    return getattr(value, "how", None) == "STALE"


def first_served(answers: Sequence[Answer[T]]) -> Answer[T] | None:
    """The answer a client gets: the first member's (in order) that served."""
    return next((a for a in answers if a.status == "served"), None)


def leave_the_others(answers: Sequence[Answer[Any]], served: Answer[Any] | None) -> None:
    """Misses of members that lost go on filling their cache, without a reader
    (``Opened.leave``: the core's fill runs on its own)."""
    for answer in answers:
        leave = getattr(answer.value, "leave", None)
        if answer is not served and callable(leave):
            leave()


def answer_headers(answers: Sequence[Answer[Any]]) -> dict[str, str]:
    """What a merged answer says about members left out or served stale."""
    headers: dict[str, str] = {}
    skipped = [f"{a.name}={a.status}" for a in answers if a.status in LEFT_OUT]
    if skipped:
        headers[SKIPPED_HEADER] = ", ".join(skipped)
    stale = [a.name for a in answers if a.stale]
    if stale:
        headers[STALE_HEADER] = ", ".join(stale)
        headers["Warning"] = '110 - "Response is Stale"'
    return headers


@dataclass(slots=True)
class Virtuals:
    """Every virtual repository, flattened once (the configuration never changes
    while the process runs), as each format asks it."""

    repositories: Repositories
    _built: dict[str, Virtual] = field(default_factory=dict)

    def of(self, repo: Repository, normalise: Callable[[str], str]) -> Virtual:
        virtual = self._built.get(repo.name)
        if virtual is None:
            virtual = Virtual(Members.of(self.repositories, repo), normalise)
            self._built[repo.name] = virtual
        return virtual
