-- Who did what: every write, delete and administrator's change, with its outcome.
-- actor: the principal's name, empty for anonymous. action: write, delete, admin,
-- or "admin: <object>.<verb>" for the management API. target: the request's path,
-- or the managed object (user:NAME, token:ID). outcome: the response's status.

CREATE TABLE auth_audit (
    id {{id}},
    at DOUBLE PRECISION NOT NULL,
    actor {{text_bytewise}} NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    outcome INTEGER NOT NULL
);

CREATE INDEX auth_audit_at ON auth_audit (at);

CREATE INDEX auth_audit_actor ON auth_audit (actor, id);
