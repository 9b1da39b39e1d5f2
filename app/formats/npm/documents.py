"""A local package's packument, generated from its rows (:mod:`.records`).

Only published versions appear; staged ones wait for approval, unpublished ones are
tombstones. Each version's manifest is the one its publish sent, with what the registry
owns put in: the tarball URL (this repository's, built from the URL the client used),
the deprecation message, and ``dist.attestations`` where a provenance bundle came with
it (served at ``-/npm/v1/attestations/<name>@<version>`` as registry.npmjs.org does).
The abbreviated form ("corgi", what ``npm install`` asks for) keeps only the fields an
installer reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from app.formats.npm.records import AttachmentRow, PackageRows, VersionRow

# The fields of a version an installer reads (npm's registry "corgi" documents).
CORGI_FIELDS = (
    "name", "version", "deprecated", "dependencies", "optionalDependencies",
    "devDependencies", "bundleDependencies", "bundledDependencies", "peerDependencies",
    "peerDependenciesMeta", "acceptDependencies", "bin", "directories", "dist", "engines",
    "cpu", "os", "libc", "_hasShrinkwrap", "hasInstallScript", "funding", "license",
)  # fmt: skip
_INSTALL_SCRIPTS = ("preinstall", "install", "postinstall")
PROVENANCE = "https://slsa.dev/provenance/v1"


def iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def revision(rows: PackageRows) -> str:
    """The ``_rev`` npm sends back on a read-modify-write: ``<serial>-<hash>``, CouchDB's
    shape; the serial is what a write checks."""
    digest = hashlib.sha256(f"{rows.id}:{rows.serial}".encode()).hexdigest()[:32]
    return f"{rows.serial}-{digest}"


def revision_serial(rev: str) -> int | None:
    number, _, _ = rev.partition("-")
    return int(number) if number.isdigit() and len(number) < 19 else None


def tarball_name(package: str, version: str) -> str:
    """The tarball's file name in its URL: the unscoped name, as registry.npmjs.org has it."""
    return f"{package.rpartition('/')[2]}-{version}.tgz"


def manifest(
    rows: PackageRows, row: VersionRow, base: str, attachments: list[AttachmentRow]
) -> dict[str, Any]:
    """One version's manifest as served, its URLs under ``base`` (the repository's URL)."""
    document: dict[str, Any] = json.loads(row.manifest)
    dist = dict(document.get("dist") or {})
    dist["tarball"] = f"{base}/{rows.name}/-/{tarball_name(rows.name, row.version)}"
    for attachment in attachments:
        if attachment.version == row.version and attachment.filename.endswith(".sigstore"):
            dist["attestations"] = {
                "url": f"{base}/-/npm/v1/attestations/{rows.name}@{row.version}",
                "provenance": {"predicateType": attachment.predicate_type or PROVENANCE},
            }
    document["dist"] = dist
    if row.deprecated:
        document["deprecated"] = row.deprecated
    return document


def full(rows: PackageRows, base: str) -> dict[str, Any]:
    published = rows.published()
    versions = {v.version: manifest(rows, v, base, rows.attachments) for v in published}
    times = {"created": iso(rows.created_at), "modified": iso(rows.modified_at)}
    times |= {v.version: iso(v.published_at) for v in published}
    document: dict[str, Any] = {
        "_id": rows.name,
        "_rev": revision(rows),
        "name": rows.name,
        "dist-tags": _tags(rows, versions),
        "versions": versions,
        "time": times,
    }
    latest = versions.get(document["dist-tags"].get("latest", ""))
    if latest is not None:
        for key in ("description", "readme", "license", "homepage", "repository", "keywords"):
            if key in latest:
                document[key] = latest[key]
    return document


def abbreviated(rows: PackageRows, base: str) -> dict[str, Any]:
    versions = {}
    for row in rows.published():
        whole = manifest(rows, row, base, rows.attachments)
        corgi = {k: whole[k] for k in CORGI_FIELDS if k in whole}
        scripts = whole.get("scripts")
        if isinstance(scripts, dict) and any(s in scripts for s in _INSTALL_SCRIPTS):
            corgi["hasInstallScript"] = True
        versions[row.version] = corgi
    return {
        "name": rows.name,
        "modified": iso(rows.modified_at),
        "dist-tags": _tags(rows, versions),
        "versions": versions,
    }


def _tags(rows: PackageRows, versions: dict[str, Any]) -> dict[str, str]:
    return {tag: version for tag, version in rows.tags.items() if version in versions}


def dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
