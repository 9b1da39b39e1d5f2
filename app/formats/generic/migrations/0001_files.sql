-- legacy version: 1
-- Generic files: a path in a repository pointing at a CAS blob.

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
