"""The simple index of a PyPI local repository, generated from its rows.

A project page (PEP 503 HTML or PEP 691 JSON, with PEP 592 yanks, PEP 658/714 core
metadata and PEP 700 sizes, upload times and versions) is rendered by the same code
as a remote's (:mod:`simple`), and kept in the process's renderings under the
project's ``serial``. Every change bumps that serial in the database, so the one
query a warm page costs, reading it, is also what makes a change on any replica
seen on every replica's next request. The project list goes by the repository's
serial the same way.
"""

from __future__ import annotations

import datetime as dt

from packaging.version import InvalidVersion, Version

from app.formats.api import Rendering, Renderings, Repository, rendering
from app.formats.pypi import simple
from app.formats.pypi.records import FileRow, PypiRecords


def _sort_key(text: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(text))
    except InvalidVersion:  # rows hold normalised versions; never, but never a 500
        return (0, text)


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")[:-6] + "Z"


def dist_file(file: FileRow) -> simple.DistFile:
    yanked: bool | str = False
    if file.yanked_reason is not None:
        yanked = file.yanked_reason or True
    core: bool | dict[str, str] = False
    if file.metadata_digest:
        core = {"sha256": file.metadata_digest.removeprefix("sha256:")}
    return simple.DistFile(
        filename=file.filename,
        url=file.filename,  # rendered relative to the page (simple.file_href)
        hashes={"sha256": file.blob_digest.removeprefix("sha256:")},
        requires_python=file.requires_python,
        yanked=yanked,
        core_metadata=core,
        size=file.size,
        upload_time=iso(file.uploaded_at),
    )


class LocalIndex:
    def __init__(self, records: PypiRecords, renderings: Renderings) -> None:
        self.records, self.renderings = records, renderings

    async def page(self, repo: Repository, project: str, as_json: bool) -> Rendering | None:
        """The page of ``project`` (normalised); None if the repository has none."""
        serial = await self.records.serial(repo.id, project)
        if serial is None:
            return None
        key = ("pypi-local-page", repo.id, project, serial, as_json)
        kept = self.renderings.get(key)
        if kept is not None:
            return kept
        files = await self.records.files(repo.id, project)
        versions = sorted({file.version for file in files}, key=_sort_key)
        page = simple.Page(project, [dist_file(f) for f in files], versions=tuple(versions))
        body = simple.render_json(page, project) if as_json else simple.render_html(page, project)
        return self.renderings.put(key, rendering(body))

    async def projects(self, repo: Repository, as_json: bool) -> Rendering:
        serial = await self.records.repository_serial(repo.id)
        key = ("pypi-local-list", repo.id, serial, as_json)
        kept = self.renderings.get(key)
        if kept is not None:
            return kept
        names = [project.display_name for project in await self.records.projects(repo.id)]
        render = simple.render_projects_json if as_json else simple.render_projects_html
        return self.renderings.put(key, rendering(render(names)))
