-- npm's web login: a session the CLI opened (POST /-/v1/login), signed in through the
-- browser page, then collected by the CLI's poll of the done URL. Nothing here gives
-- a token to whoever reads the table: the done URL's secret is kept as its sha256,
-- and the token is only made on the poll that presents that secret.
-- principal is the name that signed in (NULL until then), expires_at is epoch seconds.

CREATE TABLE npm_login_sessions (
    id TEXT PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    secret_digest TEXT NOT NULL,
    principal TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX npm_login_sessions_expiry ON npm_login_sessions (expires_at);
