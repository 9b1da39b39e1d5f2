"""The format-free part of virtual repositories: members checked and flattened, asked
at once under the dependency-confusion guard, the cooldown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import BaseModel

from app.config import ConfigError, RepositoryConfig, parse_config
from app.errors import BadGateway, NotFound
from app.proxy.cooldown import Cooldown, CooldownOptions
from app.proxy.options import RemoteOptions
from app.repositories import Repositories, Repository
from app.virtual import (
    SKIPPED_HEADER,
    STALE_HEADER,
    Answer,
    Held,
    Member,
    Members,
    Virtual,
    VirtualOptions,
    answer_headers,
    check_members,
)


def pep503(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _configs(
    *specs: tuple[str, str, str, dict[str, Any]],
) -> tuple[list[RepositoryConfig], dict[str, BaseModel]]:
    configs = [RepositoryConfig(name=n, format=f, kind=k) for n, f, k, _ in specs]  # type: ignore[arg-type]
    options: dict[str, BaseModel] = {
        n: VirtualOptions(**o) if k == "virtual" else CooldownOptions() for n, _, k, o in specs
    }
    return configs, options


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ((("v", "pypi", "virtual", {"members": ["x"]}),), r"repositories\[0\].options.members\[0\]: unknown repository 'x'"),
        ((("a", "npm", "local", {}), ("v", "pypi", "virtual", {"members": ["a"]})),
         r"repositories\[1\].options.members\[0\]: 'a' is a repository of format npm, not pypi"),
        ((("v", "pypi", "virtual", {"members": ["v"]}),), r"members\[0\]: v -> v includes itself"),
        ((("a", "pypi", "local", {}), ("v", "pypi", "virtual", {"members": ["a", "w"]}),
          ("w", "pypi", "virtual", {"members": ["a", "v"]})),
         r"repositories\[1\].options.members\[1\]: v -> w -> v includes itself"),
        ((("a", "pypi", "local", {}), ("v", "pypi", "virtual", {"members": ["a", "a"]})),
         r"members\[1\]: 'a' is listed twice"),
        ((("r", "pypi", "remote", {}), ("v", "pypi", "virtual", {"members": ["r"], "deploy_to": "r"})),
         r"repositories\[1\].options.deploy_to: 'r' is not a local member \(a remote repository\)"),
        ((("a", "pypi", "local", {}), ("b", "pypi", "local", {}),
          ("v", "pypi", "virtual", {"members": ["a"], "deploy_to": "b"})),
         r"deploy_to: 'b' is not a local member \(not among its members\)"),
        ((("a", "pypi", "local", {}), ("v", "pypi", "virtual", {"members": ["a"], "deploy_to": "zz"})),
         r"deploy_to: 'zz' is not a local member \(no such repository\)"),
    ],
)  # fmt: skip
def test_bad_members_are_configuration_errors_naming_the_key(
    specs: tuple[tuple[str, str, str, dict[str, Any]], ...], message: str
) -> None:
    configs, options = _configs(*specs)
    with pytest.raises(ConfigError, match=message):
        check_members(configs, options)


def test_a_local_reached_through_an_inner_virtual_may_be_deploy_to() -> None:
    configs, options = _configs(
        ("a", "pypi", "local", {}),
        ("w", "pypi", "virtual", {"members": ["a"]}),
        ("v", "pypi", "virtual", {"members": ["w"], "deploy_to": "a"}),
    )
    check_members(configs, options)


def _repositories(*specs: tuple[str, str, BaseModel]) -> Repositories:
    return Repositories(
        {
            name: Repository(i, name, "pypi", kind, opts)
            for i, (name, kind, opts) in enumerate(specs)
        }
    )


def _virtual(repos: Repositories, name: str = "v") -> Virtual:
    return Virtual(Members.of(repos, repos.get(name)), pep503)


REMOTE = RemoteOptions(upstream="https://upstream.example")


def test_nested_virtuals_flatten_in_order_each_repository_once() -> None:
    repos = _repositories(
        ("a", "local", CooldownOptions()),
        ("b", "local", CooldownOptions()),
        ("r", "remote", REMOTE),
        ("w", "virtual", VirtualOptions(members=("b", "a", "r"))),
        ("v", "virtual", VirtualOptions(members=("a", "w"), deploy_to="b")),
    )
    members = Members.of(repos, repos.get("v"))
    assert [(m.repo.name, [v.name for v in m.via]) for m in members.members] == [
        ("a", []), ("b", ["w"]), ("r", ["w"]),
    ]  # fmt: skip
    assert members.deploy_to is not None and members.deploy_to.name == "b"


class Asked:
    """A question that records who it was put to and answers from a table."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.table, self.asked = table, []  # type: ignore[var-annotated]

    async def __call__(self, member: Member) -> Any:
        self.asked.append(member.repo.name)
        value = self.table.get(member.repo.name)
        if isinstance(value, BaseException):
            raise value
        if callable(value):
            return await value()
        return value


