-- legacy version: 4
-- Remote repositories: what was fetched from each upstream, and when to ask again.
-- A 404 from the upstream is a negative entry (status 404, no blob) for a short while.

CREATE TABLE remote_entries (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    path {{text_bytewise}} NOT NULL,
    status INTEGER NOT NULL,
    blob_digest TEXT REFERENCES blobs (digest),
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    headers TEXT NOT NULL,
    fetched_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    last_requested_at DOUBLE PRECISION NOT NULL,
    request_count BIGINT NOT NULL,
    PRIMARY KEY (repository_id, path)
);

CREATE INDEX remote_entries_blob ON remote_entries (blob_digest);

CREATE INDEX remote_entries_requested ON remote_entries (repository_id, last_requested_at);
