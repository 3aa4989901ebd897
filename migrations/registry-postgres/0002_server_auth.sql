-- API tokens and package owners (see migrations/registry/0002_server_auth.sql).

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    owner        TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    packages     TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at IS NULL;

CREATE TABLE package_owners (
    package_name TEXT NOT NULL,
    owner        TEXT NOT NULL,
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (package_name, owner)
);
