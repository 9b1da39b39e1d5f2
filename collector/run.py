"""One collection, from taking the lease to storing the report.

Only the holder of the ``gc`` lease (a row in the database, so every replica and
worker process sees the same one) collects; a second collector started meanwhile
skips its run. The lease is renewed between batches and a run that loses it stops.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from app import layout
from app.auth.audit import AuditRecords
from app.backends.metadata import MetadataStore
from app.backends.storage import BlobStorage
from app.cas import ContentStore
from app.config import AuthConfig, GcConfig
from app.formats.base import Format
from app.metrics import Metrics
from app.proxy.options import RemoteOptions
from app.repositories import Repositories, Repository
from collector.blobs import BlobSweep
from collector.remote import evict
from collector.report import Report

log = structlog.get_logger("artifactapi.collector")

LEASE = "gc"
LEASE_TTL = 600.0


class LeaseLost(RuntimeError):
    """Another collector took the lease (ours expired): stop at once."""


@dataclass
class FormatSweep:
    """The :class:`app.formats.base.Sweep` a format's ``collect`` receives."""

    metadata: MetadataStore
    storage: BlobStorage
    cas: ContentStore
    report: Report
    grace_cutoff: float
    upload_cutoff: float
    repositories: list[Repository] = field(default_factory=list)

    @property
    def dry_run(self) -> bool:
        return self.report.dry_run

    def freed(self, kind: str, objects: int, size: int) -> None:
        self.report.add(kind, objects, size)

    def failed(self, kind: str, error: BaseException) -> None:
        log.warning("collection error", kind=kind, error=repr(error))
        self.report.error(kind, error)


class Collector:
    def __init__(
        self,
        config: GcConfig,
        metadata: MetadataStore,
        storage: BlobStorage,
        formats: dict[str, Format],
        repositories: Repositories,
        metrics: Metrics | None = None,
        audit_retention: float = AuthConfig().audit_retention,
    ) -> None:
        self.config = config
        self.audit_retention = audit_retention
        self.metadata = metadata
        self.storage = storage
        self.formats = formats
        self.repositories = repositories
        self.metrics = metrics
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run(self, dry_run: bool = False) -> Report:
        report = Report(dry_run)
        if not await self.metadata.acquire_lease(LEASE, self.holder, LEASE_TTL):
            report.skipped = "another collector holds the lease"
            report.finished_at = time.time()
            log.info("collection skipped", reason=report.skipped)
            return report
        try:
            await self._collect(report)
        except LeaseLost as exc:
            report.error("lease", exc)
        except Exception as exc:  # the database went away, say: report, don't crash the server
            log.exception("collection failed")
            report.error("run", exc)
        finally:
            report.finished_at = time.time()
            await self._finish(report)
        return report

    async def _collect(self, report: Report) -> None:
        now = time.time()
        grace_cutoff = now - self.config.blob_grace
        upload_cutoff = now - self.config.upload_max_age
        cas = ContentStore(self.storage, self.metadata)
        for name, fmt in self.formats.items():
            repos = [r for r in self.repositories if r.format == name]
            sweep = FormatSweep(
                self.metadata, self.storage, cas, report, grace_cutoff, upload_cutoff, repos
            )
            await fmt.collect(sweep)
            await self._renew()
        remotes = [
            (r.id, r.narrowed(RemoteOptions).options)
            for r in self.repositories
            if r.kind == "remote"
        ]
        sweep = FormatSweep(self.metadata, self.storage, cas, report, grace_cutoff, upload_cutoff)
        await evict(sweep, remotes)  # before the blob sweep, which frees what this drops
        references = tuple(ref for fmt in self.formats.values() for ref in fmt.blob_references)
        unlink = tuple(stmt for fmt in self.formats.values() for stmt in fmt.blob_names)
        blobs = BlobSweep(self.metadata, self.storage, report, self._renew, self.config.batch)
        if report.dry_run:
            await blobs.count_orphans(grace_cutoff, references)
        else:
            await blobs.leftovers(references, unlink)
            await blobs.orphans(grace_cutoff, references, unlink)
        await self._staging(report, upload_cutoff)
        await self._audit(report, now - self.audit_retention)

    async def _staging(self, report: Report, cutoff: float) -> None:
        """Ingests that died before finishing (``layout.TMP``), and writes a killed
        process left half-done in the storage itself (multipart uploads on S3), once as
        old as an abandoned upload. (Staged parts under ``layout.UPLOADS`` live as long
        as their session: the format that keeps it drops them.)"""
        age = timedelta(seconds=max(0.0, time.time() - cutoff))
        try:
            async for info in self.storage.list_stale(layout.TMP, age):
                if not report.dry_run:
                    await self.storage.delete(info.key)
                report.add("staging", 1, info.size)
        except Exception as exc:
            report.error("staging", exc)
        try:
            incomplete = await self.storage.reap_incomplete(age, dry_run=report.dry_run)
            report.add("incomplete", len(incomplete), sum(i.size for i in incomplete))
        except Exception as exc:
            report.error("incomplete", exc)

    async def _audit(self, report: Report, cutoff: float) -> None:
        """Audit rows past ``auth.audit_retention``."""
        try:
            trimmed = await AuditRecords(self.metadata.db).trim(cutoff, report.dry_run)
            report.add("audit", trimmed, 0)
        except Exception as exc:
            report.error("audit", exc)

    async def _renew(self) -> None:
        if not await self.metadata.acquire_lease(LEASE, self.holder, LEASE_TTL):
            raise LeaseLost("the collector lease expired and another collector took it")

    async def _finish(self, report: Report) -> None:
        try:
            await self.metadata.save_gc_run(
                report.started_at,
                report.finished_at or time.time(),
                report.dry_run,
                report.to_dict(),
            )
        except Exception as exc:
            log.warning("could not store the collection report", error=repr(exc))
        try:
            await self.metadata.release_lease(LEASE, self.holder)
        except Exception as exc:  # it expires on its own
            log.warning("could not release the collector lease", error=repr(exc))
        if self.metrics is not None:
            self.metrics.record_collection(report)
        log.info("collection finished", **report.to_dict())
