"""Packuments (npm package documents): parsed without trusting the upstream, their
tarballs' real URLs and checksums extracted, and rewritten to point at us.

Only ``versions[*].dist.tarball`` changes; ``dist-tags``, ``integrity`` and
``shasum`` go out exactly as the upstream published them, so the npm client still
verifies every tarball against the registry's own checksum.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from app.formats.api import BadGateway, BadRequest, Link
from app.formats.npm.names import Target, check_tarball

ABBREVIATED = "application/vnd.npm.install-v1+json"
# What npm itself sends when it wants the abbreviated document.
ACCEPT_ABBREVIATED = f"{ABBREVIATED}; q=1.0, application/json; q=0.8, */*"
ACCEPT_FULL = "application/json"
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_VERSION = re.compile(r"^[A-Za-z0-9._+-]{1,200}$")


def accepts_gzip(header: str | None) -> bool:
    """Whether ``Accept-Encoding`` takes gzip (q > 0)."""
    for part in (header or "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def wants_abbreviated(accept: str | None) -> bool:
    """Whether the client accepts the abbreviated ("corgi") form (q > 0)."""
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() != ABBREVIATED:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def parse(body: bytes, what: str) -> dict[str, Any]:
    """The packument as a JSON object; 502 for anything else the upstream sent."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadGateway(f"upstream sent an invalid packument for {what}") from exc
    if not isinstance(document, dict):
        raise BadGateway(f"upstream packument for {what} is not a JSON object")
    return document


def check(document: dict[str, Any], package: str) -> None:
    """502 unless ``document`` is the packument of ``package``: its ``name`` is the
    package (every registry writes it: npmjs, Verdaccio, Artifactory, Nexus) and its
    ``versions``, if any, an object. A gateway's JSON error or another package's
    document is not, and must not be cached as this one."""
    name = document.get("name")
    if name != package:
        shown = name[:214] if isinstance(name, str) else name
        raise BadGateway(f"upstream packument for {package} names {shown!r} instead")
    if "versions" in document and not isinstance(document["versions"], dict):
        raise BadGateway(f"upstream packument for {package} has no versions object")


def _versions(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(version, dist) for every version with a usable ``dist`` object."""
    versions = document.get("versions")
    if not isinstance(versions, dict):
        return []
    found = []
    for version, manifest in versions.items():
        if isinstance(manifest, dict) and isinstance(manifest.get("dist"), dict):
            found.append((version, manifest["dist"]))
    return found


def _digest(dist: dict[str, Any]) -> str | None:
    """The strongest published checksum as "sha512:<hex>" or "sha1:<hex>"."""
    integrity = dist.get("integrity")
    if isinstance(integrity, str):
        # Subresource Integrity: space-separated "<algo>-<base64>" options.
        for option in integrity.split():
            algorithm, _, encoded = option.partition("-")
            if algorithm != "sha512":
                continue
            try:
                raw = base64.b64decode(encoded.partition("?")[0], validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) == 64:
                return f"sha512:{raw.hex()}"
    shasum = dist.get("shasum")
    if isinstance(shasum, str) and _SHA1.match(shasum.lower()):
        return f"sha1:{shasum.lower()}"
    return None


def _filename(url: str, unscoped: str, version: str) -> str | None:
    """Our name for a tarball: the upstream's own file name when it is a sane one."""
    basename = urlsplit(url).path.rpartition("/")[2]
    for candidate in (basename, f"{unscoped}-{version}.tgz"):
        try:
            return check_tarball(candidate)
        except BadRequest:  # not a name we would serve
            continue
    return None


def _upstream_url(url: object) -> str | None:
    """An absolute http(s) URL, encoded the way the upstream client will send it."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 4096:
        return None
    try:
        parsed = URL(url)
    except ValueError:
        return None
    return str(parsed) if parsed.host else None


def links(document: dict[str, Any], target: Target) -> list[Link]:
    """Every tarball the packument lists, under the path we serve it at."""
    found: dict[str, Link] = {}
    for version, dist in _versions(document):
        url = _upstream_url(dist.get("tarball"))
        if url is None or not _VERSION.match(version):
            continue
        filename = _filename(url, target.unscoped, version)
        if filename is not None:
            path = f"{target.package}/-/{filename}"
            found[path] = Link(path=path, url=url, digest=_digest(dist))
    return list(found.values())


def rewrite(document: dict[str, Any], target: Target, base: str) -> dict[str, Any]:
    """The packument with its tarball URLs under ``base`` (our repository's URL).

    Versions whose tarball we would not serve keep no tarball URL at all, rather than
    one that sends the client around the cache.
    """
    for version, dist in _versions(document):
        url = _upstream_url(dist.get("tarball"))
        filename = _filename(url, target.unscoped, version) if url else None
        if filename is None or not _VERSION.match(version):
            dist.pop("tarball", None)
        else:
            dist["tarball"] = f"{base}/{target.package}/-/{filename}"
    return document


def version_document(document: dict[str, Any], wanted: str) -> dict[str, Any] | None:
    """One version's manifest, by version or by dist-tag, as the registry's
    ``/<package>/<version>`` answers it; None if there is no such version."""
    versions = document.get("versions")
    if not isinstance(versions, dict):
        return None
    tags = document.get("dist-tags")
    if wanted not in versions and isinstance(tags, dict) and isinstance(tags.get(wanted), str):
        wanted = tags[wanted]
    manifest = versions.get(wanted)
    return manifest if isinstance(manifest, dict) else None


def dist_tags(document: dict[str, Any]) -> dict[str, str]:
    tags = document.get("dist-tags")
    if not isinstance(tags, dict):
        return {}
    return {k: v for k, v in tags.items() if isinstance(k, str) and isinstance(v, str)}
