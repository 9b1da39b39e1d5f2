-- legacy version: 2
-- OCI/Docker registries: upload sessions, blob links, manifests, their references, tags.
-- A "name" is the image name inside an artifactapi repository (team/app in
-- /v2/docker-local/team/app/...). Digests are as clients address them
-- ("sha256:…" or "sha512:…"); blob_digest is always the CAS's sha256 digest.

CREATE TABLE oci_uploads (
    id TEXT PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- Each PATCH stages its bytes as one object; a part is recorded only once its
-- object is complete, so a session is always resumable from its recorded size.
CREATE TABLE oci_upload_parts (
    upload_id TEXT NOT NULL REFERENCES oci_uploads (id) ON DELETE CASCADE,
    "offset" BIGINT NOT NULL,
    size BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (upload_id, "offset")
);

-- Which blobs an image name holds (what it may reference, serve and mount from).
CREATE TABLE oci_blob_links (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name {{text_bytewise}} NOT NULL,
    digest TEXT NOT NULL,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repository_id, name, digest)
);

CREATE INDEX oci_blob_links_blob ON oci_blob_links (blob_digest);

CREATE TABLE oci_manifests (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name {{text_bytewise}} NOT NULL,
    digest TEXT NOT NULL,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    subject TEXT,
    size BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repository_id, name, digest)
);

CREATE INDEX oci_manifests_subject ON oci_manifests (repository_id, name, subject);

-- What each manifest points at: config, layers, child manifests, subject.
CREATE TABLE oci_manifest_refs (
    repository_id BIGINT NOT NULL,
    name {{text_bytewise}} NOT NULL,
    manifest_digest TEXT NOT NULL,
    ref_digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (repository_id, name, manifest_digest, ref_digest, kind),
    FOREIGN KEY (repository_id, name, manifest_digest)
        REFERENCES oci_manifests (repository_id, name, digest) ON DELETE CASCADE
);

CREATE INDEX oci_manifest_refs_ref ON oci_manifest_refs (ref_digest);

CREATE TABLE oci_tags (
    repository_id BIGINT NOT NULL,
    name {{text_bytewise}} NOT NULL,
    tag {{text_bytewise}} NOT NULL,
    digest TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repository_id, name, tag),
    FOREIGN KEY (repository_id, name, digest)
        REFERENCES oci_manifests (repository_id, name, digest) ON DELETE CASCADE
);
