"""``artifactapi gc`` (and ``python -m collector``): one collection, then exit."""

from __future__ import annotations

import contextlib

from app.backends.metadata import open_metadata
from app.backends.storage import open_storage
from app.config import Config
from app.formats import available_formats, migrations, validate_repositories
from app.repositories import Repositories
from collector.report import Report
from collector.run import Collector


async def collect_once(config: Config, dry_run: bool = False) -> Report:
    formats = available_formats()
    options = validate_repositories(config, formats)
    async with contextlib.AsyncExitStack() as stack:
        storage = await open_storage(config.storage)  # keys checked; no metrics to tally in
        stack.push_async_callback(storage.close)
        metadata = await open_metadata(
            config.database.url, config.database.pool_min, config.database.pool_max
        )
        stack.push_async_callback(metadata.close)
        await metadata.migrate(migrations(formats.values()))
        repositories = await Repositories.sync(metadata, config.repositories, options)
        collector = Collector(
            config.gc, metadata, storage, formats, repositories,
            audit_retention=config.auth.audit_retention,
        )  # fmt: skip
        return await collector.run(dry_run=dry_run)
