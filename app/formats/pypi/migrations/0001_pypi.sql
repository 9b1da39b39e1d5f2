-- PyPI local repositories: projects, their files (each a CAS blob, a wheel's METADATA
-- another), and the filenames deleted files leave reserved.
-- serial: a repository's counter, bumped by every change. A project takes the new
-- value, so a page rendered for (project, serial) never goes stale, on any replica,
-- and a project deleted and made again never reuses an old serial.

CREATE TABLE pypi_serials (
    repository_id BIGINT PRIMARY KEY REFERENCES repositories (id) ON DELETE CASCADE,
    serial BIGINT NOT NULL
);

-- name is PEP 503 normalised, display_name as the first upload spelled it.
CREATE TABLE pypi_projects (
    id {{id}},
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name {{text_bytewise}} NOT NULL,
    display_name TEXT NOT NULL,
    serial BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (repository_id, name)
);

-- version is normalised (PEP 440), fields the upload form's other metadata as JSON.
-- yanked_reason is NULL unless yanked (an empty reason is still yanked).
CREATE TABLE pypi_files (
    id {{id}},
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    project_id BIGINT NOT NULL REFERENCES pypi_projects (id) ON DELETE CASCADE,
    filename {{text_bytewise}} NOT NULL,
    version TEXT NOT NULL,
    filetype TEXT NOT NULL,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    size BIGINT NOT NULL,
    requires_python TEXT,
    metadata_digest TEXT REFERENCES blobs (digest),
    metadata_size BIGINT,
    yanked_reason TEXT,
    fields TEXT NOT NULL,
    uploaded_at DOUBLE PRECISION NOT NULL,
    UNIQUE (repository_id, filename)
);

CREATE INDEX pypi_files_project ON pypi_files (project_id, filename);
CREATE INDEX pypi_files_blob ON pypi_files (blob_digest);
CREATE INDEX pypi_files_metadata ON pypi_files (metadata_digest);

CREATE TABLE pypi_deleted_files (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    filename {{text_bytewise}} NOT NULL,
    deleted_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repository_id, filename)
);
