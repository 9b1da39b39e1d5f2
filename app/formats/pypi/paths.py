"""The paths a PyPI repository answers, local or remote alike:

simple/                      → the project list
simple/<project>/            → a project's page (another spelling: 301 to the normalised one)
files/<project>/<filename>   → a file (and ``<filename>.metadata``, a wheel's METADATA)
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from app.formats.api import NotFound, Repository
from app.formats.pypi import simple


@dataclass(frozen=True, slots=True)
class ProjectList:
    pass


@dataclass(frozen=True, slots=True)
class ProjectPage:
    project: str  # normalised


@dataclass(frozen=True, slots=True)
class FileAt:
    project: str  # as the client wrote it: the handler checks it
    filename: str


Route = ProjectList | ProjectPage | FileAt | web.Response


def route(repo: Repository, path: str) -> Route:
    """What ``path`` asks for, or the redirect (a response) that answers it;
    :class:`NotFound` for anything else."""
    parts = path.split("/")
    if parts[0] == "simple":
        if len(parts) == 1:
            return redirect(repo, "simple/")
        if len(parts) == 2 and parts[1] == "":
            return ProjectList()
        if len(parts) == 2 or (len(parts) == 3 and parts[2] == ""):
            name = parts[1]
            if not simple.valid_project(name):
                raise NotFound(f"no project {name[:200]!r}")
            project = simple.normalize(name)
            if project != name or len(parts) == 2:
                return redirect(repo, f"simple/{project}/")
            return ProjectPage(project)
    elif parts[0] == "files" and len(parts) == 3:
        return FileAt(parts[1], parts[2])
    raise NotFound(f"{path[:200]} not found")


def redirect(repo: Repository, path: str) -> web.Response:
    # Returned, not raised: an aiohttp redirect raised would be rendered as an error.
    return web.Response(status=301, headers={"Location": f"/repository/{repo.name}/{path}"})
