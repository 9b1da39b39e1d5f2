-- Where a remote repository's rewritten file URLs really point: a package index page
-- (PyPI simple page, npm packument) names files on other hosts; the rewritten link
-- names a path here, and this row maps it back, with the checksum the index published.
-- Only URLs an upstream page gave are ever fetched: clients cannot name one.

CREATE TABLE remote_links (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    path {{text_bytewise}} NOT NULL,
    url TEXT NOT NULL,
    digest TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repository_id, path)
);
