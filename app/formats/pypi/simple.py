"""PyPI "simple" project pages: parsed from the upstream, rendered for our clients.

Both forms are read: PEP 691 JSON and PEP 503 HTML (with the PEP 592 ``yanked``,
PEP 503 ``requires-python`` and PEP 658/714 ``core-metadata`` additions). The
upstream is never trusted: the page is size-capped by the caller, and a file whose
name could escape its folder or whose URL is not http(s) is dropped, so whatever we
record as a link can only ever make us fetch an http(s) URL the upstream published.

Nor is every 200 a page: a proxy or SSO gateway in front of an index answers a login
page when its session is gone. What the upstream sent is the page (or list) asked
for only if it says so in a way every real index (pypi.org, devpi, Artifactory,
Nexus, bandersnatch) does and a login or error page does not; see :func:`check_page`
and :func:`check_projects`.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import islice
from typing import Any
from urllib.parse import quote, urldefrag, urljoin

from app.formats.api import ALGORITHMS

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# What we ask the upstream for: JSON parses more reliably than HTML.
UPSTREAM_ACCEPT = f"{JSON_TYPE}, text/html;q=0.1"
API_VERSION = "1.1"

_SEPARATORS = re.compile(r"[-_.]+")
_ANCHOR_TEXT = re.compile(r"<a\b[^>]*>([^<]*)</a\s*>", re.IGNORECASE)
_ANCHOR = re.compile(r"<a\b([^>]*)>([^<]*)</a\s*>", re.IGNORECASE)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_VERSION_META = re.compile(
    r"""<meta\b[^>]*\bname\s*=\s*["']?pypi:repository-version\b[^>]*>""", re.IGNORECASE
)
_CONTENT = re.compile(r"""\bcontent\s*=\s*["']?([^"'\s>]*)""", re.IGNORECASE)
_LINKS_FOR = re.compile(r"links for\s+(\S+)\s*$", re.IGNORECASE)
HEAD_BYTES = 64 * 1024  # where a list's <meta> is looked for: its head, not 40 MB
LIST_SAMPLE = 100  # a list without one is judged by this many of its first anchors
_VALID_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
# Already-encoded URLs stay as they are; only what cannot appear raw gets quoted.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
# Strongest first: the one a file is verified against.
_PREFERENCE = ("sha256", "sha512", "sha1", "md5")


def normalize(name: str) -> str:
    """PEP 503's normalised project name."""
    return _SEPARATORS.sub("-", name).lower()


def valid_project(name: str) -> bool:
    # ASCII first: under IGNORECASE, [A-Z] also matches look-alikes (the dotless i U+0131,
    # the long s U+017F, the Kelvin sign), names no index has, which would slip past a guard
    # keyed by the ASCII spelling.
    return name.isascii() and bool(_VALID_NAME.match(name)) and len(name) <= 200


def published(upload_time: str | None) -> float | None:
    """A PEP 700 ``upload-time`` as epoch seconds; None when absent or unreadable."""
    if not upload_time:
        return None
    try:
        when = dt.datetime.fromisoformat(upload_time)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # PEP 700: always UTC
    return when.timestamp()


