-- legacy version: 3
-- Garbage collection: the blob lifecycle, the collector's lease and its reports.
--
-- A blob is 'live' or 'deleting'. touched_at is the last time a writer used it (an
-- ingest that found it stored, a mount, a manifest naming it); the collector only
-- marks blobs untouched for longer than its grace, with a conditional update that
-- a concurrent touch defeats. marked_at is when it was marked.

ALTER TABLE blobs ADD COLUMN state TEXT NOT NULL DEFAULT 'live';

ALTER TABLE blobs ADD COLUMN touched_at DOUBLE PRECISION;

UPDATE blobs SET touched_at = created_at;

ALTER TABLE blobs ADD COLUMN marked_at DOUBLE PRECISION;

CREATE INDEX blobs_deleting ON blobs (state, digest);

-- At most one holder per lease name: the collector's leader election, for every
-- replica and worker process sharing this database.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE gc_runs (
    id {{id}},
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    dry_run BOOLEAN NOT NULL,
    report TEXT NOT NULL
);