def _statuses(answers: list[Answer[Any]]) -> list[tuple[str, str]]:
    return [(a.name, a.status) for a in answers]


async def test_a_name_a_local_member_holds_is_never_asked_of_a_remote() -> None:
    repos = _repositories(
        ("r", "remote", REMOTE), ("l", "local", CooldownOptions()),
        ("v", "virtual", VirtualOptions(members=("r", "l"))),
    )  # fmt: skip
    question = Asked({"l": "local page", "r": "upstream page"})
    answers = await _virtual(repos).ask("internal-lib", question)
    assert _statuses(answers) == [("r", "guarded"), ("l", "served")]  # member order kept
    assert question.asked == ["l"]
    assert "held by local member l" in answers[0].reason


async def test_a_local_member_holding_the_name_without_the_thing_still_guards_it() -> None:
    repos = _repositories(
        ("l", "local", CooldownOptions()), ("m", "local", CooldownOptions()),
        ("r", "remote", REMOTE), ("v", "virtual", VirtualOptions(members=("l", "m", "r"))),
    )  # fmt: skip
    question = Asked({"l": Held(None, "holds team/app, not 2.0"), "m": Held("m's"), "r": "theirs"})
    answers = await _virtual(repos).ask("team/app", question)
    assert _statuses(answers) == [("l", "absent"), ("m", "served"), ("r", "guarded")]
    assert answers[0].held and answers[0].reason == "holds team/app, not 2.0"
    assert answers[1].held and answers[1].value == "m's"  # unwrapped
    assert question.asked == ["l", "m"]
    lone = _repositories(
        ("l", "local", CooldownOptions()), ("r", "remote", REMOTE),
        ("v", "virtual", VirtualOptions(members=("l", "r"))),
    )  # fmt: skip
    only_held = await _virtual(lone).ask("team/app", Asked({"l": Held(None), "r": "theirs"}))
    assert _statuses(only_held) == [("l", "absent"), ("r", "guarded")]


@pytest.mark.parametrize("spelling", ["acme-tools", "Acme_Tools", "acme.tools", "ACME--tools"])
async def test_reserved_names_are_guarded_in_every_spelling_before_any_publish(
    spelling: str,
) -> None:
    repos = _repositories(
        ("l", "local", CooldownOptions()), ("r", "remote", REMOTE),
        ("v", "virtual", VirtualOptions(members=("l", "r"), reserved=("Acme_*",))),
    )  # fmt: skip
    question = Asked({"r": "upstream page"})
    virtual = _virtual(repos)
    answers = await virtual.ask(pep503(spelling), question)
    assert _statuses(answers) == [("l", "absent"), ("r", "guarded")]
    assert question.asked == ["l"] and "reserved by v ('acme-*')" in answers[1].reason


async def test_the_allow_list_lets_a_held_name_come_from_upstream_too() -> None:
    repos = _repositories(
        ("l", "local", CooldownOptions()), ("r", "remote", REMOTE),
        ("v", "virtual", VirtualOptions(members=("l", "r"), reserved=("acme-*",), allow=("acme-public",))),
    )  # fmt: skip
    answers = await _virtual(repos).ask("acme-public", Asked({"l": "ours", "r": "theirs"}))
    assert _statuses(answers) == [("l", "served"), ("r", "served")]


async def test_the_guard_off_asks_every_member() -> None:
    repos = _repositories(
        ("l", "local", CooldownOptions()), ("r", "remote", REMOTE),
        ("v", "virtual", VirtualOptions(members=("l", "r"), guard=False, reserved=("x*",))),
    )  # fmt: skip
    answers = await _virtual(repos).ask("xlib", Asked({"l": "ours", "r": "theirs"}))
    assert _statuses(answers) == [("l", "served"), ("r", "served")]


async def test_an_inner_virtuals_reserved_names_hold_for_its_remotes() -> None:
    repos = _repositories(
        ("l", "local", CooldownOptions()), ("r", "remote", REMOTE), ("s", "remote", REMOTE),
        ("w", "virtual", VirtualOptions(members=("r",), reserved=("acme-*",))),
        ("v", "virtual", VirtualOptions(members=("l", "w", "s"))),
    )  # fmt: skip
    answers = await _virtual(repos).ask("acme-x", Asked({"r": "inner", "s": "outer"}))
    assert _statuses(answers) == [("l", "absent"), ("r", "guarded"), ("s", "served")]


