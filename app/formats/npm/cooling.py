"""A cooldown over a packument: the versions an upstream published too recently leave
it, with their ``time`` entries, and the dist-tags that pointed at them move.

A tag whose version is hidden moves to the highest remaining version at or below it
(npm's own rule for ``--before``: "the highest precedence version prior to the
dist-tag"), or goes if there is none. npm resolves ``npm install pkg`` through
``latest`` and fails when ``latest`` names a version the packument lacks, so a hidden
``latest`` is never left in place. A version whose ``time`` is missing or unreadable
counts as just published (the guard fails closed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from app.formats.npm.documents import corgi
from app.formats.npm.names import highest_at_most

# (version, its publication time in epoch seconds or None) -> hidden?
Hides = Callable[[str, float | None], bool]


def epoch(text: object) -> float | None:
    """An ISO 8601 time as npm's ``time`` object has it, in epoch seconds."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def published(document: dict[str, Any], version: str) -> float | None:
    times = document.get("time")
    return epoch(times.get(version)) if isinstance(times, dict) else None


def cooled(document: dict[str, Any], hides: Hides) -> dict[str, dict[str, Any]]:
    """Remove (in place) the versions ``hides`` holds back; what was removed."""
    versions = document.get("versions")
    if not isinstance(versions, dict):
        return {}
    hidden = {v: m for v, m in versions.items() if hides(v, published(document, v))}
    if not hidden:
        return {}
    for version in hidden:
        del versions[version]
    times = document.get("time")
    if isinstance(times, dict):
        for version in hidden:
            times.pop(version, None)
    tags = document.get("dist-tags")
    if isinstance(tags, dict):
        remaining = set(versions)
        for tag, version in list(tags.items()):
            if version in hidden:
                moved = highest_at_most(remaining, version)
                if moved is None:
                    del tags[tag]
                else:
                    tags[tag] = moved
    return hidden


def abbreviated(document: dict[str, Any]) -> dict[str, Any]:
    """The abbreviated ("corgi") form of a full packument, as npm's registry makes it:
    name, modified, dist-tags and each version's installer fields."""
    versions = document.get("versions")
    short: dict[str, Any] = {}
    if isinstance(versions, dict):
        for version, manifest in versions.items():
            if isinstance(manifest, dict):
                kept = corgi(manifest)
                if "dist" in manifest:
                    kept["dist"] = manifest["dist"]
                short[version] = kept
    out: dict[str, Any] = {"name": document.get("name")}
    times = document.get("time")
    modified = document.get("modified") or (
        times.get("modified") if isinstance(times, dict) else None
    )
    if modified is not None:
        out["modified"] = modified
    out["dist-tags"] = (
        document.get("dist-tags") if isinstance(document.get("dist-tags"), dict) else {}
    )
    out["versions"] = short
    return out
