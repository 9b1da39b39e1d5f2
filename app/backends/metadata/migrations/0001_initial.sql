-- legacy version: 1
-- Repositories and the content-addressed blobs every format's rows reference.
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
