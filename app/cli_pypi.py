"""``artifactapi pypi yank | unyank | delete …``: a PyPI local repository's files, straight
against the configured database (what ``/api/v1/repositories/<name>/packages`` does over
HTTP). Every change bumps the serial the servers cache pages by, so each replica serves
the change on its next request; nothing needs restarting. The package as it is
afterwards is printed as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from app.backends.metadata import open_metadata
from app.config import Config
from app.errors import ApiError
from app.formats import available_formats, migrations, validate_repositories
from app.formats.base import PackageChange
from app.formats.pypi.manage import Packages
from app.formats.pypi.publish import LocalPypiOptions
from app.formats.pypi.records import PypiRecords
from app.repositories import Repositories

COMMANDS = ("pypi",)


def add_commands(command: Callable[..., argparse.ArgumentParser], commands: Any) -> None:
    pypi = command(commands, "pypi", "a PyPI local repository's files: yank, unyank, delete")
    actions = pypi.add_subparsers(dest="action", metavar="ACTION")
    yank = command(actions, "yank", "yank a release (or one --file of it): installers skip it")
    unyank = command(actions, "unyank", "take a yank back")
    for parser in (yank, unyank):
        parser.add_argument("repository")
        parser.add_argument("project")
        parser.add_argument("version")
        parser.add_argument("--file", help="one file of the release, by its filename")
    yank.add_argument("--reason", default="", help="shown to installers (PEP 592)")
    delete = command(actions, "delete", "delete a project, a release of it, or one --file")
    delete.add_argument("repository")
    delete.add_argument("project")
    delete.add_argument("version", nargs="?")
    delete.add_argument("--file", help="one file of the release, by its filename")


async def run(config: Config, args: argparse.Namespace) -> int:
    if args.action not in ("yank", "unyank", "delete"):
        print("artifactapi pypi: name an action: yank, unyank or delete", file=sys.stderr)
        return 2
    formats = available_formats()
    options = validate_repositories(config, formats)
    metadata = await open_metadata(config.database.url, 1, 2)
    try:
        await metadata.migrate(migrations(formats.values()))
        repositories = await Repositories.sync(metadata, config.repositories, options)
        change = PackageChange(
            args.action,
            args.project,
            args.version,
            args.file,
            args.reason if args.action == "yank" else None,
        )
        try:
            repo = repositories.get(args.repository, "pypi")
            if repo.kind != "local":
                print(f"artifactapi: {repo.name} is a {repo.kind} repository", file=sys.stderr)
                return 1
            result = await Packages(PypiRecords(metadata.db)).change(
                repo.narrowed(LocalPypiOptions), change
            )
        except ApiError as exc:
            print(f"artifactapi: {exc.message}", file=sys.stderr)
            return 1
        print(json.dumps(result))
        return 0
    finally:
        await metadata.close()
