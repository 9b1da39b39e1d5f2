"""npm package names and tarball file names, checked before they reach a cache key,
a database row or an upstream URL.

A request path under a repository is one of::

    <name>                     the packument (document) of a package
    @<scope>/<name>            the same for a scoped package (npm sends @scope%2fname)
    <package>/<version|tag>    one version's document (npm view, older clients)
    <package>/-/<file>.tgz     a tarball the packument lists
    -/<endpoint>               the registry's own endpoints (ping, dist-tags, search, audit)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.formats.api import BadRequest, NotFound

MAX_NAME_LENGTH = 214  # npm's own limit, scope included
# What encodeURIComponent leaves alone, less the quote and punctuation no real
# package uses: a name that needs escaping is not a name npm publishes. Upper case
# is allowed: it is only refused for new packages, old ones still have it.
_SEGMENT = re.compile(r"^[A-Za-z0-9~-][A-Za-z0-9._~-]*$")
# What npm lets a new package be called (validate-npm-package-name's rules for new
# packages): lower case, URL-safe, no leading dot or underscore, none of ~'!()*.
_NEW_SEGMENT = re.compile(r"^[a-z0-9-][a-z0-9._-]*$")
_RESERVED = frozenset({"node_modules", "favicon.ico"})
# Node's core modules (require("module").builtinModules, Node 20): an unscoped package of
# that name would be shadowed by the core one, so npm refuses it for new packages.
# fmt: off
_CORE_MODULES = frozenset({
    "assert", "async_hooks", "buffer", "child_process", "cluster", "console", "constants",
    "crypto", "dgram", "diagnostics_channel", "dns", "domain", "events", "fs", "http", "http2",
    "https", "inspector", "module", "net", "os", "path", "perf_hooks", "process", "punycode",
    "querystring", "readline", "repl", "stream", "string_decoder", "sys", "timers", "tls",
    "trace_events", "tty", "url", "util", "v8", "vm", "wasi", "worker_threads", "zlib",
})
# fmt: on
_TARBALL = re.compile(r"^[A-Za-z0-9~-][A-Za-z0-9._~+-]{0,250}\.tgz$")
# A version ("1.0.0-rc.1+build") or a dist-tag ("latest", "next"): what npm publishes.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


@dataclass(frozen=True, slots=True)
class Target:
    package: str  # "demo" or "@acme/util"
    tarball: str | None = None  # "util-1.0.0.tgz" for a tarball, None for the packument
    version: str | None = None  # a version or dist-tag, for one version's document

    @property
    def upstream_name(self) -> str:
        """The package as the registry API spells it in a URL: the scope's slash escaped."""
        return self.package.replace("/", "%2f", 1)

    @property
    def unscoped(self) -> str:
        return self.package.rpartition("/")[2]


def check_package(name: str) -> str:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"invalid package name: must be 1 to {MAX_NAME_LENGTH} characters")
    if ".." in name:
        raise BadRequest("invalid package name: '..'")
    if name.startswith("@"):
        scope, slash, rest = name[1:].partition("/")
        parts = [scope, rest] if slash else []
    else:
        parts = [name]
    # Names starting with "." or "_" are reserved by npm (and "." would be a path).
    if not parts or not all(_SEGMENT.match(p) for p in parts):
        raise BadRequest(f"invalid package name {name[:MAX_NAME_LENGTH]!r}")
    return name


def check_new_package(name: str) -> str:
    """``name`` if npm lets a new package have it (publishing), else :class:`BadRequest`
    with npm's own reason."""
    check_package(name)
    parts = name[1:].split("/", 1) if name.startswith("@") else [name]
    if name.lower() in _RESERVED or parts[-1] in _RESERVED:
        raise BadRequest(f"invalid package name {name!r}: {parts[-1]} is not a valid package name")
    if name in _CORE_MODULES:
        raise BadRequest(f"invalid package name {name!r}: {name} is a core module name")
    if name != name.lower():
        raise BadRequest(
            f"invalid package name {name!r}: name can no longer contain capital letters"
        )
    if not all(_NEW_SEGMENT.match(p) for p in parts):
        raise BadRequest(
            f"invalid package name {name!r}: name can only contain URL-friendly characters"
        )
    return name


def check_tarball(filename: str) -> str:
    if ".." in filename or not _TARBALL.match(filename):
        raise BadRequest(f"invalid tarball name {filename[:255]!r}")
    return filename


def check_version(text: str) -> str:
    if not _VERSION.match(text):
        raise BadRequest(f"invalid version or tag {text[:200]!r}")
    return text


def unescape_scope(path: str) -> str:
    """The scope's slash may arrive escaped, whether or not the router decoded it."""
    return re.sub(r"%2[fF]", "/", path, count=1) if path.startswith("@") else path


def parse_path(path: str) -> Target:
    """The package (and tarball or version) a request path names; 400 for a malformed
    name, 404 for a path the registry API has nothing at."""
    path = unescape_scope(path)
    if not path or path.startswith("-/") or path == "-":
        raise NotFound(f"{path or '/'} not found")
    package, sep, tail = path.partition("/-/")
    if sep:
        return Target(check_package(package), check_tarball(tail))
    parts = path.split("/")
    depth = 2 if path.startswith("@") else 1
    if len(parts) == depth:
        return Target(check_package(path))
    if len(parts) == depth + 1:
        return Target(check_package("/".join(parts[:depth])), version=check_version(parts[-1]))
    check_package("/".join(parts[:depth]))
    raise NotFound(f"{path} not found")


# semver 2.0.0, as npm's semver.valid accepts a cleaned version.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def _precedence(version: str) -> tuple[object, ...]:
    """semver's order: a release above its pre-releases, numeric identifiers below
    alphanumeric ones; anything not semver below everything."""
    match = SEMVER.match(version)
    if match is None:
        return (-1,)
    major, minor, patch, pre, _ = match.groups()
    identifiers = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in (pre or "").split(".")]
    return (int(major), int(minor), int(patch), pre is None, identifiers if pre else [])


def newest(versions: set[str]) -> str | None:
    """What ``latest`` falls back to: the highest release, else the highest version."""
    releases = [v for v in versions if (m := SEMVER.match(v)) and m.group(4) is None]
    pool = releases or list(versions)
    return max(pool, key=_precedence) if pool else None


def highest_at_most(versions: set[str], ceiling: str) -> str | None:
    """The highest of ``versions`` at or below ``ceiling`` in semver's order, as npm's
    ``<=ceiling`` range picks it: releases, and pre-releases only when the ceiling is a
    pre-release of the same major.minor.patch; None if there is none."""
    top = SEMVER.match(ceiling)
    if top is None:
        return None
    limit = _precedence(ceiling)

    def allowed(version: str) -> bool:
        match = SEMVER.match(version)
        if match is None or _precedence(version) > limit:
            return False
        if match.group(4) is None:
            return True
        return top.group(4) is not None and match.groups()[:3] == top.groups()[:3]

    pool = [v for v in versions if allowed(v)]
    return max(pool, key=_precedence) if pool else None
