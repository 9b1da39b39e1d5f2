"""Every query of the OCI format, written once for both databases, and what its rows
keep alive for the collector. Its tables' migrations are in ``migrations/``."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from app.formats.api import BlobsGone, Part, Records, SqlDriver
from app.formats.api import RowConflict as Conflict

# Over the blob aliased ``b`` (Format.blob_references): a manifest's own bytes, or a
# config or layer a manifest of some image name references through that name's link.
# Links alone keep nothing: a layer pushed but never named by a manifest is garbage
# once the grace period has passed since its last use, as in distribution.
BLOB_REFERENCES = (
    "EXISTS (SELECT 1 FROM oci_manifests m WHERE m.blob_digest = b.digest)",
    "EXISTS (SELECT 1 FROM oci_blob_links l JOIN oci_manifest_refs r"
    " ON r.repository_id = l.repository_id AND r.name = l.name AND r.ref_digest = l.digest"
    " WHERE l.blob_digest = b.digest)",
)
# Rows that only name a blob, deleted with it (Format.blob_names).
BLOB_NAMES = ("DELETE FROM oci_blob_links WHERE blob_digest = $1",)

# An untagged manifest that no index lists as a child and whose subject (if any) is
# gone. Deleting one can free its children and referrers: the collector repeats.
_UNREACHABLE = (
    "m.repository_id = $1 AND m.touched_at < $2"
    " AND NOT EXISTS (SELECT 1 FROM oci_tags t WHERE t.repository_id = m.repository_id"
    " AND t.name = m.name AND t.digest = m.digest)"
    " AND NOT EXISTS (SELECT 1 FROM oci_manifest_refs r WHERE r.repository_id = m.repository_id"
    " AND r.name = m.name AND r.ref_digest = m.digest AND r.kind = 'manifest')"
    " AND NOT EXISTS (SELECT 1 FROM oci_manifests s WHERE m.subject IS NOT NULL"
    " AND s.repository_id = m.repository_id AND s.name = m.name AND s.digest = m.subject)"
)


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    repository_id: int
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    blob_digest: str
    media_type: str
    artifact_type: str | None
    subject: str | None
    size: int


@dataclass(frozen=True, slots=True)
class LinkedBlob:
    """A blob an image name links, as a manifest about to name it found it."""

    digest: str  # as the image name addresses it
    blob_digest: str  # the CAS's sha256
    size: int
    state: str  # "live", or "deleting": a collector has marked it


@dataclass(frozen=True, slots=True)
class Reference:
    digest: str
    kind: str  # config | layer | manifest | subject


_MANIFEST_COLUMNS = "digest, blob_digest, media_type, artifact_type, subject, size"
# A touch this recent is as good as one now (seconds).
TOUCH_RESOLUTION = 60.0


class OciRecords(Records):
    # -- upload sessions --------------------------------------------------------

    async def create_upload(self, upload_id: str, repository_id: int, name: str) -> None:
        now = time.time()
        await self.db.execute(
            "INSERT INTO oci_uploads (id, repository_id, name, size, created_at, updated_at)"
            " VALUES ($1, $2, $3, 0, $4, $4)",
            upload_id,
            repository_id,
            name,
            now,
        )

    async def get_upload(self, upload_id: str) -> Upload | None:
        row = await self.db.fetchrow(
            "SELECT id, repository_id, name, size FROM oci_uploads WHERE id = $1", upload_id
        )
        return Upload(row["id"], row["repository_id"], row["name"], row["size"]) if row else None

    async def add_part(self, upload_id: str, part: Part) -> bool:
        """Record a staged part at the session's current size; False if another
        request got there first (the caller then drops its object)."""
        try:
            async with self.db.transaction() as tx:
                moved = await tx.execute(
                    "UPDATE oci_uploads SET size = $2, updated_at = $3 WHERE id = $1 AND size = $4",
                    upload_id,
                    part.offset + part.size,
                    time.time(),
                    part.offset,
                )
                if not moved:
                    return False
                await tx.execute(
                    'INSERT INTO oci_upload_parts (upload_id, "offset", size, storage_key, sha256)'
                    " VALUES ($1, $2, $3, $4, $5)",
                    upload_id,
                    part.offset,
                    part.size,
                    part.storage_key,
                    part.sha256,
                )
        except Conflict:
            return False
        return True

    async def parts(self, upload_id: str) -> list[Part]:
        rows = await self.db.fetch(
            'SELECT "offset", size, storage_key, sha256 FROM oci_upload_parts'
            ' WHERE upload_id = $1 ORDER BY "offset"',
            upload_id,
        )
        return [Part(r["offset"], r["size"], r["storage_key"], r["sha256"]) for r in rows]

    async def delete_upload(self, upload_id: str) -> bool:
        return await self.db.execute("DELETE FROM oci_uploads WHERE id = $1", upload_id) > 0

    async def idle_uploads(self, cutoff: float, after: str, limit: int) -> list[str]:
        """Sessions not written to since ``cutoff``, by id after ``after``."""
        rows = await self.db.fetch(
            "SELECT id FROM oci_uploads WHERE updated_at < $1 AND id > $2 ORDER BY id LIMIT $3",
            cutoff,
            after,
            limit,
        )
        return [r["id"] for r in rows]

    # -- blob links -------------------------------------------------------------

    async def link_blob(self, repository_id: int, name: str, digest: str, blob_digest: str) -> None:
        """Let the image name hold the blob; :class:`BlobsGone` if a collector marked
        it since it was stored or claimed (the client retries)."""
        async with self.db.transaction() as tx:
            await self.holding(tx, [blob_digest])
            await tx.execute(
                "INSERT INTO oci_blob_links (repository_id, name, digest, blob_digest, created_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repository_id, name, digest) DO NOTHING",
                repository_id,
                name,
                digest,
                blob_digest,
                time.time(),
            )

    async def linked_blob(self, repository_id: int, name: str, digest: str) -> str | None:
        """The CAS digest behind ``digest`` if this image name holds it."""
        value = await self.db.fetchval(
            "SELECT blob_digest FROM oci_blob_links"
            " WHERE repository_id = $1 AND name = $2 AND digest = $3",
            repository_id,
            name,
            digest,
        )
        return str(value) if value is not None else None

    async def claim_linked_blobs(
        self, repository_id: int, name: str, digests: list[str]
    ) -> dict[str, LinkedBlob]:
        """The blobs behind ``digests`` (distinct) that this image name links, by digest;
        the live ones touched first, in one statement, so no collector marks them for a
        grace period while a manifest naming them commits. One missing from the answer
        is not in this image name; one answered "deleting" is the caller's to wait out."""
        now, listed = time.time(), self.as_list(digests)
        # A blob touched within the last minute (a layer just uploaded, the usual case)
        # is not written again: on PostgreSQL each touch is a new row version, and a
        # push of a thousand layers would write a thousand. put_manifest's hold is what
        # keeps them until its references commit; the touch only keeps the collector
        # off meanwhile.
        # The rows are locked in digest order, as collectors and writers lock them.
        await self.db.execute(
            "UPDATE blobs SET touched_at = $4 WHERE digest IN (SELECT digest FROM blobs"
            " WHERE state = 'live' AND touched_at < $5 AND digest IN (SELECT blob_digest"
            " FROM oci_blob_links"
            f" WHERE repository_id = $1 AND name = $2 AND digest {self.one_of('$3')})"
            + self.row_lock("digest", "NO KEY UPDATE")
            + ")",
            repository_id,
            name,
            listed,
            now,
            now - TOUCH_RESOLUTION,
        )
        rows = await self.db.fetch(
            "SELECT l.digest, l.blob_digest, b.size, b.state FROM oci_blob_links l"
            " JOIN blobs b ON b.digest = l.blob_digest"
            f" WHERE l.repository_id = $1 AND l.name = $2 AND l.digest {self.one_of('$3')}",
            repository_id,
            name,
            listed,
        )
        return {r["digest"]: LinkedBlob(**r) for r in rows}

    async def unlink_blob(self, repository_id: int, name: str, digest: str) -> bool:
        count = await self.db.execute(
            "DELETE FROM oci_blob_links WHERE repository_id = $1 AND name = $2 AND digest = $3",
            repository_id,
            name,
            digest,
        )
        return count > 0

    # -- manifests and tags -----------------------------------------------------

    async def put_manifest(
        self,
        repository_id: int,
        name: str,
        manifest: Manifest,
        references: list[Reference],
        tags: Collection[str],
        blobs: Collection[str] = (),
        children: Collection[str] = (),
    ) -> None:
        """Record a manifest with its references and tags, in one transaction.

        ``blobs`` are the CAS digests it needs besides its own bytes (config, layers),
        ``children`` the digests of an index's manifests: they are held first, so no
        collector deletes one under the references written here. One that is gone
        raises :class:`BlobsGone` and nothing is written.

        A blob must also still be linked by this image name, since the link is what
        makes the references written here keep it (``BLOB_REFERENCES``): a collector
        drops the links with the rows, so a live row alone may be the same bytes
        stored again by another image name after this one lost them.
        """
        if isinstance(tags, str):  # a str is a Collection[str] too: one tag per letter
            raise TypeError("tags: a collection of tags, not one tag")
        now = time.time()
        async with self.db.transaction() as tx:
            await self.holding(tx, {manifest.blob_digest, *blobs})
            await self._hold_links(tx, repository_id, name, references, blobs)
            await self._hold_manifests(tx, repository_id, name, children)
            inserted = await tx.execute(
                "INSERT INTO oci_manifests"
                f" (repository_id, name, {_MANIFEST_COLUMNS}, created_at, touched_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
                " ON CONFLICT (repository_id, name, digest) DO NOTHING",
                repository_id,
                name,
                manifest.digest,
                manifest.blob_digest,
                manifest.media_type,
                manifest.artifact_type,
                manifest.subject,
                manifest.size,
                now,
            )
            if not inserted:  # pushed again: as good as new for the collector
                await tx.execute(
                    "UPDATE oci_manifests SET touched_at = $4"
                    " WHERE repository_id = $1 AND name = $2 AND digest = $3",
                    repository_id,
                    name,
                    manifest.digest,
                    now,
                )
            elif references:
                await self._add_references(tx, repository_id, name, manifest.digest, references)
            for tag in sorted(tags):  # in one order, so two pushes never deadlock on them
                await tx.execute(
                    "INSERT INTO oci_tags (repository_id, name, tag, digest, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT (repository_id, name, tag) DO UPDATE"
                    " SET digest = excluded.digest, updated_at = excluded.updated_at",
                    repository_id,
                    name,
                    tag,
                    manifest.digest,
                    now,
                )

    async def _hold_links(
        self,
        tx: SqlDriver,
        repository_id: int,
        name: str,
        references: list[Reference],
        blobs: Collection[str],
    ) -> None:
        """Raise :class:`BlobsGone` unless each of ``blobs`` is linked by this image
        name under a digest the manifest references. Looked at once the blobs are held:
        a collector drops links only with a marked row, so these stay until ``tx``
        commits (a client's own DELETE of a blob may still come after, as it may
        after the commit)."""
        if not blobs:
            return
        named = sorted({r.digest for r in references if r.kind in ("config", "layer")})
        rows = await tx.fetch(
            "SELECT blob_digest FROM oci_blob_links WHERE repository_id = $1 AND name = $2"
            f" AND digest {self.one_of('$3')} AND blob_digest {self.one_of('$4')}",
            repository_id,
            name,
            self.as_list(named),
            self.as_list(sorted(blobs)),
        )
        if unlinked := set(blobs) - {r["blob_digest"] for r in rows}:
            raise BlobsGone(unlinked)

    async def _hold_manifests(
        self, tx: SqlDriver, repository_id: int, name: str, digests: Collection[str]
    ) -> None:
        """:meth:`holding` for an index's children, against untagged collection."""
        found = await self.share_locked(
            tx,
            "SELECT digest FROM oci_manifests WHERE repository_id = $1 AND name = $2",
            (repository_id, name),
            digests,
        )
        if gone := set(digests) - found:
            raise BlobsGone(gone)

    async def _add_references(
        self,
        tx: SqlDriver,
        repository_id: int,
        name: str,
        digest: str,
        references: list[Reference],
    ) -> None:
        """All of a manifest's references in one statement: asyncpg's executemany still
        runs one per row on the server, SQLite's runs in process."""
        if tx.dialect == "postgres":
            await tx.execute(
                "INSERT INTO oci_manifest_refs"
                " (repository_id, name, manifest_digest, ref_digest, kind)"
                " SELECT $1, $2, $3, r.ref, r.kind"
                " FROM unnest($4::text[], $5::text[]) AS r(ref, kind) ON CONFLICT DO NOTHING",
                repository_id,
                name,
                digest,
                [r.digest for r in references],
                [r.kind for r in references],
            )
            return
        await tx.executemany(
            "INSERT INTO oci_manifest_refs"
            " (repository_id, name, manifest_digest, ref_digest, kind)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [(repository_id, name, digest, r.digest, r.kind) for r in references],
        )

    async def get_manifest(self, repository_id: int, name: str, digest: str) -> Manifest | None:
        row = await self.db.fetchrow(
            f"SELECT {_MANIFEST_COLUMNS} FROM oci_manifests"
            " WHERE repository_id = $1 AND name = $2 AND digest = $3",
            repository_id,
            name,
            digest,
        )
        return Manifest(**row) if row else None

    async def touch_manifests(
        self, repository_id: int, name: str, digests: list[str]
    ) -> dict[str, int]:
        """The sizes of the manifests among ``digests`` (distinct) that this image name
        holds, each touched, in one statement: safe from untagged collection for a grace
        period (an index is about to name them)."""
        # Locked in digest order, as the collector of untagged manifests locks them.
        rows = await self.db.fetch(
            "UPDATE oci_manifests SET touched_at = $4"
            " WHERE repository_id = $1 AND name = $2 AND digest IN (SELECT digest"
            " FROM oci_manifests WHERE repository_id = $1 AND name = $2"
            f" AND digest {self.one_of('$3')}"
            + self.row_lock("digest", "NO KEY UPDATE")
            + ") RETURNING digest, size",
            repository_id,
            name,
            self.as_list(digests),
            time.time(),
        )
        return {r["digest"]: r["size"] for r in rows}

    async def resolve_tag(self, repository_id: int, name: str, tag: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT digest FROM oci_tags WHERE repository_id = $1 AND name = $2 AND tag = $3",
            repository_id,
            name,
            tag,
        )
        return str(value) if value is not None else None

    async def delete_manifest(self, repository_id: int, name: str, digest: str) -> bool:
        # Tags and references go with it (ON DELETE CASCADE).
        count = await self.db.execute(
            "DELETE FROM oci_manifests WHERE repository_id = $1 AND name = $2 AND digest = $3",
            repository_id,
            name,
            digest,
        )
        return count > 0

    async def delete_tag(self, repository_id: int, name: str, tag: str) -> bool:
        count = await self.db.execute(
            "DELETE FROM oci_tags WHERE repository_id = $1 AND name = $2 AND tag = $3",
            repository_id,
            name,
            tag,
        )
        return count > 0

    async def tags(self, repository_id: int, name: str, limit: int, last: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT tag FROM oci_tags WHERE repository_id = $1 AND name = $2 AND tag > $3"
            " ORDER BY tag LIMIT $4",
            repository_id,
            name,
            last,
            limit,
        )
        return [r["tag"] for r in rows]

    async def has_name(self, repository_id: int, name: str) -> bool:
        value = await self.db.fetchval(
            "SELECT 1 FROM oci_manifests WHERE repository_id = $1 AND name = $2 LIMIT 1",
            repository_id,
            name,
        )
        return value is not None

    async def names(self, repository_ids: list[int], limit: int, last: str) -> list[str]:
        """Full names (``<repository>/<image>``) holding manifests, for the catalog.

        Ordered by the full name, not by (repository, image): "docker-local/x"
        sorts before "docker/x", and ``last`` must compare the same way the
        order runs or pages skip names. The byte-wise collation is explicit
        because ``repositories.name`` has the database's default one.
        """
        if not repository_ids:
            return []
        full = f"(r.name || '/' || m.name) {self.bytewise()}"
        marks = ", ".join(f"${i + 3}" for i in range(len(repository_ids)))
        rows = await self.db.fetch(
            f"SELECT DISTINCT {full} AS full_name"
            " FROM oci_manifests m JOIN repositories r ON r.id = m.repository_id"
            f" WHERE m.repository_id IN ({marks}) AND {full} > $1"
            " ORDER BY full_name LIMIT $2",
            last,
            limit,
            *repository_ids,
        )
        return [r["full_name"] for r in rows]

    async def referrers(
        self, repository_id: int, name: str, subject: str, artifact_type: str | None = None
    ) -> list[Manifest]:
        filtered = " AND artifact_type = $4" if artifact_type is not None else ""
        rows = await self.db.fetch(
            f"SELECT {_MANIFEST_COLUMNS} FROM oci_manifests"
            f" WHERE repository_id = $1 AND name = $2 AND subject = $3{filtered}"
            " ORDER BY digest",
            repository_id,
            name,
            subject,
            *([artifact_type] if artifact_type is not None else []),
        )
        return [Manifest(**r) for r in rows]

    # -- untagged manifests (the collector) --------------------------------------

    async def unreachable_manifests(self, repository_id: int, cutoff: float) -> list[int]:
        """The sizes of the manifests untouched since ``cutoff`` that nothing reaches
        (no tag, no index, no subject): read only, for a dry run."""
        rows = await self.db.fetch(
            f"SELECT m.size FROM oci_manifests m WHERE {_UNREACHABLE}", repository_id, cutoff
        )
        return [r["size"] for r in rows]

    async def delete_unreachable_manifests(self, repository_id: int, cutoff: float) -> list[int]:
        """Lock the unreachable manifests, then delete those a second look still finds
        unreachable; return the sizes of those deleted. An index that held one as a child
        (:meth:`put_manifest`) has committed by then, and this statement sees it; one
        pushed after the lock finds its child gone and is refused."""
        async with self.db.transaction() as tx:
            candidates = await tx.fetch(
                f"SELECT m.digest FROM oci_manifests m WHERE {_UNREACHABLE}"
                + self.row_lock("m.digest", "UPDATE"),
                repository_id,
                cutoff,
            )
            if not candidates:
                return []
            rows = await tx.fetch(
                f"DELETE FROM oci_manifests AS m WHERE m.digest {self.one_of('$3')}"
                f" AND {_UNREACHABLE} RETURNING size",
                repository_id,
                cutoff,
                self.as_list([r["digest"] for r in candidates]),
            )
        return [r["size"] for r in rows]
