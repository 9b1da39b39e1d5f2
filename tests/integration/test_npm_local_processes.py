"""npm local repositories served by real processes: 20 concurrent publishes of one
package spread over two scale-out replicas all land, two publishes of one version race
and one wins, and a 500 MiB tarball publishes with the server's memory flat."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import yaml

from tests import shapes
from tests.npm_bodies import publish_body, tarball
from tests.processes import serving
from tests.services import S3Settings

REPO = "npm-local"
LOCAL = {"name": REPO, "format": "npm", "kind": "local"}
SERVER = {"host": "127.0.0.1", "port": 0}
MiB = 1024 * 1024


def admin(directory: Path) -> dict[str, str]:
    password = (directory / "data" / "initial-admin-password").read_text().strip()
    return {"Authorization": aiohttp.encode_basic_auth("admin", password)}


async def test_concurrent_publishes_over_two_replicas(
    tmp_path: Path, postgres_dsn: str, redis_server: str, s3_server: S3Settings, s3_prefix: str
) -> None:
    sections = {
        "server": SERVER,
        "database": {"url": postgres_dsn},
        "storage": shapes.s3_storage(s3_server, s3_prefix),
        "cache": {"url": redis_server},
        "auth": {"initial_admin_password_file": str(tmp_path / "data" / "initial-admin-password")},
        "repositories": [LOCAL],
    }
    (tmp_path / "data").mkdir()
    folders = [tmp_path / "a", tmp_path / "b"]
    with ExitStack() as stack:
        bases = []
        for folder in folders:
            folder.mkdir()
            (folder / "artifactapi.yaml").write_text(yaml.safe_dump(sections))
            bases.append(stack.enter_context(serving(folder))[1] + f"/repository/{REPO}")
        async with aiohttp.ClientSession(headers=admin(tmp_path)) as session:

            async def publish(i: int, version: str, data: bytes | None = None) -> int:
                body = publish_body("race", version, data)
                async with session.put(f"{bases[i % 2]}/race", data=body) as response:
                    if response.status not in (201, 403):
                        raise AssertionError(await response.text())
                    if response.status == 403:
                        assert await response.json() == {
                            "error": "You cannot publish over the previously published"
                            f" versions: {version}"
                        }
                    return response.status

            statuses = await asyncio.gather(*(publish(i, f"1.0.{i}") for i in range(20)))
            assert statuses == [201] * 20
            for base in bases:
                async with session.get(f"{base}/race") as response:
                    document = await response.json()
                assert sorted(document["versions"]) == sorted(f"1.0.{i}" for i in range(20))
                assert document["_rev"].startswith("20-")

            # The same version twice at once, one per replica: one wins, whole.
            mine, theirs = tarball("race", "2.0.0"), tarball("race", "2.0.0") + b"other"
            won = await asyncio.gather(publish(0, "2.0.0", mine), publish(1, "2.0.0", theirs))
            assert sorted(won) == [201, 403]
            winner = mine if won[0] == 201 else theirs
            for base in bases:
                async with session.get(f"{base}/race/-/race-2.0.0.tgz") as response:
                    assert await response.read() == winner


BLOCK = 3 * 349_525  # about 1 MiB, a multiple of 3: the blocks' base64 joins up


async def test_a_500_mib_publish_keeps_the_server_memory_flat(tmp_path: Path) -> None:
    size = 500 * MiB
    sections = {
        "server": SERVER,
        "database": {"url": "sqlite:///data/meta.db"},
        "storage": {"driver": "filesystem", "root": "data"},
        "repositories": [LOCAL],
    }
    (tmp_path / "artifactapi.yaml").write_text(yaml.safe_dump(sections))
    block = b"\x1f\x8b" + os.urandom(BLOCK - 2)  # starts like gzip, as the server checks
    sha512, sha1 = hashlib.sha512(), hashlib.sha1()
    whole, rest = divmod(size, BLOCK)
    for piece in [block] * whole + [block[:rest]]:
        sha512.update(piece)
        sha1.update(piece)
    document = json.loads(publish_body("big", "1.0.0", b"\x1f\x8b"))
    dist = document["versions"]["1.0.0"]["dist"]
    dist["integrity"] = "sha512-" + base64.b64encode(sha512.digest()).decode()
    dist["shasum"] = sha1.hexdigest()
    attachment = document["_attachments"].pop("big-1.0.0.tgz")
    head, _, tail = json.dumps({**document, "_attachments": {"big-1.0.0.tgz": {
        "content_type": attachment["content_type"], "length": size, "data": "@DATA@"}}}
    ).encode().partition(b"@DATA@")  # fmt: skip

    async def body() -> AsyncIterator[bytes]:
        yield head
        sent = 0
        while sent < size:
            piece = block[: size - sent]
            sent += len(piece)
            yield base64.b64encode(piece)
        yield tail

    with serving(tmp_path) as (process, base):
        peak = 0
        rss = Path(f"/proc/{process.pid}/status")

        def resident() -> int:
            for line in rss.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
            raise AssertionError("no VmRSS")

        async with aiohttp.ClientSession(headers=admin(tmp_path)) as session:
            url = f"{base}/repository/{REPO}/big"
            async with session.get(url) as warm:  # the routes' first use, not the upload's
                assert warm.status == 404
            baseline = resident()
            upload = asyncio.create_task(session.put(url, data=body()))
            while not upload.done():
                peak = max(peak, resident())
                await asyncio.sleep(0.05)
            response = await upload
            assert response.status == 201, await response.text()
            async with session.get(f"{url}/-/big-1.0.0.tgz") as got:
                assert got.content_length == size
        growth = peak - baseline
        print(f"server RSS growth during a {size // MiB} MiB publish: {growth / MiB:.1f} MiB")
        assert growth < 64 * MiB, f"RSS grew by {growth / MiB:.0f} MiB"
