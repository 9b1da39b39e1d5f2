"""Folder listings as a virtual generic repository merges them: a local member's rows
and a remote member's folder page (artifactapi's JSON, or an HTML autoindex) as
entries whose ``uri`` points back through the virtual."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import quote, unquote

from app.formats.api import Repository
from app.formats.generic.records import FolderEntry
from app.formats.generic.shapes import iso


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # as a local listing sorts it: "name" or "name/"
    body: dict[str, Any]


class Listed(list[Entry]):
    """A remote member's folder listing, and how the core answered for it."""

    def __init__(self, entries: list[Entry], how: str) -> None:
        super().__init__(entries)
        self.how = how


def uri(repo: Repository, path: str) -> str:
    return f"/repository/{repo.name}/{quote(path)}"


def local_entry(virtual: Repository, member: Repository, folder: str, e: FolderEntry) -> Entry:
    if e.folder:
        body: dict[str, Any] = {"name": e.name, "type": "folder"}
        body["uri"] = uri(virtual, folder + e.name + "/")
    else:
        f = e.file
        assert f is not None
        body = {
            "name": e.name,
            "type": "file",
            "repository": member.name,
            "path": f.path,
            "size": f.size,
            "sha256": f.blob_digest.removeprefix("sha256:"),
            "uri": uri(virtual, f.path),
            "content_type": f.content_type,
            "modified": iso(f.updated_at),
        }
    body["member"] = member.name
    return Entry(e.key, body)


# An autoindex's links (nginx, Apache, python -m http.server): relative, one segment.
_HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*["']([^"'?#]+)["']""", re.IGNORECASE)


def remote_entries(
    virtual: Repository, member: Repository, folder: str, page: bytes, after: str
) -> list[Entry]:
    """A remote member's folder page as entries: artifactapi's own JSON listing, or the
    links of an HTML autoindex. Names a path could not hold are dropped."""
    names: list[tuple[str, bool, dict[str, Any]]] = []
    try:
        document = json.loads(page)
        children = document.get("children") if isinstance(document, dict) else None
    except ValueError:
        children = None
    if isinstance(children, list):
        for child in children:
            if isinstance(child, dict) and isinstance(child.get("name"), str):
                extra = {k: child[k] for k in ("size", "sha256", "content_type") if k in child}
                names.append((child["name"], child.get("type") == "folder", extra))
    else:
        for href in _HREF.findall(page.decode("utf-8", "replace")):
            name = unquote(unescape(href))
            is_folder = name.endswith("/")
            names.append((name.rstrip("/"), is_folder, {}))
    entries = []
    for name, is_folder, extra in names:
        if not name or "/" in name or name in (".", "..") or not name.isprintable():
            continue
        key = name + "/" if is_folder else name
        if key <= after:
            continue
        path = folder + key
        body = {"name": name, "type": "folder" if is_folder else "file", **extra}
        if not is_folder:
            body["path"] = path
        body |= {"uri": uri(virtual, path), "member": member.name}
        entries.append(Entry(key, body))
    return entries
