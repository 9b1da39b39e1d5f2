"""A process that starts a storage put and never finishes it, for tests to kill.

    python -m tests.dead_writer MODULE:FUNCTION ARGUMENT KEY

``MODULE:FUNCTION`` is how a storage contract factory reopens its storage in another
process (``await FUNCTION(ARGUMENT)`` gives the BlobStorage; see
``tests/contract/storage/suite.py``). It sends a little more than one S3 part, then
waits forever: killed, it leaves what a replica killed mid-upload leaves (a partial
file, an incomplete multipart upload).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import AsyncIterator

from app.backends.storage.base import BlobStorage

SENT = 6 * 1024 * 1024


async def _forever() -> AsyncIterator[bytes]:
    yield b"x" * SENT
    await asyncio.Event().wait()


async def main(opener: str, argument: str, key: str) -> None:
    module, _, function = opener.partition(":")
    storage: BlobStorage = await getattr(importlib.import_module(module), function)(argument)
    await storage.put(key, _forever())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
