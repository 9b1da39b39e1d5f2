"""The merge rules of a virtual PyPI repository as plain data: the first member wins
per filename, a cooling file does not exist for the merge, the project list is a
union by normalised name; and what the merge reads of an upstream page (PEP 700 size,
upload-time, versions) and of a name (ASCII only, PEP 503)."""

from __future__ import annotations

import json

import pytest

from app.formats.api import Member, Repository, VirtualOptions
from app.formats.pypi import merge, simple
from app.formats.pypi.publish import LocalPypiOptions

FIRST = Member(Repository(1, "first", "pypi", "local", LocalPypiOptions()))
SECOND = Member(Repository(2, "second", "pypi", "local", LocalPypiOptions()))


def dist(filename: str, digest: str, upload_time: str | None = None) -> simple.DistFile:
    return simple.DistFile(filename, filename, {"sha256": digest * 64}, upload_time=upload_time)


def files(*dists: simple.DistFile) -> merge.Files:
    return merge.Files.of((d, merge.file_version(d.filename)) for d in dists)


def never(member: Member, published: float | None) -> bool:
    return False


def test_the_first_member_wins_per_filename_and_the_rest_is_a_union() -> None:
    served = [
        (FIRST, files(dist("a-1.0.tar.gz", "1"))),
        (SECOND, files(dist("a-1.0.tar.gz", "2"), dist("a-2.0-py3-none-any.whl", "3"))),
    ]
    won = merge.winners(served, never)
    assert list(won) == ["a-1.0.tar.gz", "a-2.0-py3-none-any.whl"]
    assert (
        won["a-1.0.tar.gz"].member is FIRST
        and won["a-1.0.tar.gz"].file.digest == "sha256:" + "1" * 64
    )
    assert won["a-2.0-py3-none-any.whl"].member is SECOND
    assert merge.serving(served, never, "a-1.0.tar.gz") == won["a-1.0.tar.gz"]
    assert merge.serving(served, never, "a-3.0.tar.gz") is None
    page = merge.page("a", won)
    assert page.versions == ("1.0", "2.0")
    assert (
        json.loads(simple.render_json(page, "a"))["files"][0]["url"]
        == "../../files/a/a-1.0.tar.gz#sha256=" + "1" * 64
    )


def test_a_cooling_file_does_not_exist_for_the_merge() -> None:
    young = "2026-01-02T00:00:00Z"
    served = [
        (FIRST, files(dist("a-1.0.tar.gz", "1", young), dist("a-0.9.tar.gz", "4", None))),
        (SECOND, files(dist("a-1.0.tar.gz", "2", "2020-01-01T00:00:00Z"))),
    ]
    seen: list[tuple[str, float | None]] = []

    def cooling(member: Member, published: float | None) -> bool:
        seen.append((member.repo.name, published))
        return member is FIRST  # the first member's releases are all too young

    won = merge.winners(served, cooling)
    assert list(won) == ["a-1.0.tar.gz"] and won["a-1.0.tar.gz"].member is SECOND
    assert ("first", simple.published(young)) in seen and ("first", None) in seen
    assert merge.serving(served, cooling, "a-0.9.tar.gz") is None
    assert merge.page("a", won).versions == ("1.0",)


def test_the_project_list_is_a_union_by_normalised_name() -> None:
    names = merge.project_names([["Foo.Bar", "baz"], ["foo_bar", "Qux", "BAZ"], []])
    assert names == ["Foo.Bar", "baz", "Qux"]


@pytest.mark.parametrize(
    ("filename", "version"),
    [
        ("demo_pkg-1.0-py3-none-any.whl", "1.0"),
        ("Demo.Pkg-2.0rc1.tar.gz", "2.0rc1"),
        ("demo-1.0.0-1-py3-none-any.whl", "1.0.0"),
        ("not-a-dist.exe", None),
    ],
)
def test_a_filename_names_its_version(filename: str, version: str | None) -> None:
    assert merge.file_version(filename) == version


def test_the_memo_keeps_within_its_budget_least_recent_out() -> None:
    memo: merge.Memo[str] = merge.Memo(budget=20)
    for key in "abcde":
        memo.put(key, key.upper(), 4)  # 20: all there
    assert memo.get("a") == "A"  # now the most recent
    memo.put("f", "F", 4)  # over: b goes (a was used since)
    assert memo.get("b") is None and memo.get("a") == "A" and memo.get("f") == "F"
    assert memo.put("huge", "H", 6) == "H" and memo.get("huge") is None  # over a quarter


@pytest.mark.parametrize(
    "name",
    [
        "\u0131nternal-lib",
        "internal-l\u0131b",
        "\u017fecret",
        "\u212aelvin",
        "caf\u00e9",
        "a" * 201,
    ],
)
def test_a_name_that_is_not_ascii_is_no_project_name(name: str) -> None:
    assert not simple.valid_project(name)


def test_names_normalise_as_pip_does() -> None:
    for spelling in ("Internal_Lib", "internal.lib", "INTERNAL--lib", "internal-_.lib"):
        assert simple.valid_project(spelling) and simple.normalize(spelling) == "internal-lib"


def test_an_upstream_json_page_keeps_pep_700_size_upload_time_and_versions() -> None:
    document = {
        "meta": {"api-version": "1.1"},
        "name": "a",
        "versions": ["1.0", "2.0"],
        "files": [
            {"filename": "a-1.0.tar.gz", "url": "/p/a-1.0.tar.gz", "hashes": {},
             "size": 12, "upload-time": "2020-01-01T00:00:00.123456Z"},
            {"filename": "a-2.0.tar.gz", "url": "/p/a-2.0.tar.gz", "hashes": {},
             "size": True, "upload-time": "yesterday"},
        ],
    }  # fmt: skip
    page = simple.parse_json(json.dumps(document).encode(), "https://up.example/simple/a/", "a")
    first, second = page.files
    assert (first.size, first.upload_time) == (12, "2020-01-01T00:00:00.123456Z")
    assert simple.published(first.upload_time) == pytest.approx(1577836800.123456)
    assert (second.size, second.upload_time) == (None, None)  # unreadable: unknown
    assert page.versions == ("1.0", "2.0")
    assert simple.published(None) is None and simple.published("2020-01-01T00:00:00") == 1577836800


def test_virtual_options_take_what_the_guard_and_cooldown_need() -> None:
    options = VirtualOptions(members=("a", "b"), reserved=("acme-*",), min_release_age="3d")
    assert options.guard and options.min_release_age == 3 * 86400


def test_versions_compare_as_filenames_name_them() -> None:
    assert merge.normalised_version("1.0-RC1") == merge.file_version("a-1.0rc1.tar.gz") == "1.0rc1"
    assert merge.normalised_version("not a version") == "not a version"
