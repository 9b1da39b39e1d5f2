-- npm local repositories: a package is a row with a serial, bumped by every change of
-- its versions, dist-tags or attachments in the same transaction, so every replica
-- sees a change on its next request and renders the packument again.
-- A version is a row of its own: concurrent publishes of different versions never
-- touch each other's rows, and a version's primary key keeps name@version unique
-- for ever (an unpublished one stays as a tombstone, its blob let go).
-- state is published, staged (a stage_id, invisible to installs until approved) or
-- unpublished (the tombstone: tarball_digest NULL, so the collector may take the blob).
-- Times are epoch seconds; manifest is the version's JSON as published and corgi its
-- abbreviated form, both without dist (the JSON of which is dist, less its tarball URL).

CREATE TABLE npm_packages (
    id {{id}},
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name {{text_bytewise}} NOT NULL,
    serial BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    modified_at DOUBLE PRECISION NOT NULL,
    UNIQUE (repository_id, name)
);

CREATE TABLE npm_versions (
    package_id BIGINT NOT NULL REFERENCES npm_packages (id) ON DELETE CASCADE,
    version {{text_bytewise}} NOT NULL,
    manifest TEXT NOT NULL,
    corgi TEXT NOT NULL,
    dist TEXT NOT NULL,
    tarball_digest TEXT REFERENCES blobs (digest),
    size BIGINT NOT NULL,
    integrity TEXT NOT NULL,
    shasum TEXT NOT NULL,
    published_at DOUBLE PRECISION NOT NULL,
    deprecated TEXT,
    state TEXT NOT NULL,
    stage_id TEXT UNIQUE,
    stage_tag TEXT,
    staged_by TEXT,
    changed BIGINT NOT NULL,
    PRIMARY KEY (package_id, version)
);

-- changed is the package serial of the write that last changed the row: a replica that
-- holds the rows as of serial S reads only those changed since.
CREATE INDEX npm_versions_changed ON npm_versions (package_id, changed);

CREATE INDEX npm_versions_tarball ON npm_versions (tarball_digest);

CREATE TABLE npm_dist_tags (
    package_id BIGINT NOT NULL REFERENCES npm_packages (id) ON DELETE CASCADE,
    tag {{text_bytewise}} NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (package_id, tag)
);

-- Files published beside a version's tarball: the .sigstore provenance bundle of npm
-- publish --provenance, kept while the version is published.
CREATE TABLE npm_attachments (
    package_id BIGINT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    predicate_type TEXT,
    PRIMARY KEY (package_id, version, filename),
    FOREIGN KEY (package_id, version) REFERENCES npm_versions (package_id, version) ON DELETE CASCADE
);

CREATE INDEX npm_attachments_blob ON npm_attachments (blob_digest)
