-- API tokens and package owners for registries served over HTTP
-- (`attempt-pkg serve`). Local, file-system publishing does not use them.

-- Tokens are stored as sha256 hashes only: the secret is shown once, at
-- creation (`attempt-pkg token create`).
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,          -- a label, for `token list` / `token revoke`
    owner        TEXT NOT NULL,          -- the user the token acts for (package owners are users)
    token_hash   TEXT NOT NULL UNIQUE,   -- 64 hex, sha256 of the token
    scopes       TEXT NOT NULL,          -- comma-separated: publish, yank
    packages     TEXT,                   -- JSON array of package names; NULL = every package
    created_at   INTEGER NOT NULL,       -- unix seconds
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- A name is reusable once its token is revoked.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at IS NULL;

-- Who may publish new versions of, yank, and manage a package. The owner of
-- the token that first publishes a package over HTTP becomes its owner.
CREATE TABLE package_owners (
    package_name TEXT NOT NULL,
    owner        TEXT NOT NULL,
    added_at     INTEGER NOT NULL,
    PRIMARY KEY (package_name, owner)
);
