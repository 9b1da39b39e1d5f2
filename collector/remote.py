"""Remote repositories' caches: what is dropped so they stay within their limits.

Dropping an entry only forgets that the path was fetched; its blob, if nothing else
references it, becomes an orphan that the blob sweep of the same run deletes. A
request that still holds the entry finds its blob gone and fetches it again.
"""

from __future__ import annotations

import time

from app.formats.base import Sweep
from app.proxy.entries import Entries
from app.proxy.options import RemoteOptions


async def evict(sweep: Sweep, repositories: list[tuple[int, RemoteOptions]]) -> None:
    entries = Entries(sweep.metadata.db)
    now = time.time()
    for repository_id, options in repositories:
        limits = options.cache
        cutoff = now - limits.max_idle if limits.max_idle is not None else 0.0
        try:
            if limits.max_idle is not None:
                count, size = await entries.evict_idle(repository_id, cutoff, sweep.dry_run)
                sweep.freed("cache", count, size)
            if limits.max_bytes is not None:
                count, size = await entries.evict_beyond(
                    repository_id, int(limits.max_bytes), dry_run=sweep.dry_run, idle_cutoff=cutoff
                )
                sweep.freed("cache", count, size)
        except Exception as exc:
            sweep.failed("cache", exc)
    if not sweep.dry_run:
        try:
            await entries.evict_expired_misses(now)
        except Exception as exc:
            sweep.failed("cache", exc)
