-- The local registry's database. The sparse index under index/ is derived
-- from these tables (LocalRegistry::rebuild_index) and never the other way.

CREATE TABLE packages (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    -- `_`/`-` folded and lower-cased: two names with one canonical form
    -- cannot coexist (anti-squatting).
    canonical_name TEXT NOT NULL UNIQUE,
    created_at     INTEGER NOT NULL -- unix seconds
);

CREATE TABLE versions (
    id              INTEGER PRIMARY KEY,
    package_id      INTEGER NOT NULL REFERENCES packages(id),
    version         TEXT NOT NULL,
    cksum           TEXT NOT NULL,   -- 64 hex, sha256 of the artifact
    size            INTEGER NOT NULL,
    task            TEXT NOT NULL,
    description     TEXT NOT NULL,
    license         TEXT,
    base_model_name TEXT NOT NULL,
    base_model      TEXT NOT NULL,   -- 64 hex fingerprint
    hidden_size     INTEGER NOT NULL,
    prompt_length   INTEGER NOT NULL, -- 0 for a prompt set
    dtype           TEXT,             -- NULL for a prompt set
    deps            TEXT NOT NULL,    -- JSON [{"name","req"}], as in the index
    manifest        TEXT NOT NULL,    -- the embedded manifest JSON
    yanked          INTEGER NOT NULL DEFAULT 0,
    published_at    INTEGER NOT NULL,
    UNIQUE (package_id, version)
);

CREATE INDEX versions_by_package ON versions(package_id);

CREATE TABLE yank_history (
    id         INTEGER PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    yanked     INTEGER NOT NULL,   -- 1 = yanked, 0 = unyanked
    at         INTEGER NOT NULL
);

CREATE TABLE publish_log (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    version TEXT NOT NULL,
    cksum   TEXT NOT NULL,
    size    INTEGER NOT NULL,
    at      INTEGER NOT NULL
);

-- Full-text search over each package's latest version; rowid = packages.id.
CREATE VIRTUAL TABLE package_search USING fts5(name, task, description);

-- Bumped by every write; the index records the value it was generated from
-- (index/.generation), so a crash between the DB commit and the index write
-- is detected and repaired on the next open.
CREATE TABLE registry_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO registry_state (id, generation) VALUES (1, 0);
