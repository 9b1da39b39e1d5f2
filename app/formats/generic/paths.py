"""Validation of user-supplied file paths (already percent-decoded by aiohttp)."""

from __future__ import annotations

from app.formats.api import BadRequest

MAX_PATH = 1024
MAX_SEGMENT = 255


def file_path(path: str) -> str:
    """A path naming a file: non-empty, no trailing '/', every segment valid."""
    if not path or path.endswith("/"):
        raise BadRequest("a file path must not be empty or end with '/'")
    _check(path)
    return path


def folder_path(path: str) -> str:
    """A folder: "" for the root, else ``a/b/``."""
    if not path:
        return ""
    _check(path.rstrip("/"))
    return path.rstrip("/") + "/"


def _check(path: str) -> None:
    if len(path) > MAX_PATH:
        raise BadRequest(f"path longer than {MAX_PATH} characters")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise BadRequest("path segments must not be empty, '.' or '..'")
        if len(segment) > MAX_SEGMENT:
            raise BadRequest(f"path segment longer than {MAX_SEGMENT} characters")
        if any(ord(c) < 0x20 or c in "\\\x7f" for c in segment):
            raise BadRequest("path must not contain control characters or '\\'")
