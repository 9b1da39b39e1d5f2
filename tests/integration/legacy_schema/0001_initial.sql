-- Repositories, the content-addressed blobs, and the files that reference them.
-- Times are seconds since the epoch (DOUBLE PRECISION) in both dialects.

CREATE TABLE repositories (
    id {{id}},
    name TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL,
    kind TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX blobs_created_at ON blobs (created_at);

CREATE TABLE files (
    id {{id}},
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    path {{text_bytewise}} NOT NULL,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (repository_id, path)
);

CREATE INDEX files_blob_digest ON files (blob_digest);
