-- What the registry's web pages need (see migrations/registry/0004_pages.sql).

CREATE TABLE blob_downloads (
    cksum     TEXT PRIMARY KEY,
    downloads BIGINT NOT NULL
);

CREATE TABLE version_dependencies (
    version_id BIGINT NOT NULL REFERENCES versions(id),
    name       TEXT NOT NULL,
    PRIMARY KEY (version_id, name)
);
CREATE INDEX version_dependencies_by_name ON version_dependencies(name);
INSERT INTO version_dependencies (version_id, name)
    SELECT DISTINCT v.id, d ->> 'name' FROM versions v, json_array_elements(v.deps::json) d;

ALTER TABLE yank_history ADD COLUMN reason TEXT;

CREATE INDEX versions_by_published ON versions(published_at);
CREATE INDEX versions_by_base_model ON versions(base_model);
CREATE INDEX versions_by_cksum ON versions(cksum);
