-- The registry database on PostgreSQL (`attempt-pkg serve --database
-- postgres://…`): the same tables as migrations/registry (SQLite), so one
-- set of queries serves both. Integers are BIGINT throughout (the code reads
-- and binds 64-bit integers; `yanked` is 0/1 as in SQLite).

CREATE TABLE packages (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    canonical_name TEXT NOT NULL UNIQUE,
    created_at     BIGINT NOT NULL
);

CREATE TABLE versions (
    id              BIGSERIAL PRIMARY KEY,
    package_id      BIGINT NOT NULL REFERENCES packages(id),
    version         TEXT NOT NULL,
    cksum           TEXT NOT NULL,
    size            BIGINT NOT NULL,
    task            TEXT NOT NULL,
    description     TEXT NOT NULL,
    license         TEXT,
    base_model_name TEXT NOT NULL,
    base_model      TEXT NOT NULL,
    hidden_size     BIGINT NOT NULL,
    prompt_length   BIGINT NOT NULL,
    dtype           TEXT,
    deps            TEXT NOT NULL,
    manifest        TEXT NOT NULL,
    yanked          BIGINT NOT NULL DEFAULT 0,
    published_at    BIGINT NOT NULL,
    UNIQUE (package_id, version)
);

CREATE INDEX versions_by_package ON versions(package_id);

CREATE TABLE yank_history (
    id         BIGSERIAL PRIMARY KEY,
    version_id BIGINT NOT NULL REFERENCES versions(id),
    yanked     BIGINT NOT NULL,
    at         BIGINT NOT NULL
);

CREATE TABLE publish_log (
    id      BIGSERIAL PRIMARY KEY,
    name    TEXT NOT NULL,
    version TEXT NOT NULL,
    cksum   TEXT NOT NULL,
    size    BIGINT NOT NULL,
    at      BIGINT NOT NULL
);

-- What search sees of each package (its latest version), like SQLite's FTS5
-- table; searched with PostgreSQL's own full-text search (see search()).
CREATE TABLE package_search (
    rowid       BIGINT PRIMARY KEY REFERENCES packages(id),
    name        TEXT NOT NULL,
    task        TEXT NOT NULL,
    description TEXT NOT NULL
);

CREATE TABLE registry_state (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO registry_state (id, generation) VALUES (1, 0);
