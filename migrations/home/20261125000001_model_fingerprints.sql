-- Base-model fingerprints, cached per set of weight files. The key lists every
-- weight file's canonical path, size and mtime, so any change to a file (or
-- to the sharding) misses the cache and the fingerprint is recomputed.
CREATE TABLE IF NOT EXISTS model_fingerprints (
    files_key   TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL,
    computed_at INTEGER NOT NULL
);
