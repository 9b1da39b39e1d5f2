"""A local package's packument, generated from its rows (:mod:`.records`).

Only published versions appear; staged ones wait for approval, unpublished ones are
tombstones. Each version's manifest is the one its publish sent, with what the registry
owns put in: the tarball URL (this repository's, built from the URL the client used),
the deprecation message, and ``dist.attestations`` where a provenance bundle came with
it (served at ``-/npm/v1/attestations/<name>@<version>`` as registry.npmjs.org does).
The abbreviated form ("corgi", what ``npm install`` asks for) keeps only the fields an
installer reads. Both forms of a version's manifest are stored as JSON text when it is
published (``dist`` apart, which holds the URL), so a packument is made by joining texts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from app.formats.npm.rows import PackageRows, VersionRow

# The fields of a version an installer reads (npm's registry "corgi" documents).
CORGI_FIELDS = (
    "name", "version", "deprecated", "dependencies", "optionalDependencies",
    "devDependencies", "bundleDependencies", "bundledDependencies", "peerDependencies",
    "peerDependenciesMeta", "acceptDependencies", "bin", "directories", "dist", "engines",
    "cpu", "os", "libc", "_hasShrinkwrap", "hasInstallScript", "funding", "license",
)  # fmt: skip
# Made once: json.dumps with options builds an encoder per call, a third of a render.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_string = json.encoder.encode_basestring  # a str as JSON, in C
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


def corgi(manifest: dict[str, Any]) -> dict[str, Any]:
    """The abbreviated form of a version's manifest (``dist`` apart): made once, when
    the version is published."""
    short = {k: manifest[k] for k in CORGI_FIELDS if k in manifest and k != "dist"}
    scripts = manifest.get("scripts")
    if isinstance(scripts, dict) and any(s in scripts for s in _INSTALL_SCRIPTS):
        short["hasInstallScript"] = True
    return short


def _fragment(rows: PackageRows, row: VersionRow, base: str, form: str) -> str:
    """One version's manifest as served, as JSON text: the stored text (``dist`` and
    ``deprecated`` apart) with the registry's parts spliced in, parsing nothing; a
    5,000-version packument is rendered by joining such fragments."""
    url = f"{base}/{rows.name}/-/{tarball_name(rows.name, row.version)}"
    dist = row.dist[:-1] + ("," if len(row.dist) > 2 else "") + '"tarball":' + _string(url)
    for attachment in rows.attachments:
        if attachment.version == row.version and attachment.filename.endswith(".sigstore"):
            attestations = {
                "url": f"{base}/-/npm/v1/attestations/{rows.name}@{row.version}",
                "provenance": {"predicateType": attachment.predicate_type or PROVENANCE},
            }
            dist += ',"attestations":' + text(attestations)
    stored = row.manifest if form == "full" else row.corgi
    inner = stored[1:-1]
    extra = ',"deprecated":' + _string(row.deprecated) if row.deprecated else ""
    return "{" + inner + ("," if inner else "") + '"dist":' + dist + "}" + extra + "}"


def manifest(rows: PackageRows, row: VersionRow, base: str) -> dict[str, Any]:
    """One version's manifest as served, its URLs under ``base`` (the repository's URL)."""
    document: dict[str, Any] = json.loads(_fragment(rows, row, base, "full"))
    return document


# A replica's fragments of each version, kept while the version's row is unchanged:
# version -> (base URL, form) -> JSON text (see mirror.py).
Fragments = dict[str, dict[tuple[str, str], str]]


def full(rows: PackageRows, base: str, kept: Fragments | None = None) -> bytes:
    published = rows.published()
    times = {"created": iso(rows.created_at), "modified": iso(rows.modified_at)}
    times |= {v.version: iso(v.published_at) for v in published}
    tags = _tags(rows)
    head: dict[str, Any] = {"_id": rows.name, "_rev": revision(rows), "name": rows.name}
    head["dist-tags"] = tags
    for row in published:
        if row.version == tags.get("latest"):
            latest = json.loads(row.manifest)
            for key in ("description", "readme", "license", "homepage", "repository", "keywords"):
                if key in latest:
                    head[key] = latest[key]
    return _joined(head, rows, base, "full", {"time": times}, kept)


def abbreviated(rows: PackageRows, base: str, kept: Fragments | None = None) -> bytes:
    head = {"name": rows.name, "modified": iso(rows.modified_at), "dist-tags": _tags(rows)}
    return _joined(head, rows, base, "abbreviated", {}, kept)


def _joined(
    head: dict[str, Any],
    rows: PackageRows,
    base: str,
    form: str,
    tail: dict[str, Any],
    kept: Fragments | None,
) -> bytes:
    def piece(row: VersionRow) -> str:
        mine = kept.setdefault(row.version, {}) if kept is not None else {}
        made = mine.get((base, form))
        if made is None:
            made = _string(row.version) + ":" + _fragment(rows, row, base, form)
            mine[(base, form)] = made
        return made

    versions = ",".join(piece(row) for row in rows.published())
    parts = [text(head)[:-1], ',"versions":{', versions, "}"]
    if tail:
        parts += [",", text(tail)[1:-1]]
    return ("".join(parts) + "}").encode()


def _tags(rows: PackageRows) -> dict[str, str]:
    published = {row.version for row in rows.published()}
    return {tag: version for tag, version in rows.tags.items() if version in published}


def text(value: object) -> str:
    """Compact JSON, UTF-8 left as it is: how every stored and served document is written."""
    return _ENCODER.encode(value)


def dumps(document: object) -> bytes:
    return text(document).encode()
