"""The merge rules of an npm virtual repository, over its members' packuments in
member order (plain data: :mod:`.virtual` asks the members, this only merges).

- ``versions``: the union; each version's whole object from the first member that
  has it (after that member's cooldown took out what is too young).
- ``dist-tags``: the union, the first member wins per tag; a tag only stays if its
  version is in the merged ``versions``; ``latest`` is never invented (a cooldown
  may move a member's own ``latest`` down, :mod:`.cooling`).
- ``time``: ``created`` the earliest, ``modified`` the latest, each version's time
  from the member that serves it (full form only, as npm's registry has it).
- Tarball URLs point at the virtual repository (``base``); ``integrity`` and
  ``shasum`` go out as the serving member published them. A remote's version with no
  tarball we would serve is left out (listed means downloadable).
- The other fields of a full packument (description, readme, maintainers…) come from
  the first member that has the package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from app.formats.npm import cooling, packuments
from app.formats.npm.names import Target

Form = Literal["full", "abbreviated"]
# (member, version, published) -> hidden by a cooldown holding for that member?
MemberHides = Callable[[str, str, float | None], bool]
_MERGED_HERE = frozenset(
    {"_id", "_rev", "name", "versions", "dist-tags", "time", "modified", "_attachments"}
)


@dataclass(frozen=True, slots=True)
class Source:
    member: str
    remote: bool  # its tarball URLs are the upstream's; a cooldown may hold for it
    document: dict[str, Any] | None  # None: holds the name with nothing to list


@dataclass(slots=True)
class Merge:
    document: dict[str, Any]
    served: dict[str, str] = field(default_factory=dict)  # version -> member
    files: dict[str, str] = field(default_factory=dict)  # tarball file name -> version
    hidden: dict[str, dict[str, str]] = field(default_factory=dict)  # member -> version -> file
    offered: dict[str, list[str]] = field(default_factory=dict)  # member -> its versions


def merge(
    sources: list[Source], target: Target, form: Form, base: str, hides: MemberHides | None
) -> Merge:
    """The merged packument of ``target.package`` under ``base`` (the virtual's URL)."""
    versions: dict[str, Any] = {}
    tags: dict[str, str] = {}
    wanted_tags: list[tuple[str, str]] = []
    times: dict[str, str] = {}
    created: list[str] = []
    modified: list[str] = []
    head: dict[str, Any] | None = None
    out = Merge({})
    for source in sources:
        document = source.document
        if document is None:
            continue
        own_times = document.get("time")
        own_times = own_times if isinstance(own_times, dict) else {}
        if source.remote:
            packuments.rewrite(document, target, base)
            _unservable_out(document)
            if hides is not None:
                hidden = cooling.cooled(document, partial(hides, source.member))
                if hidden:
                    out.hidden[source.member] = {v: _file(m) for v, m in hidden.items()}
            if form == "abbreviated" and "time" in document:
                document = cooling.abbreviated(document)  # fetched full for its times
        own = document.get("versions")
        own = own if isinstance(own, dict) else {}
        out.offered[source.member] = [v for v in own if isinstance(own[v], dict)]
        for version, manifest in own.items():
            if version in versions or not isinstance(manifest, dict):
                continue
            versions[version] = manifest
            out.served[version] = source.member
            file = _file(manifest)
            if file:
                out.files.setdefault(file, version)
            stamp = own_times.get(version)
            if isinstance(stamp, str):
                times[version] = stamp
        own_tags = document.get("dist-tags")
        if isinstance(own_tags, dict):
            wanted_tags += [(t, v) for t, v in own_tags.items() if isinstance(v, str)]
        for key, bucket in (("created", created), ("modified", modified)):
            stamp = own_times.get(key)
            if isinstance(stamp, str):
                bucket.append(stamp)
        if isinstance(document.get("modified"), str):
            modified.append(document["modified"])
        if head is None:
            head = {k: v for k, v in document.items() if k not in _MERGED_HERE}
    for tag, version in wanted_tags:
        if tag not in tags and version in versions:
            tags[tag] = version
    name = target.package
    if form == "abbreviated":
        document = {"name": name}
        if modified:
            document["modified"] = _latest(modified)
        document |= {"dist-tags": tags, "versions": versions}
    else:
        document = {"_id": name, "name": name, "dist-tags": tags, **(head or {})}
        document["versions"] = versions
        merged_times: dict[str, str] = {}
        if created:
            merged_times["created"] = _earliest(created)
        if modified:
            merged_times["modified"] = _latest(modified)
        document["time"] = merged_times | {v: times[v] for v in versions if v in times}
    out.document = document
    return out


def _unservable_out(document: dict[str, Any]) -> None:
    """Versions whose tarball the remote would not serve (no URL, or a file name we
    refuse) are not listed: whatever the merge lists, a download serves."""
    versions = document.get("versions")
    if isinstance(versions, dict):
        for version in [v for v, m in versions.items() if not _file(m)]:
            del versions[version]


def _file(manifest: object) -> str:
    """The tarball's file name in a version's (re-pointed) ``dist.tarball``."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("dist"), dict):
        return ""
    url = manifest["dist"].get("tarball")
    return url.rpartition("/")[2] if isinstance(url, str) else ""


def _earliest(stamps: list[str]) -> str:
    return min(stamps, key=lambda s: cooling.epoch(s) or float("inf"))


def _latest(stamps: list[str]) -> str:
    return max(stamps, key=lambda s: cooling.epoch(s) or float("-inf"))
