"""The migration tracks as shipped, and how the migrator reads a track's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backends.metadata import Track, open_metadata
from app.backends.metadata.migrator import CORE, load
from app.formats import available_formats, migrations

TRACKS = [CORE, *migrations(available_formats().values())]


def test_every_track_ships_the_same_numbered_scripts_for_both_dialects() -> None:
    assert [t.name for t in TRACKS] == ["core", "auth", "generic", "oci", "pypi", "npm"]
    for track in TRACKS:
        versions = [s.version for s in load(track, "sqlite")]
        assert versions == list(range(1, len(versions) + 1)), track.name
        assert [s.version for s in load(track, "postgres")] == versions
        for script in load(track, "postgres"):
            assert "{{" not in script.text, script.label


def test_scripts_say_which_global_version_they_were_part_of() -> None:
    """Databases migrated before tracks recorded these; a change here re-runs a
    script on them (or skips one they lack)."""
    legacy = {s.label: s.legacy for t in TRACKS for s in load(t, "sqlite")}
    assert legacy == {
        "core/0001_initial": 1,
        "core/0002_gc": 3,
        "core/0003_remote": 4,
        "core/0004_remote_links": 5,
        "auth/0001_auth": None,  # made after tracks: no database ran it as a global version
        "auth/0002_audit": None,
        "generic/0001_files": 1,
        "generic/0002_prefixes": None,
        "oci/0001_oci": 2,
        "oci/0002_gc": 3,
        "pypi/0001_pypi": None,
        "npm/0001_npm_logins": None,
        "npm/0002_npm_local": None,
    }


def test_a_misnamed_or_doubled_script_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "notes.txt").write_text("not a script")
    assert [s.label for s in load(Track("t", tmp_path), "sqlite")] == ["t/0001_a"]
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="two scripts for version 1"):
        load(Track("t", tmp_path), "sqlite")
    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "2_c.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"not named NNNN_name\.sql"):
        load(Track("t", tmp_path), "sqlite")


async def test_a_track_named_twice_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    store = await open_metadata(sqlite_url)
    try:
        with pytest.raises(ValueError, match="named twice"):
            await store.migrate([Track("core", tmp_path)])
        with pytest.raises(ValueError, match="named twice"):
            await store.migrate([Track("x", tmp_path), Track("x", tmp_path)])
    finally:
        await store.close()
