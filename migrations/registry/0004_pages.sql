-- What the registry's web pages (src/server/pages/) need beyond the API.

-- Downloads of each blob (= each version: an artifact's bytes include its
-- version), counted by `GET /blobs/…` and written in batches by the server.
CREATE TABLE blob_downloads (
    cksum     TEXT PRIMARY KEY,   -- 64 hex, versions.cksum
    downloads INTEGER NOT NULL
);

-- One row per dependency of a version, so "which packages depend on X" is
-- an index lookup instead of a scan of every version's `deps` JSON.
CREATE TABLE version_dependencies (
    version_id INTEGER NOT NULL REFERENCES versions(id),
    name       TEXT NOT NULL,     -- the dependency's package name
    PRIMARY KEY (version_id, name)
);
CREATE INDEX version_dependencies_by_name ON version_dependencies(name);
INSERT INTO version_dependencies (version_id, name)
    SELECT DISTINCT v.id, json_extract(d.value, '$.name') FROM versions v, json_each(v.deps) d;

-- Why a version was yanked, when the publisher said (`yank --reason`).
ALTER TABLE yank_history ADD COLUMN reason TEXT;

-- The home page's "newest", the per-model page, and download totals per package.
CREATE INDEX versions_by_published ON versions(published_at);
CREATE INDEX versions_by_base_model ON versions(base_model);
CREATE INDEX versions_by_cksum ON versions(cksum);
