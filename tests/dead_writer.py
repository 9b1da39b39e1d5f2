"""A process that starts a storage put and never finishes it, for tests to kill.

    python -m tests.dead_writer filesystem ROOT KEY
    python -m tests.dead_writer s3 CONFIG_JSON KEY

It sends a little more than one S3 part, then waits forever: killed, it leaves what a
replica killed mid-upload leaves (a partial file, an incomplete multipart upload).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

from app.backends.storage.base import BlobStorage
from app.backends.storage.filesystem import FilesystemStorage
from app.backends.storage.s3 import S3Storage
from app.config import S3StorageConfig

SENT = 6 * 1024 * 1024


async def _forever() -> AsyncIterator[bytes]:
    yield b"x" * SENT
    await asyncio.Event().wait()


async def main(driver: str, where: str, key: str) -> None:
    storage: BlobStorage
    if driver == "filesystem":
        storage = await FilesystemStorage(where).open()
    else:
        storage = await S3Storage(S3StorageConfig(**json.loads(where))).open()
    await storage.put(key, _forever())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
