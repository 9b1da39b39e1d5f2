"""Packuments made from rows by joining stored JSON texts: whatever the texts hold, the
result parses, and says what the rows say."""

from __future__ import annotations

import json

import pytest

from app.formats.npm import documents
from app.formats.npm.names import newest
from app.formats.npm.rows import AttachmentRow, PackageRows, VersionRow

BASE = "http://registry.test/repository/npm-local"


def version(number: str, manifest: object, dist: object, **fields: object) -> VersionRow:
    defaults: dict[str, object] = {
        "tarball_digest": "sha256:" + "0" * 64, "size": 1, "integrity": "sha512-x",
        "shasum": "0" * 40, "published_at": 1.5, "deprecated": None, "state": "published",
        "stage_id": None, "stage_tag": None, "staged_by": None, "changed": 1,
    }  # fmt: skip
    defaults |= fields
    text = json.dumps(manifest, ensure_ascii=False)
    short = json.dumps(documents.corgi(manifest), ensure_ascii=False)  # type: ignore[arg-type]
    return VersionRow(number, text, short, json.dumps(dist), **defaults)  # type: ignore[arg-type]


def package(*versions: VersionRow, **fields: object) -> PackageRows:
    given: dict[str, object] = {"tags": {"latest": versions[-1].version}, **fields}
    return PackageRows(7, "@acme/util", 3, 0.0, 2.0, list(versions), **given)  # type: ignore[arg-type]


@pytest.mark.parametrize("manifest", [{}, {"name": "@acme/util", "scripts": {"install": "x"}}])
@pytest.mark.parametrize("dist", [{}, {"integrity": "sha512-x", "shasum": "ab"}])
@pytest.mark.parametrize("deprecated", [None, 'say "no" — ünïcode\n\\'])
def test_fragments_join_into_json(
    manifest: dict[str, object], dist: object, deprecated: str | None
) -> None:
    rows = package(version("1.0.0", manifest, dist, deprecated=deprecated))
    full = json.loads(documents.full(rows, BASE))
    served = full["versions"]["1.0.0"]
    assert served["dist"] == {**dist, "tarball": f"{BASE}/@acme/util/-/util-1.0.0.tgz"}  # type: ignore[dict-item]
    assert served.get("deprecated") == deprecated
    assert full["time"] == {
        "created": "1970-01-01T00:00:00.000Z",
        "modified": "1970-01-01T00:00:02.000Z",
        "1.0.0": "1970-01-01T00:00:01.500Z",
    }
    assert full["_rev"] == documents.revision(rows) and full["dist-tags"] == {"latest": "1.0.0"}
    short = json.loads(documents.abbreviated(rows, BASE))
    assert set(short) == {"name", "modified", "dist-tags", "versions"}
    corgi = short["versions"]["1.0.0"]
    assert corgi.get("hasInstallScript") == ("scripts" in manifest or None)
    assert "scripts" not in corgi and corgi["dist"] == served["dist"]
    assert documents.manifest(rows, rows.versions[0], BASE) == served


def test_only_published_versions_and_their_tags_are_served() -> None:
    rows = package(
        version("1.0.0", {"description": "first"}, {}),
        version("1.1.0", {}, {}, state="staged", stage_id="s"),
        version("0.9.0", {}, {}, state="unpublished", tarball_digest=None),
        tags={"latest": "1.0.0", "next": "1.1.0", "old": "0.9.0"},
    )
    full = json.loads(documents.full(rows, BASE))
    assert list(full["versions"]) == ["1.0.0"] and full["dist-tags"] == {"latest": "1.0.0"}
    assert full["description"] == "first" and set(full["time"]) == {"created", "modified", "1.0.0"}


def test_a_provenance_bundle_is_announced_in_dist() -> None:
    bundle = AttachmentRow("1.0.0", "@acme/util-1.0.0.sigstore", "sha256:1", 5, "x", None)
    rows = package(version("1.0.0", {}, {}), attachments=[bundle])
    dist = json.loads(documents.full(rows, BASE))["versions"]["1.0.0"]["dist"]
    assert dist["attestations"] == {
        "url": f"{BASE}/-/npm/v1/attestations/@acme/util@1.0.0",
        "provenance": {"predicateType": documents.PROVENANCE},
    }


@pytest.mark.parametrize("rev", ["3-abc", "12", "x-1", "", "1" * 30])
def test_a_revision_names_its_serial(rev: str) -> None:
    expected = int(rev.split("-")[0]) if rev.split("-")[0].isdigit() and len(rev) < 19 else None
    assert documents.revision_serial(rev) == expected


@pytest.mark.parametrize(
    ("versions", "latest"),
    [
        ({"1.0.0", "1.10.0", "1.9.0"}, "1.10.0"),
        ({"1.0.0", "2.0.0-rc.1"}, "1.0.0"),
        ({"2.0.0-rc.2", "2.0.0-rc.10", "2.0.0-beta"}, "2.0.0-rc.10"),
        ({"1.0.0-alpha", "1.0.0-alpha.1"}, "1.0.0-alpha.1"),
        (set(), None),
    ],
)
def test_latest_falls_back_to_the_newest_release(versions: set[str], latest: str | None) -> None:
    assert newest(versions) == latest
