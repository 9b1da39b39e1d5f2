"""The npm virtual repository's merge rules and cooldown, on plain documents."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.formats.npm import cooling
from app.formats.npm.merging import Source, merge
from app.formats.npm.names import Target, highest_at_most

BASE = "http://here/repository/npm"
UP = "https://registry.example"


def version(name: str, v: str, where: str, **extra: Any) -> dict[str, Any]:
    dist = {"tarball": f"{where}/{name}/-/{name}-{v}.tgz", "integrity": f"sha512-{where}{v}"}
    return {"name": name, "version": v, "dist": dist, **extra}


def packument(name: str, where: str, tags: dict[str, str], **times: str) -> dict[str, Any]:
    versions = {v: version(name, v, where) for v in times if v not in ("created", "modified")}
    return {"name": name, "dist-tags": tags, "versions": versions, "time": dict(times)}


@pytest.mark.parametrize(
    ("versions", "ceiling", "expected"),
    [
        ({"1.0.0", "1.1.0-rc.1", "0.9.0"}, "1.1.0", "1.0.0"),  # <=1.1.0 takes no pre-release
        ({"1.0.0", "1.1.0-rc.1"}, "1.1.0-rc.2", "1.1.0-rc.1"),
        ({"1.0.0", "2.0.0-rc.1"}, "1.1.0-rc.2", "1.0.0"),  # another tuple's pre-release
        ({"2.0.0"}, "1.0.0", None),
        ({"1.0.0"}, "not-semver", None),
        ({"1.2.10", "1.2.9"}, "1.3.0", "1.2.10"),
    ],
)
def test_highest_at_most_is_npms_range(
    versions: set[str], ceiling: str, expected: str | None
) -> None:
    assert highest_at_most(versions, ceiling) == expected


def test_cooled_hides_young_and_unknown_releases_and_moves_their_tags() -> None:
    document = packument(
        "p", UP, {"latest": "2.0.0", "beta": "3.0.0-b.1", "old": "1.0.0"},
        **{"1.0.0": "2020-01-01T00:00:00.000Z", "2.0.0": "2026-12-01T00:00:00Z",
           "3.0.0-b.1": "2020-02-01T00:00:00Z", "created": "2020-01-01T00:00:00Z"},
    )  # fmt: skip
    del document["time"]["3.0.0-b.1"]  # no time: waits
    cutoff = cooling.epoch("2026-01-01T00:00:00Z")
    assert cutoff is not None
    hidden = cooling.cooled(document, lambda v, at: at is None or at > cutoff)
    assert sorted(hidden) == ["2.0.0", "3.0.0-b.1"]
    assert list(document["versions"]) == ["1.0.0"]
    assert document["dist-tags"] == {"latest": "1.0.0", "old": "1.0.0", "beta": "1.0.0"}
    assert "2.0.0" not in document["time"] and "created" in document["time"]
    nothing_left = packument("q", UP, {"latest": "1.0.0"}, **{"1.0.0": "2026-12-01T00:00:00Z"})
    cooling.cooled(nothing_left, lambda v, at: True)
    assert nothing_left["versions"] == {} and nothing_left["dist-tags"] == {}


def test_merge_takes_each_version_and_tag_from_the_first_member() -> None:
    local = packument(
        "p", BASE, {"latest": "1.0.0", "dev": "9.9.9"},
        **{"1.0.0": "2026-11-01T00:00:00.000Z", "created": "2026-11-01T00:00:00.000Z",
           "modified": "2026-11-30T00:00:00.000Z"},
    )  # fmt: skip
    local["description"] = "ours"
    remote = packument(
        "p", UP, {"latest": "2.0.0", "next": "2.0.0", "dev": "1.0.0"},
        **{"1.0.0": "2019-01-01T00:00:00.000Z", "2.0.0": "2020-01-01T00:00:00.000Z",
           "created": "2019-01-01T00:00:00.000Z", "modified": "2020-01-01T00:00:00.000Z"},
    )  # fmt: skip
    sources = [Source("local", False, copy.deepcopy(local)), Source("up", True, remote)]
    done = merge(sources, Target("p"), "full", BASE, None)
    merged = done.document
    assert list(merged["versions"]) == ["1.0.0", "2.0.0"]
    assert merged["versions"]["1.0.0"] == local["versions"]["1.0.0"]  # the whole object
    two = merged["versions"]["2.0.0"]["dist"]
    assert two == {"tarball": f"{BASE}/p/-/p-2.0.0.tgz", "integrity": f"sha512-{UP}2.0.0"}
    # dev: the local's points at no version, so the remote's stands.
    assert merged["dist-tags"] == {"latest": "1.0.0", "dev": "1.0.0", "next": "2.0.0"}
    assert merged["time"] == {
        "created": "2019-01-01T00:00:00.000Z", "modified": "2026-11-30T00:00:00.000Z",
        "1.0.0": "2026-11-01T00:00:00.000Z", "2.0.0": "2020-01-01T00:00:00.000Z",
    }  # fmt: skip
    assert merged["description"] == "ours" and merged["_id"] == "p"
    assert done.served == {"1.0.0": "local", "2.0.0": "up"}
    assert done.files == {"p-1.0.0.tgz": "1.0.0", "p-2.0.0.tgz": "2.0.0"}


def test_latest_is_never_invented_and_held_names_list_nothing() -> None:
    remote = packument("p", UP, {"next": "1.0.0"}, **{"1.0.0": "2019-01-01T00:00:00Z"})
    done = merge(
        [Source("local", False, None), Source("up", True, remote)],
        Target("p"), "abbreviated", BASE, None,
    )  # fmt: skip
    assert done.document["dist-tags"] == {"next": "1.0.0"}
    assert set(done.document) == {"name", "dist-tags", "versions"}
    held = merge([Source("local", False, None)], Target("p"), "full", BASE, None)
    assert held.document["versions"] == {} and held.document["dist-tags"] == {}


def test_a_full_remote_document_is_cooled_then_abbreviated() -> None:
    remote = packument(
        "p", UP, {"latest": "2.0.0"},
        **{"1.0.0": "2019-01-01T00:00:00Z", "2.0.0": "2026-12-01T00:00:00Z"},
    )  # fmt: skip
    remote["versions"]["1.0.0"]["readme"] = "long"
    cutoff = cooling.epoch("2026-01-01T00:00:00Z") or 0.0
    done = merge(
        [Source("up", True, remote)], Target("p"), "abbreviated", BASE,
        lambda member, v, at: at is None or at > cutoff,
    )  # fmt: skip
    document = done.document
    assert list(document["versions"]) == ["1.0.0"] and document["dist-tags"] == {"latest": "1.0.0"}
    assert "readme" not in document["versions"]["1.0.0"] and "time" not in document
    assert done.hidden == {"up": {"2.0.0": "p-2.0.0.tgz"}}


def test_a_remote_version_without_a_servable_tarball_is_not_listed() -> None:
    remote = packument("p", UP, {"latest": "1.0.0"}, **{"1.0.0": "2019-01-01T00:00:00Z"})
    remote["versions"]["0.1.0"] = {"name": "p", "version": "0.1.0", "dist": {"shasum": "0" * 40}}
    remote["versions"]["0.2.0"] = version("p", "0.2.0", "ftp://elsewhere")
    done = merge([Source("up", True, remote)], Target("p"), "full", BASE, None)
    assert list(done.document["versions"]) == ["1.0.0"]