def safe_filename(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and ".." not in name


@dataclass(frozen=True, slots=True)
class DistFile:
    filename: str
    url: str  # absolute http(s), percent-encoded, without a fragment
    hashes: dict[str, str] = field(default_factory=dict)  # algorithm -> lowercase hex
    requires_python: str | None = None
    yanked: bool | str = False  # a string is the reason (and means yanked)
    core_metadata: bool | dict[str, str] = False  # True, or the metadata file's hashes
    size: int | None = None  # PEP 700, for the files we keep
    upload_time: str | None = None  # PEP 700: ISO 8601, UTC, "Z"

    @property
    def digest(self) -> str | None:
        """The published checksum a download is verified against, as ``algo:hex``."""
        return _best(self.hashes)


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    files: list[DistFile]
    # What the upstream said the page is, for check_page: PEP 629's <meta> or PEP
    # 691's meta.api-version; JSON's own name; HTML's <title> and <h1> text.
    api_version: str | None = None
    declared: str | None = None
    headings: tuple[str, ...] = ()
    versions: tuple[str, ...] | None = None  # PEP 700, for the projects we keep


def _best(hashes: Mapping[str, str]) -> str | None:
    for algorithm in _PREFERENCE:
        if algorithm in hashes:
            return f"{algorithm}:{hashes[algorithm]}"
    return None


def _clean_hashes(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    hashes: dict[str, str] = {}
    for algorithm, value in raw.items():
        if algorithm not in ALGORITHMS or not isinstance(value, str):
            continue
        value = value.lower()
        if len(value) == ALGORITHMS[algorithm] and all(c in "0123456789abcdef" for c in value):
            hashes[algorithm] = value
    return hashes


def _hash_pair(text: str) -> dict[str, str]:
    """``sha256=abc…`` (an HTML fragment or ``data-core-metadata``) as a hash dict."""
    algorithm, sep, value = text.partition("=")
    return _clean_hashes({algorithm: value}) if sep else {}


def _absolute(base: str, href: str) -> str | None:
    url, _ = urldefrag(urljoin(base, href.strip()))
    if not url.startswith(("http://", "https://")):
        return None
    return quote(url, safe=_URL_SAFE)


def _core_metadata(value: object) -> bool | dict[str, str]:
    if isinstance(value, dict):
        return _clean_hashes(value) or True
    return value is True


def _file(
    filename: object,
    url: str | None,
    hashes: dict[str, str],
    requires_python: object,
    yanked: object,
    core: bool | dict[str, str],
    size: object = None,
    upload_time: object = None,
) -> DistFile | None:
    if not isinstance(filename, str) or not safe_filename(filename) or url is None:
        return None
    if not isinstance(yanked, (bool, str)):
        yanked = False
    python = requires_python if isinstance(requires_python, str) and requires_python else None
    # PEP 700's size and upload-time: kept only when well-formed (the cooldown reads the
    # time; an unreadable one is an unknown one).
    length = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    uploaded = (
        upload_time if isinstance(upload_time, str) and published(upload_time) is not None else None
    )
    return DistFile(filename, url, hashes, python, yanked, core, length, uploaded)


def parse_json(body: bytes, base: str, name: str) -> Page:
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        raise ValueError("not a PEP 691 project page")
    files = []
    for raw in document["files"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
            continue
        # PEP 714 renamed dist-info-metadata; old servers still send only that.
        core = raw.get("core-metadata", raw.get("dist-info-metadata", False))
        entry = _file(
            raw.get("filename"),
            _absolute(base, raw["url"]),
            _clean_hashes(raw.get("hashes")),
            raw.get("requires-python"),
            raw.get("yanked", False),
            _core_metadata(core),
            raw.get("size"),
            raw.get("upload-time"),
        )
        if entry is not None:
            files.append(entry)
    meta = document.get("meta")
    version = meta.get("api-version") if isinstance(meta, dict) else None
    declared = document.get("name")
    versions = document.get("versions")
    listed = None
    if isinstance(versions, list) and all(isinstance(v, str) for v in versions):
        listed = tuple(versions)
    return Page(
        name,
        files,
        version if isinstance(version, str) else None,
        declared if isinstance(declared, str) else "",
        versions=listed,
    )


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.base: str | None = None
        self.version: str | None = None
        self.headings: list[str] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self._open, self._text = dict(attrs), []
        elif tag == "meta":
            named = dict(attrs)
            if named.get("name") == "pypi:repository-version" and self.version is None:
                self.version = named.get("content") or ""
        elif tag in ("title", "h1"):
            self._heading = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None
        elif tag in ("title", "h1") and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None


def parse_html(body: bytes, base: str, name: str) -> Page:
    parser = _Anchors()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    if parser.base:
        base = urljoin(base, parser.base)
    files = []
    for attrs, text in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        _, fragment = urldefrag(href)
        core_attr = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        core: bool | dict[str, str] = False
        if core_attr is not None:
            core = _hash_pair(core_attr) or core_attr.strip().lower() == "true"
        yanked: bool | str = False
        if "data-yanked" in attrs:
            yanked = attrs["data-yanked"] or True
        entry = _file(
            text, _absolute(base, href), _hash_pair(fragment), attrs.get("data-requires-python"),
            yanked, core,
        )  # fmt: skip
        if entry is not None:
            files.append(entry)
    return Page(name, files, parser.version, None, tuple(parser.headings))


def parse(body: bytes, content_type: str, base: str, name: str) -> Page:
    """The upstream's page in whichever form it answered."""
    if "json" in content_type.split(";")[0].lower():
        return parse_json(body, base, name)
    return parse_html(body, base, name)


def _supported(version: str) -> bool:
    # PEP 629: a client refuses a major version it does not know; minor ones it reads.
    return version.split(".")[0].strip() == "1"


def check_page(page: Page, project: str) -> None:
    """Raise ValueError unless ``page`` is a simple page for ``project``.

    JSON (PEP 691) must carry ``meta.api-version`` 1.x and ``name`` normalising to
    ``project`` (``files`` a list: :func:`parse_json` sees to that). HTML must either
    declare the API version (PEP 629's ``<meta name="pypi:repository-version">``,
    1.x), or be titled "Links for <project>", or link at least one distribution of
    the project (an anchor whose text is ``<project>-<version>…``). A login page does
    none of these; an empty page of a project with no files still has the first two.
    """
    if page.declared is not None:  # JSON
        if page.api_version is None or not _supported(page.api_version):
            raise ValueError(f"not a simple page: api-version {page.api_version!r}")
        if normalize(page.declared) != project:
            raise ValueError(f"the simple page of {page.declared[:200]!r}, not of {project}")
        return
    if page.api_version is not None:
        if not _supported(page.api_version):
            raise ValueError(f"simple API version {page.api_version[:20]!r} is not supported")
        return
    for heading in page.headings:
        titled = _LINKS_FOR.search(heading)
        if titled and normalize(titled.group(1)) == project:
            return
    distribution = re.compile(rf"^{re.escape(project)}-v?[0-9]")
    if any(distribution.match(normalize(file.filename)) for file in page.files):
        return
    raise ValueError(f"not a simple page for {project}: no API version, title or file of it")


def _project_link(attributes: str, name: str) -> bool:
    """Whether an anchor of a list links to the page of the project it names (PEP 503:
    ``…/<name>/``, the name normalised or not)."""
    href = _HREF.search(attributes)
    if href is None:
        return False
    url = html.unescape(next(g for g in href.groups() if g is not None))
    path = urldefrag(url)[0].split("?")[0]
    return path.endswith("/") and normalize(path.rstrip("/").rpartition("/")[2]) == name


def _check_list(text: str) -> None:
    """Raise ValueError unless the HTML ``text`` is a project list: it declares the API
    version in a ``<meta>`` (1.x), or most of its first anchors link to the page of the
    project they name (``<a href="…/foo-bar/">Foo.Bar</a>``), as every list does and a
    login page does not."""
    meta = _VERSION_META.search(text, 0, HEAD_BYTES)
    if meta is not None:
        version = _CONTENT.search(meta.group(0))
        if version is None or not _supported(version.group(1)):
            raise ValueError("simple API version of the project list is not supported")
        return
    anchors = list(islice(_ANCHOR.finditer(text), LIST_SAMPLE))
    linked = sum(
        1
        for anchor in anchors
        if _project_link(anchor.group(1), normalize(html.unescape(anchor.group(2).strip())))
    )
    if not anchors or 2 * linked <= len(anchors):
        raise ValueError("not a simple project list: no API version, few project links")


def parse_projects(body: bytes, content_type: str, checked: bool = False) -> list[str]:
    """The project names an index's root page lists (PEP 691 ``projects``, or the PEP
    503 anchors' text), in its order; names no project could have are dropped.

    ``checked``: raise ValueError unless the body is a project list at all: JSON must
    carry ``meta.api-version`` 1.x (and ``projects``, always), HTML see
    :func:`_check_list`.
    """
    names: list[object]
    if "json" in content_type.split(";")[0].lower():
        document = json.loads(body)
        projects = document.get("projects") if isinstance(document, dict) else None
        if not isinstance(projects, list):
            raise ValueError("no project list")
        if checked:
            meta = document.get("meta")
            version = meta.get("api-version") if isinstance(meta, dict) else None
            if not isinstance(version, str) or not _supported(version):
                raise ValueError(f"not a simple project list: api-version {version!r}")
        names = [p.get("name") for p in projects if isinstance(p, dict)]
    else:
        text = body.decode("utf-8", errors="replace")
        if checked:
            _check_list(text)
        # A regex, not the HTML parser project pages get: pypi.org's list is 40 MB, which
        # HTMLParser takes seconds over. Only the anchors' text is wanted.
        names = [html.unescape(name.strip()) for name in _ANCHOR_TEXT.findall(text)]
    return [n for n in names if isinstance(n, str) and valid_project(n)]


# -- rendering ----------------------------------------------------------------------


def wants_json(accept: str) -> bool:
    """PEP 691 content negotiation, reduced to the two forms we serve."""
    best_json = best_html = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if media == JSON_TYPE or media == "application/vnd.pypi.simple.latest+json":
            best_json = max(best_json, quality)
        elif media in (HTML_TYPE, "application/vnd.pypi.simple.latest+html", "text/html", "*/*"):
            best_html = max(best_html, quality)
    return best_json > 0 and best_json >= best_html


def _fragment(file: DistFile) -> str:
    digest = file.digest
    return "#" + digest.replace(":", "=", 1) if digest else ""


def _core_value(core: bool | dict[str, str]) -> str:
    if isinstance(core, dict):
        return (_best(core) or "").replace(":", "=", 1) or "true"
    return "true"


def file_href(file: DistFile, project: str) -> str:
    """Our URL for a file, relative to the project page ``…/simple/<project>/``."""
    return f"../../files/{project}/{quote(file.filename)}{_fragment(file)}"


def render_json(page: Page, project: str) -> bytes:
    files: list[dict[str, Any]] = []
    for file in page.files:
        entry: dict[str, Any] = {
            "filename": file.filename,
            "url": file_href(file, project),
            "hashes": file.hashes,
        }
        if file.requires_python is not None:
            entry["requires-python"] = file.requires_python
        if file.yanked:
            entry["yanked"] = file.yanked
        if file.core_metadata:
            core = file.core_metadata if isinstance(file.core_metadata, dict) else True
            entry["core-metadata"] = core
            entry["dist-info-metadata"] = core  # for clients older than PEP 714
        if file.size is not None:
            entry["size"] = file.size
        if file.upload_time is not None:
            entry["upload-time"] = file.upload_time
        files.append(entry)
    # PEP 700's 1.1 promises every file's size and the versions: a page relayed from an
    # upstream that gave neither is the 1.0 it was.
    complete = page.versions is not None and all(f.size is not None for f in page.files)
    api_version = API_VERSION if complete else "1.0"
    document: dict[str, Any] = {"meta": {"api-version": api_version}, "name": page.name}
    if page.versions is not None:
        document["versions"] = list(page.versions)
    document["files"] = files
    return json.dumps(document).encode()


def render_html(page: Page, project: str) -> bytes:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta name="pypi:repository-version" content="{API_VERSION}">',
        f"<title>Links for {html.escape(page.name)}</title>",
        "</head>",
        "<body>",
        f"<h1>Links for {html.escape(page.name)}</h1>",
    ]
    for file in page.files:
        attrs = [f'href="{html.escape(file_href(file, project))}"']
        if file.requires_python is not None:
            attrs.append(f'data-requires-python="{html.escape(file.requires_python)}"')
        if file.yanked:
            reason = file.yanked if isinstance(file.yanked, str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if file.core_metadata:
            value = html.escape(_core_value(file.core_metadata))
            attrs.append(f'data-core-metadata="{value}"')
            attrs.append(f'data-dist-info-metadata="{value}"')
        lines.append(f"<a {' '.join(attrs)}>{html.escape(file.filename)}</a><br>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()


def render_projects_json(names: list[str]) -> bytes:
    projects = [{"name": name} for name in names]
    return json.dumps({"meta": {"api-version": API_VERSION}, "projects": projects}).encode()


def render_projects_html(names: list[str]) -> bytes:
    """Links relative to ``…/simple/``: an upstream's own (``/simple/x/`` on pypi.org)
    would lead clients off this repository. Valid names need no escaping."""
    head = (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'
        "<title>Simple index</title>\n</head>\n<body>\n"
    )
    anchors = "".join(f'<a href="{normalize(name)}/">{name}</a>\n' for name in names)
    return f"{head}{anchors}</body>\n</html>\n".encode()
