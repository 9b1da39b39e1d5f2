-- legacy version: 3
-- Manifests are touched the way blobs are (an index naming one as a child): untagged
-- manifest collection only takes those untouched for the grace period.
ALTER TABLE oci_manifests ADD COLUMN touched_at DOUBLE PRECISION;

UPDATE oci_manifests SET touched_at = created_at;

-- Lookups by blob for the liveness checks.
CREATE INDEX oci_manifests_blob ON oci_manifests (blob_digest);

CREATE INDEX oci_manifest_refs_by_ref ON oci_manifest_refs (repository_id, name, ref_digest);

CREATE INDEX oci_uploads_updated ON oci_uploads (updated_at);
