"""PyPI "simple" project pages: parsed from the upstream, rendered for our clients.

Both forms are read: PEP 691 JSON and PEP 503 HTML (with the PEP 592 ``yanked``,
PEP 503 ``requires-python`` and PEP 658/714 ``core-metadata`` additions). The
upstream is never trusted: the page is size-capped by the caller, and a file whose
name could escape its folder or whose URL is not http(s) is dropped, so whatever we
record as a link can only ever make us fetch an http(s) URL the upstream published.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urldefrag, urljoin

from pipelines.digest import ALGORITHMS

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# What we ask the upstream for: JSON parses more reliably than HTML.
UPSTREAM_ACCEPT = f"{JSON_TYPE}, text/html;q=0.1"
API_VERSION = "1.1"

_SEPARATORS = re.compile(r"[-_.]+")
_ANCHOR_TEXT = re.compile(r"<a\b[^>]*>([^<]*)</a\s*>", re.IGNORECASE)
_VALID_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
# Already-encoded URLs stay as they are; only what cannot appear raw gets quoted.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
# Strongest first: the one a file is verified against.
_PREFERENCE = ("sha256", "sha512", "sha1", "md5")


def normalize(name: str) -> str:
    """PEP 503's normalised project name."""
    return _SEPARATORS.sub("-", name).lower()


def valid_project(name: str) -> bool:
    return bool(_VALID_NAME.match(name)) and len(name) <= 200


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

    @property
    def digest(self) -> str | None:
        """The published checksum a download is verified against, as ``algo:hex``."""
        return _best(self.hashes)


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    files: list[DistFile]


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
) -> DistFile | None:
    if not isinstance(filename, str) or not safe_filename(filename) or url is None:
        return None
    if not isinstance(yanked, (bool, str)):
        yanked = False
    python = requires_python if isinstance(requires_python, str) and requires_python else None
    return DistFile(filename, url, hashes, python, yanked, core)


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
        )
        if entry is not None:
            files.append(entry)
    return Page(name, files)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.base: str | None = None
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None


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
    return Page(name, files)


def parse(body: bytes, content_type: str, base: str, name: str) -> Page:
    """The upstream's page in whichever form it answered."""
    if "json" in content_type.split(";")[0].lower():
        return parse_json(body, base, name)
    return parse_html(body, base, name)


def parse_projects(body: bytes, content_type: str) -> list[str]:
    """The project names an index's root page lists (PEP 691 ``projects``, or the PEP
    503 anchors' text), in its order; names no project could have are dropped."""
    names: list[object]
    if "json" in content_type.split(";")[0].lower():
        document = json.loads(body)
        projects = document.get("projects") if isinstance(document, dict) else None
        if not isinstance(projects, list):
            raise ValueError("no project list")
        names = [p.get("name") for p in projects if isinstance(p, dict)]
    else:
        # A regex, not the HTML parser project pages get: pypi.org's list is 40 MB, which
        # HTMLParser takes seconds over. Only the anchors' text is wanted.
        text = body.decode("utf-8", errors="replace")
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
        files.append(entry)
    document = {"meta": {"api-version": API_VERSION}, "name": page.name, "files": files}
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
