"""A PyPI local repository's packages as the management API and the CLI see them:
projects, their versions and files; yank, unyank and delete of a file, a version or
a whole project. Straight over the rows, so the CLI needs no server: every change
bumps the serial the pages are cached by, and every replica follows at once."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from packaging.version import InvalidVersion, Version

from app.formats.api import NotFound, PackageChange, Repository
from app.formats.pypi import simple
from app.formats.pypi.index import iso
from app.formats.pypi.publish import LocalPypiOptions
from app.formats.pypi.records import FileRow, PypiRecords


def project_name(name: str) -> str:
    """``name`` normalised; :class:`NotFound` if no project could have it."""
    if not simple.valid_project(name):
        raise NotFound(f"no project {name[:200]!r}")
    return simple.normalize(name)


def version_name(text: str) -> str:
    try:
        return str(Version(text))
    except InvalidVersion:
        raise NotFound(f"no version {text[:100]!r}") from None


def describe_file(repo: Repository, file: FileRow) -> dict[str, Any]:
    url = f"/repository/{repo.name}/files/{file.project}/{quote(file.filename)}"
    described: dict[str, Any] = {
        "filename": file.filename,
        "filetype": file.filetype,
        "size": file.size,
        "sha256": file.blob_digest.removeprefix("sha256:"),
        "requires_python": file.requires_python,
        "yanked": file.yanked,
        "yanked_reason": file.yanked_reason,
        "uploaded_at": iso(file.uploaded_at),
        "url": url,
    }
    if file.metadata_digest:
        described["core_metadata_sha256"] = file.metadata_digest.removeprefix("sha256:")
    summary = file.fields.get("summary")
    if isinstance(summary, str):
        described["summary"] = summary
    return described


class Packages:
    def __init__(self, records: PypiRecords) -> None:
        self.records = records

    async def packages(self, repo: Repository, after: str, limit: int) -> list[dict[str, Any]]:
        projects = await self.records.projects(repo.id, after, limit)
        return [{"name": p.name, "display_name": p.display_name} for p in projects]

    async def package(self, repo: Repository, name: str) -> dict[str, Any]:
        project = await self.records.project(repo.id, project_name(name))
        if project is None:
            raise NotFound(f"no project {name[:200]!r} in {repo.name}")
        files = await self.records.files(repo.id, project.name, fields=True)
        versions: dict[str, list[FileRow]] = {}
        for file in files:
            versions.setdefault(file.version, []).append(file)
        ordered = sorted(versions.items(), key=lambda item: Version(item[0]))
        return {
            "name": project.name,
            "display_name": project.display_name,
            "versions": [
                {
                    "version": version,
                    "yanked": all(f.yanked for f in rows),
                    "files": [describe_file(repo, f) for f in rows],
                }
                for version, rows in ordered
            ],
        }

    async def change(
        self, repo: Repository[LocalPypiOptions], change: PackageChange
    ) -> dict[str, Any]:
        project = project_name(change.package)
        version = version_name(change.version) if change.version is not None else None
        if change.operation == "delete":
            reserve = repo.options.reserve_deleted
            count = await self.records.delete(repo.id, project, version, change.file, reserve)
        else:
            reason = (change.reason or "") if change.operation == "yank" else None
            count = await self.records.yank(repo.id, project, version, change.file, reason)
        if count == 0:
            named = " ".join(p for p in (project, version, change.file) if p)
            raise NotFound(f"nothing matches {named[:300]} in {repo.name}")
        try:
            return await self.package(repo, project)
        except NotFound:
            return {}  # the last file went, and the project with it
