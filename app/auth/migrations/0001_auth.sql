-- Who may do what: users and service accounts (one table, "kind" tells them apart),
-- groups, API tokens, permissions granted through the API, the keys that sign OCI
-- bearer tokens, and a counter every replica polls to drop what it cached.
-- Secrets are never stored: passwords as argon2id hashes, tokens as their sha256.

CREATE TABLE auth_principals (
    id {{id}},
    name {{text_bytewise}} NOT NULL UNIQUE,
    kind TEXT NOT NULL,                 -- user | service
    password_hash TEXT,                 -- argon2id (PHC string), NULL: no password login
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    description TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE auth_groups (
    id {{id}},
    name {{text_bytewise}} NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE auth_members (
    group_id BIGINT NOT NULL REFERENCES auth_groups (id) ON DELETE CASCADE,
    principal_id BIGINT NOT NULL REFERENCES auth_principals (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, principal_id)
);

-- A token's scopes are JSON, [{"repository": "<name or glob>", "actions": [...]}],
-- an empty list means all its owner may do.
CREATE TABLE auth_tokens (
    id {{id}},
    principal_id BIGINT NOT NULL REFERENCES auth_principals (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);

CREATE INDEX auth_tokens_principal ON auth_tokens (principal_id);

-- subject: "user:<name>" or "group:<name>", actions: a JSON list.
CREATE TABLE auth_permissions (
    id {{id}},
    subject {{text_bytewise}} NOT NULL,
    repository {{text_bytewise}} NOT NULL,
    actions TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (subject, repository)
);

-- retired_at NULL: it verifies (and the newest such signs), else it verifies nothing.
CREATE TABLE auth_signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    public_pem TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    retired_at DOUBLE PRECISION
);

CREATE TABLE auth_version (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);

INSERT INTO auth_version (id, version) VALUES (1, 0);
