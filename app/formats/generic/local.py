"""Local generic repositories: files pushed with PUT, each pointing at a CAS blob."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from app.formats.api import (
    Blob,
    Conflict,
    ContentStore,
    Digest,
    MethodNotAllowed,
    NotFound,
    Repository,
)
from app.formats.generic.records import FileRecords, FileRow, FolderEntry


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # May a PUT replace an existing file with different content?
    overwrite: bool = True
    # May files be deleted?
    delete: bool = True


# Types that say nothing about a file: curl's default for --data-binary, and the
# generic binary type HTTP libraries send by default. The extension knows better.
_IGNORED_TYPES = {"", "application/x-www-form-urlencoded", "application/octet-stream"}


def content_type_for(path: str, declared: str | None) -> str:
    if declared and declared.split(";")[0].strip().lower() not in _IGNORED_TYPES:
        return declared
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Stored:
    file: FileRow
    blob: Blob
    created: bool


class LocalFiles:
    def __init__(self, cas: ContentStore, records: FileRecords) -> None:
        self.cas = cas
        self.records = records

    async def put(
        self,
        repo: Repository[LocalOptions],
        path: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str | None,
        expected: Digest | None,
        max_size: int,
    ) -> Stored:
        options = repo.options
        existing = await self.records.get_file(repo.id, path)
        # Fail before reading the body when the client told us the content.
        if (
            existing is not None
            and not options.overwrite
            and expected is not None
            and existing.blob_digest != str(expected)
        ):
            raise Conflict(f"{path} exists and repository {repo.name} forbids overwriting")
        blob = await self.cas.ingest(body, expected, max_size=max_size, algorithms=("sha1", "md5"))
        if existing is not None and not options.overwrite and existing.blob_digest != blob.digest:
            raise Conflict(f"{path} exists and repository {repo.name} forbids overwriting")
        created = await self.records.put_file(
            repo.id, path, blob.digest, blob.size, content_type_for(path, content_type)
        )
        row = await self.records.get_file(repo.id, path)
        assert row is not None
        return Stored(row, blob, created)

    async def get(self, repo: Repository, path: str) -> FileRow | None:
        return await self.records.get_file(repo.id, path)

    async def delete(self, repo: Repository[LocalOptions], path: str) -> None:
        if not repo.options.delete:
            raise MethodNotAllowed(f"repository {repo.name} does not allow deletes")
        if not await self.records.delete_file(repo.id, path):
            raise NotFound(f"{path} not found in {repo.name}")

    async def list(
        self, repo: Repository, folder: str, limit: int, after: str
    ) -> list[FolderEntry]:
        entries = await self.records.list_folder(repo.id, folder, limit, after)
        if (
            not entries
            and not after
            and folder
            and not await self.records.has_folder(repo.id, folder)
        ):
            raise NotFound(f"folder {folder} not found in {repo.name}")
        return entries
