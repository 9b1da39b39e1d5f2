"""How each server gets a project of 2,000 files and a package of 5,000 versions.

Through the HTTP API the real clients use wherever that takes seconds: the legacy
upload POST twine sends (multipart, its digests, Basic credentials) and the PUT npm
publish sends (the version's packument, the tarball base64 inline, a Bearer token).
artifactapi and pypiserver are seeded that way, four requests at a time.

Two peers are seeded through their own storage instead, after a first real upload or
publish made it, because their publish path costs time that grows with the package
(hours for these sizes, which is a finding of its own, not the page's cost):

* devpi (~0.3 s per upload, more as the project grows): its own ``devpi-export`` of the
  server, the remaining files added to the export as it writes them, ``devpi-import``
  into a fresh server directory, and the server started again on it;
* Verdaccio (it rewrites the whole package document on each publish, and loses
  versions when publishes overlap): the remaining versions added to its
  ``package.json`` and their tarballs beside it, the way its publish writes them.

Either way, every page is checked to list everything before it is timed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp

from bench import peers
from bench.packages import WHEEL_TAGS, metadata_fields, small_tarball, small_wheel, wheel_name
from bench.peers import NpmRegistry, PyPIIndex

Job = Callable[[], Awaitable[None]]


def versions(count: int) -> list[str]:
    return [f"{1 + index // 1000}.{index // 10 % 100}.{index % 10}" for index in range(count)]


def wheel_files(files: int) -> list[tuple[str, str]]:
    """(version, tag) of ``files`` wheels: as many releases as needed, four tags each."""
    releases = versions((files + len(WHEEL_TAGS) - 1) // len(WHEEL_TAGS))
    return [(v, t) for v in releases for t in WHEEL_TAGS][:files]


async def _bounded(jobs: list[Job], ways: int) -> None:
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(worker() for _ in range(ways)))


def _bind(function: Callable[..., Awaitable[None]], *args: Any) -> Job:
    return lambda: function(*args)


async def upload_wheel(session: aiohttp.ClientSession, index: PyPIIndex, project: str,
                       version: str, tag: str) -> None:  # fmt: skip
    name = wheel_name(project, version, tag)
    body = small_wheel(project, version, tag)
    form = aiohttp.FormData()
    for key, value in metadata_fields(project, version, name, body).items():
        form.add_field(key, value)
    form.add_field("content", body, filename=name, content_type="application/octet-stream")
    headers = {"Authorization": index.basic}
    async with session.post(index.upload_url, data=form, headers=headers) as response:
        if response.status != 200:
            text = (await response.text())[:200]
            raise RuntimeError(f"{index.server.name} upload {name}: {response.status} {text}")


async def publish_version(session: aiohttp.ClientSession, registry: NpmRegistry, package: str,
                          version: str) -> None:  # fmt: skip
    tarball = small_tarball(package, version)
    url = f"{registry.server.base}{registry.packument(package)}"
    headers = {"Authorization": f"Bearer {registry.token}", "Content-Type": "application/json",
               "npm-command": "publish"}  # fmt: skip
    async with session.put(url, data=tarball.publish_body(registry.registry), headers=headers) as r:
        if r.status not in (200, 201):
            text = (await r.text())[:200]
            raise RuntimeError(f"{registry.server.name} publish {version}: {r.status} {text}")


async def upload_wheels(index: PyPIIndex, project: str, files: list[tuple[str, str]],
                        ways: int = 4) -> None:  # fmt: skip
    async with aiohttp.ClientSession() as session:
        jobs = [_bind(upload_wheel, session, index, project, v, t) for v, t in files]
        await _bounded(jobs, ways)


async def publish_versions(registry: NpmRegistry, package: str, numbers: list[str],
                           ways: int = 4) -> None:  # fmt: skip
    async with aiohttp.ClientSession() as session:
        jobs = [_bind(publish_version, session, registry, package, v) for v in numbers]
        await _bounded(jobs, ways)


# -- through the peers' storage ------------------------------------------------------------


def _devpi_file(index: PyPIIndex, project: str, version: str, tag: str,
                export: Path) -> dict[str, Any]:  # fmt: skip
    name = wheel_name(project, version, tag)
    relpath = f"{peers.USER}/dev/{project}/{version}/{name}"
    body = small_wheel(project, version, tag)
    (export / relpath).parent.mkdir(parents=True, exist_ok=True)
    (export / relpath).write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    return {
        "version": version, "type": "releasefile", "projectname": project, "relpath": relpath,
        "entrymapping": {
            "last_modified": formatdate(usegmt=True), "hash_spec": f"sha256={digest}",
            "hashes": {"sha256": digest}, "project": project, "version": version,
        },
        "log": [{"what": "upload", "who": peers.USER, "when": list(time.gmtime()[:6]),
                 "dst": f"{peers.USER}/dev"}],
    }  # fmt: skip


def seed_devpi(index: PyPIIndex, project: str, files: int) -> PyPIIndex:
    """The first file uploaded for real, the rest by export, edit and import; the returned
    index is the server started again on the imported data (the given one is stopped)."""
    pairs = wheel_files(files)
    asyncio.run(upload_wheels(index, project, pairs[:1], 1))
    index.server.stop()
    directory = index.server.directory
    export = directory / "export"
    peers.run([peers.bin_path("devpi-export"), "--serverdir", str(directory / "server"),
               str(export)])  # fmt: skip
    data = json.loads((export / "dataindex.json").read_text())
    stage = data["indexes"][f"{peers.USER}/dev"]
    releases = stage["projects"][project]
    first = next(iter(releases.values()))
    for version, tag in pairs[1:]:
        releases.setdefault(version, {**first, "version": version})
        stage["files"].append(_devpi_file(index, project, version, tag, export))
    (export / "dataindex.json").write_text(json.dumps(data))
    imported = directory / "imported"
    peers.run([peers.bin_path("devpi-import"), "--serverdir", str(imported), "--no-root-pypi",
               "--no-events", str(export)])  # fmt: skip
    return peers.devpi_index(peers.serve_devpi(directory, imported), index.password)


def seed_verdaccio(registry: NpmRegistry, package: str, count: int) -> None:
    """The first version published for real, the rest written into its storage as its
    publish writes them (Verdaccio reads the document from disk on every request)."""
    numbers = versions(count)
    asyncio.run(publish_versions(registry, package, numbers[:1], 1))
    folder = registry.server.directory / "storage" / package
    document = json.loads((folder / "package.json").read_text())
    first = document["versions"][numbers[0]]
    stamp = document["time"][numbers[0]]
    for version in numbers[1:]:
        tarball = small_tarball(package, version)
        (folder / tarball.filename).write_bytes(tarball.body)
        dist = {**first["dist"], "shasum": tarball.shasum, "integrity": tarball.integrity,
                "tarball": first["dist"]["tarball"].replace(numbers[0], version)}  # fmt: skip
        document["versions"][version] = {**first, "version": version,
                                         "_id": f"{package}@{version}", "dist": dist}  # fmt: skip
        document["time"][version] = stamp
        document["_attachments"][tarball.filename] = {"shasum": tarball.shasum, "version": version}
    document["dist-tags"]["latest"] = numbers[-1]
    (folder / "package.json").write_text(json.dumps(document, indent="\t"))