async def test_failing_and_slow_remotes_are_left_out_within_the_timeout() -> None:
    finished = asyncio.Event()

    async def slow() -> str:
        await asyncio.sleep(0.6)
        finished.set()
        return "late"

    repos = _repositories(
        ("l", "local", CooldownOptions()), ("bad", "remote", REMOTE), ("gone", "remote", REMOTE),
        ("slow", "remote", REMOTE), ("ok", "remote", REMOTE), ("none", "remote", REMOTE),
        ("v", "virtual", VirtualOptions(members=("l", "bad", "gone", "slow", "ok", "none"), member_timeout=0.2)),
    )  # fmt: skip
    question = Asked({
        "bad": BadGateway("upstream answered 503"), "gone": ConnectionResetError("reset"),
        "slow": slow, "ok": "page", "none": NotFound("no such project"),
    })  # fmt: skip
    started = time.monotonic()
    answers = await _virtual(repos).ask("public-lib", question)
    assert time.monotonic() - started < 0.5  # the merge did not wait for the slow member
    assert _statuses(answers) == [
        ("l", "absent"), ("bad", "failed"), ("gone", "failed"), ("slow", "timeout"),
        ("ok", "served"), ("none", "absent"),
    ]  # fmt: skip
    assert "503" in answers[1].reason and "ConnectionResetError" in answers[2].reason
    headers = answer_headers(answers)
    assert headers[SKIPPED_HEADER] == "bad=failed, gone=failed, slow=timeout"
    await asyncio.wait_for(finished.wait(), 2)  # the slow fetch went on, filling the cache


async def test_a_failing_local_member_fails_the_answer_rather_than_open_the_guard() -> None:
    repos = _repositories(
        ("l", "local", CooldownOptions()), ("r", "remote", REMOTE),
        ("v", "virtual", VirtualOptions(members=("l", "r"))),
    )  # fmt: skip
    question = Asked({"l": OSError("database went away"), "r": "theirs"})
    with pytest.raises(OSError, match="database went away"):
        await _virtual(repos).ask("internal-lib", question)
    assert "r" not in question.asked


async def test_stale_answers_are_named_with_a_warning() -> None:
    repos = _repositories(("r", "remote", REMOTE), ("v", "virtual", VirtualOptions(members=("r",))))
    answers = await _virtual(repos).ask("x", Asked({"r": "STALE"}), stale=lambda v: v == "STALE")
    assert answers[0].stale
    headers = answer_headers(answers)
    assert headers[STALE_HEADER] == "r" and headers["Warning"].startswith("110")
    assert answer_headers([]) == {}


def test_cooldown_hides_young_and_undated_releases_unless_allowed() -> None:
    cooldown = Cooldown.of(
        CooldownOptions(min_release_age=3 * 86400, cooldown_allow=("Urgent_*",)), pep503
    )
    now = 10_000_000.0
    assert cooldown.hides("lib", now - 3600, now)  # an hour old
    assert not cooldown.hides("lib", now - 4 * 86400, now)
    assert cooldown.hides("lib", None, now)  # no upload time: it waits
    assert not cooldown.hides("urgent-fix", now - 60, now)
    assert not Cooldown.of(CooldownOptions(), pep503).hides("lib", now, now)


def test_the_strictest_cooldown_on_a_remotes_path_holds_and_locals_never_wait() -> None:
    young_remote = RemoteOptions(upstream="https://upstream.example", min_release_age=7 * 86400)
    repos = _repositories(
        ("l", "local", CooldownOptions()), ("r", "remote", young_remote), ("s", "remote", REMOTE),
        ("v", "virtual", VirtualOptions(members=("l", "r", "s"), min_release_age=86400)),
    )  # fmt: skip
    virtual = _virtual(repos)
    local, r, s = virtual.members
    now = 100_000_000.0
    two_days = now - 2 * 86400
    assert virtual.cooling(r, "lib", two_days, now)  # its own 7 days
    assert not virtual.cooling(s, "lib", two_days, now)  # the virtual's one day
    assert virtual.cooling(s, "lib", now - 3600, now)
    assert not virtual.cooling(local, "lib", now, now)


def test_a_disabled_repository_leaves_the_members_of_every_virtual() -> None:
    repositories = [
        {"name": "r", "format": "pypi", "kind": "remote", "enabled": "${UP:+true}",
         "options": {"upstream": "${UP:-}"}},
        {"name": "l", "format": "pypi"},
        {"name": "v", "format": "pypi", "kind": "virtual", "options": {"members": ["l", "r"]}},
    ]  # fmt: skip
    off = parse_config({"repositories": repositories}, env={})
    assert [(r.name, r.options.get("members")) for r in off.repositories] == [
        ("l", None),
        ("v", ["l"]),
    ]
    on = parse_config({"repositories": repositories}, env={"UP": "https://pypi.example"})
    assert [r.name for r in on.repositories] == ["r", "l", "v"]
    assert on.repositories[0].options == {"upstream": "https://pypi.example"}
    assert on.repositories[2].options["members"] == ["l", "r"]
