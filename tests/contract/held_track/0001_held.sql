-- A format's table, as the metadata contract migrates it beside the core's: rows that
-- reference a repository and a blob, held first the way every format's writers do.

CREATE TABLE held (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name {{text_bytewise}} NOT NULL,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    PRIMARY KEY (repository_id, name)
);
