//! The local registry: a directory holding the sparse index, the blobs and
//! the SQLite database that is the source of truth for both.
//!
//! ```text
//! <root>/
//!   registry.db        SQLite (migrations/registry): packages, versions, history, FTS
//!                      (or a PostgreSQL database instead: `open_with_database`)
//!   index/config.json  index config (registry-index `IndexConfig`)
//!   index/.generation  DB generation the index was written from
//!   index/1/a, index/mn/li/mnli-prompt, …   one JSON line per version
//!   blobs/sha256/ab/<64 hex>                 artifacts, content-addressed
//!   tmp/               temp files; renamed into place, cleaned on open
//!   .lock              writers hold an exclusive lock on it
//! ```
//!
//! The core is async (sqlx) so an HTTP server can share it;
//! [`super::BlockingRegistry`] wraps it for the CLI.
//!
//! The database is SQLite in the directory by default, or PostgreSQL, so that
//! several server processes on several hosts share one registry (the
//! directory then lives on a shared volume). Both run the same queries
//! through sqlx's `Any` driver; the schemas (migrations/registry and
//! migrations/registry-postgres) differ only in types, and search is the one
//! dialect-specific query.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use registry_index::{
    blob_path, canonical_name, index_path, validate_name, write_index_file, Checksum, IndexConfig, IndexEntry,
    FORMAT_VERSION,
};
use semver::Version;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use super::api::{PackageInfo, PackageSummary, Published, VersionInfo, YankEvent, YankOutcome};
use super::browse::Filters;
use super::{DirSource, RegistrySource};
use crate::fsutil::sha256;
use crate::package::Artifact;

const DB_FILE: &str = "registry.db";
const GENERATION_FILE: &str = ".generation";
const CONFIG_FILE: &str = "config.json";
/// What [`version_from_row`] reads (the stored manifest JSON is left out: it
/// is large and only needed to audit a version).
pub(super) const VERSION_COLUMNS: &str =
    "versions.version, versions.cksum, versions.size, versions.yanked, versions.task, \
     versions.description, versions.license, versions.base_model_name, versions.base_model, versions.hidden_size, \
     versions.prompt_length, versions.dtype, versions.deps, versions.published_at, versions.signature";

/// A local registry directory, opened (created if needed) and consistent.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    root: PathBuf,
    pool: AnyPool,
    backend: Backend,
}

/// Which database holds the registry's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `<root>/registry.db`: the embedded default.
    Sqlite,
    /// A PostgreSQL server shared by several server processes.
    Postgres,
}

impl LocalRegistry {
    /// Opens the registry at `root`, creating it if it does not exist, and
    /// repairs the index if a crash left it behind the database.
    pub async fn open(root: &Path) -> Result<LocalRegistry> {
        LocalRegistry::open_with_database(root, None).await
    }

    /// Like [`LocalRegistry::open`], with the state in the database at
    /// `database_url` (`postgres://…`; `None` = SQLite in `root`). The
    /// directory still holds the blobs and the index files.
    pub async fn open_with_database(root: &Path, database_url: Option<&str>) -> Result<LocalRegistry> {
        for dir in [root.to_path_buf(), root.join("index"), root.join("blobs"), root.join("tmp")] {
            fs::create_dir_all(&dir).with_context(|| format!("creating registry directory {}", dir.display()))?;
        }
        let lock = RegistryLock::acquire(root).await?;
        install_drivers();
        let (pool, backend, shown) = match database_url {
            None => {
                let path = root.join(DB_FILE);
                // sqlx percent-decodes the path part of the URL.
                let escaped = path.display().to_string().replace('%', "%25").replace('?', "%3F").replace('#', "%23");
                let url = format!("sqlite://{escaped}?mode=rwc");
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await
                    .with_context(|| format!("opening registry database {}", path.display()))?;
                (pool, Backend::Sqlite, path.display().to_string())
            }
            Some(url) => {
                let shown = redact_url(url);
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    bail!("unsupported registry database `{shown}`: pass a postgres://USER@HOST/DB URL, or leave --database out for SQLite in the registry directory");
                }
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await
                    .with_context(|| format!("connecting to the registry database {shown}; is PostgreSQL running and the database created?"))?;
                (pool, Backend::Postgres, shown)
            }
        };
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/registry"),
            Backend::Postgres => sqlx::migrate!("./migrations/registry-postgres"),
        };
        migrator.run(&pool).await.with_context(|| format!("migrating registry database {shown}"))?;
        let registry = LocalRegistry { root: root.to_path_buf(), pool, backend };
        drop(lock);
        let _lock = registry.lock_writes().await?;
        registry.write_config()?;
        registry.clean_tmp();
        registry.repair_locked().await?;
        Ok(registry)
    }

    /// Like [`LocalRegistry::open`], but fails if there is no registry at `root`.
    pub async fn open_existing(root: &Path) -> Result<LocalRegistry> {
        if !root.join(DB_FILE).is_file() {
            bail!(
                "no registry at {} (no {DB_FILE}); publish a package there first, or pass --registry DIR / set ATTEMPT_REGISTRY",
                root.display()
            );
        }
        LocalRegistry::open(root).await
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Plain-file read access to the index and blobs (what resolvers and fetchers use).
    pub fn source(&self) -> DirSource {
        DirSource::new(self.root.clone())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the blob with checksum `cksum` is stored.
    pub fn blob_file(&self, cksum: &Checksum) -> PathBuf {
        self.root.join("blobs").join(blob_path(cksum))
    }

    /// Builds the artifact of an authoring directory and publishes it.
    pub async fn publish_dir(&self, dir: &Path) -> Result<Published> {
        let artifact = Artifact::build(dir)?;
        self.publish(&artifact).await
    }

    /// Publishes a built artifact. Refuses an existing name@version, a name
    /// confusable with another package, and dependencies the registry cannot
    /// satisfy. Blob first, then one DB transaction, then the index file: a
    /// crash at any point leaves the old state or the new one.
    pub async fn publish(&self, artifact: &Artifact) -> Result<Published> {
        let mut lock = self.lock_writes().await?;
        self.publish_locked(&mut lock, artifact).await
    }

    /// [`LocalRegistry::publish`] under a write lock the caller already holds
    /// (the server checks ownership under the same lock, so two server
    /// processes cannot both claim a new package).
    pub async fn publish_locked(&self, _lock: &mut WriteLock, artifact: &Artifact) -> Result<Published> {
        let package = artifact.package();
        let manifest = &package.manifest;
        let id = manifest.id();
        self.repair_locked().await?;

        let canon = canonical_name(&id.name);
        let existing: Option<(i64, String)> = sqlx::query_as("SELECT id, name FROM packages WHERE canonical_name = $1")
            .bind(&canon)
            .fetch_optional(&self.pool)
            .await?;
        if let Some((_, other)) = &existing {
            if other != &id.name {
                bail!(
                    "cannot publish `{}`: the name is too similar to the existing package `{other}` \
                     (names differing only in `-`/`_` or case are the same package); publish as `{other}` or choose another name",
                    id.name
                );
            }
        }
        if let Some((package_id, _)) = &existing {
            let taken: Option<(String,)> =
                sqlx::query_as("SELECT cksum FROM versions WHERE package_id = $1 AND version = $2")
                    .bind(package_id)
                    .bind(id.version.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some((cksum,)) = taken {
                bail!(
                    "{id} is already published (sha256:{cksum}); published versions are immutable, \
                     bump `version` in Prompt.toml to publish a change"
                );
            }
        }
        self.check_dependencies(manifest).await?;

        self.store_blob(artifact)?;
        crash_point("after-blob");

        let entry = package.index_entry();
        let now = unix_now();
        let mut tx = self.pool.begin().await?;
        let package_id = match existing {
            Some((pid, _)) => pid,
            None => {
                sqlx::query_as::<_, (i64,)>(
                    "INSERT INTO packages (name, canonical_name, created_at) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(&id.name)
                .bind(&canon)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .with_context(|| format!("registering package `{}`", id.name))?
                .0
            }
        };
        let (version_id,): (i64,) = sqlx::query_as(
            "INSERT INTO versions (package_id, version, cksum, size, task, description, license, base_model_name, \
             base_model, hidden_size, prompt_length, dtype, deps, manifest, yanked, published_at, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, $15, $16) RETURNING id",
        )
        .bind(package_id)
        .bind(id.version.to_string())
        .bind(entry.cksum.hex())
        .bind(entry.size as i64)
        .bind(&manifest.package.task)
        .bind(&manifest.package.description)
        .bind(&manifest.package.license)
        .bind(&manifest.base_model.name)
        .bind(entry.base_model.hex())
        .bind(i64::from(entry.hidden_size))
        .bind(i64::from(entry.prompt_length))
        .bind(package.prompt.as_ref().map(|p| p.dtype().as_str()))
        .bind(serde_json::to_string(&entry.deps)?)
        .bind(manifest.to_json())
        .bind(now)
        .bind(entry.sig.as_ref().map(serde_json::to_string).transpose()?)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            // The unique constraint backs up the check above should two
            // writers ever bypass the lock (e.g. a network file system).
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                anyhow::anyhow!("{id} is already published; published versions are immutable")
            }
            _ => anyhow::Error::new(e).context(format!("recording {id}")),
        })?;
        // The reverse direction of `deps`, for the pages' "dependents".
        for dep in manifest.dependencies.keys() {
            sqlx::query("INSERT INTO version_dependencies (version_id, name) VALUES ($1, $2)")
                .bind(version_id)
                .bind(dep)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO publish_log (name, version, cksum, size, at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id.name)
            .bind(id.version.to_string())
            .bind(entry.cksum.hex())
            .bind(entry.size as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        refresh_search_row(&mut tx, package_id, &id.name).await?;
        let generation = bump_generation(&mut tx).await?;
        tx.commit().await.with_context(|| format!("committing {id}"))?;
        crash_point("after-db");

        self.write_package_index(&id.name).await?;
        self.write_generation(generation)?;
        crash_point("after-index");
        Ok(Published { name: id.name, version: id.version, cksum: entry.cksum, size: entry.size })
    }

    /// Yanks (`yanked = true`) or unyanks a published version, recording the
    /// change and, for a yank, the publisher's `reason` if given.
    pub async fn set_yanked(
        &self,
        name: &str,
        version: &Version,
        yanked: bool,
        reason: Option<&str>,
    ) -> Result<YankOutcome> {
        validate_name(name)?;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if let Some(reason) = reason {
            check_yank_reason(reason)?;
        }
        let _lock = self.lock_writes().await?;
        self.repair_locked().await?;
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT v.id, v.yanked, p.id FROM versions v JOIN packages p ON p.id = v.package_id \
             WHERE p.name = $1 AND v.version = $2",
        )
        .bind(name)
        .bind(version.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some((version_id, current, package_id)) = row else {
            bail!("{name}@{version} is not published in {}; see `attempt-pkg info {name}`", self.root.display());
        };
        if (current != 0) == yanked {
            return Ok(YankOutcome::AlreadyInState);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE versions SET yanked = $1 WHERE id = $2")
            .bind(i64::from(yanked))
            .bind(version_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO yank_history (version_id, yanked, at, reason) VALUES ($1, $2, $3, $4)")
            .bind(version_id)
            .bind(i64::from(yanked))
            .bind(unix_now())
            .bind(reason.filter(|_| yanked))
            .execute(&mut *tx)
            .await?;
        // Search describes the latest unyanked version, which may have changed.
        refresh_search_row(&mut tx, package_id, name).await?;
        let generation = bump_generation(&mut tx).await?;
        tx.commit().await?;
        crash_point("after-db");
        self.write_package_index(name).await?;
        self.write_generation(generation)?;
        Ok(YankOutcome::Changed)
    }

    /// All versions and the yank history of `name`; `None` if it does not exist.
    pub async fn info(&self, name: &str) -> Result<Option<PackageInfo>> {
        validate_name(name)?;
        let Some((package_id,)) = sqlx::query_as::<_, (i64,)>("SELECT id FROM packages WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let versions = self.versions_of(package_id).await?;
        let rows = sqlx::query(
            "SELECT v.version, h.yanked, h.at, h.reason FROM yank_history h JOIN versions v ON v.id = h.version_id \
             WHERE v.package_id = $1 ORDER BY h.id",
        )
        .bind(package_id)
        .fetch_all(&self.pool)
        .await?;
        let yank_history = rows.iter().map(yank_event_from_row).collect::<Result<_>>()?;
        Ok(Some(PackageInfo { name: name.to_string(), versions, yank_history }))
    }

    /// A package whose canonical name equals `name`'s, if any (for "did you mean").
    pub async fn similar_name(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT name FROM packages WHERE canonical_name = $1")
            .bind(canonical_name(name))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// Every package, by name.
    pub async fn list(&self) -> Result<Vec<PackageSummary>> {
        let all = self.all_versions().await?;
        Ok(all.into_iter().filter_map(|(name, versions)| summarize(name, &versions)).collect())
    }

    /// Packages `offset..offset + limit` by name, and whether more follow:
    /// what the server answers a listing with, one page per request, so a
    /// request reads one page of `packages` (through its unique index on
    /// `name`) and their versions, never the whole registry.
    pub async fn list_page(&self, offset: u64, limit: u64) -> Result<(Vec<PackageSummary>, bool)> {
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        // One row more than asked for says whether there is a next page.
        let page: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM packages ORDER BY name LIMIT $1 OFFSET $2")
            .bind(as_i64(limit.saturating_add(1)))
            .bind(as_i64(offset))
            .fetch_all(&self.pool)
            .await
            .context("listing the registry")?;
        let more = page.len() as u64 > limit;
        let mut summaries = Vec::with_capacity(page.len());
        for (package_id, name) in page.into_iter().take(usize::try_from(limit).unwrap_or(usize::MAX)) {
            let versions = self.versions_of(package_id).await?;
            summaries.extend(summarize(name, &versions));
        }
        Ok((summaries, more))
    }

    /// Full-text search over names, tasks and descriptions (of each package's
    /// latest version), best match first (name hits above task hits above
    /// description hits). Every word must match, as a prefix.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<PackageSummary>> {
        self.search_filtered(query, &Filters::default(), limit).await
    }

    /// [`LocalRegistry::search`] limited to packages with a version that
    /// matches `filters` (the web pages' task and base-model filters).
    pub async fn search_filtered(&self, query: &str, filters: &Filters, limit: usize) -> Result<Vec<PackageSummary>> {
        let words: Vec<String> =
            query.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        if words.is_empty() {
            bail!("the search query `{query}` has no words to search for");
        }
        // Words are alphanumeric only, so the query syntaxes below cannot be injected.
        let (sql, terms) = match self.backend {
            Backend::Sqlite => (
                format!(
                    "SELECT package_search.rowid AS id FROM package_search WHERE package_search MATCH $1 {} \
                     ORDER BY bm25(package_search, 10.0, 4.0, 1.0), package_search.rowid LIMIT $2",
                    filters.sql("package_search.rowid", 3)
                ),
                words.iter().map(|w| format!("\"{w}\"*")).collect::<Vec<_>>().join(" "),
            ),
            Backend::Postgres => (
                format!(
                    "SELECT s.rowid AS id FROM package_search s, to_tsquery('simple', $1) q, \
                     LATERAL (SELECT setweight(to_tsvector('simple', s.name), 'A') || setweight(to_tsvector('simple', s.task), 'B') \
                     || setweight(to_tsvector('simple', s.description), 'C') AS doc) d \
                     WHERE d.doc @@ q {} ORDER BY ts_rank('{{0.1, 0.2, 0.4, 1.0}}', d.doc, q) DESC, s.rowid LIMIT $2",
                    filters.sql("s.rowid", 3)
                ),
                words.iter().map(|w| format!("{w}:*")).collect::<Vec<_>>().join(" & "),
            ),
        };
        let rows = filters
            .bind(sqlx::query(&sql).bind(terms).bind(i64::try_from(limit).unwrap_or(i64::MAX)))
            .fetch_all(&self.pool)
            .await
            .context("searching the registry")?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
            let package_id: i64 = row.get("id");
            let (name,): (String,) = sqlx::query_as("SELECT name FROM packages WHERE id = $1")
                .bind(package_id)
                .fetch_one(&self.pool)
                .await?;
            let versions = self.versions_of(package_id).await?;
            if let Some(summary) = summarize(name, &versions) {
                hits.push(summary);
            }
        }
        Ok(hits)
    }

    /// Regenerates the whole sparse index from the database: rewrites every
    /// package file that differs, removes files of unknown packages, and
    /// records the generation. Takes the registry lock.
    pub async fn rebuild_index(&self) -> Result<()> {
        let _lock = self.lock_writes().await?;
        self.rebuild_index_locked().await
    }

    /// Compares the index files with the database; returns the differences
    /// (empty when consistent). Does not modify anything.
    pub async fn check_index(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let source = self.source();
        let all = self.all_versions().await?;
        for (name, versions) in &all {
            let expected: Vec<IndexEntry> = versions.iter().map(|v| entry_of(name, v)).collect();
            let mut found = match source.versions(name) {
                Ok(found) => found,
                Err(e) => {
                    problems.push(format!("{e:#}"));
                    continue;
                }
            };
            found.sort_by(|a, b| a.vers.cmp(&b.vers));
            if found != expected {
                problems.push(format!("index file of `{name}` differs from the database"));
            }
        }
        for name in self.index_file_names()? {
            if !all.contains_key(&name) {
                problems.push(format!("index lists `{name}`, which the database does not know"));
            }
        }
        Ok(problems)
    }

    // ---- internals ------------------------------------------------------

    /// The lock every writer holds: the directory's file lock (processes
    /// sharing the directory) and, on PostgreSQL, an advisory lock (processes
    /// sharing the database from other hosts, where a network file system's
    /// locks may not hold). Not reentrant: do not call writers that take it.
    pub async fn lock_writes(&self) -> Result<WriteLock> {
        let file = RegistryLock::acquire(&self.root).await?;
        let db = match self.backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await.context("taking a registry database connection")?;
                // A session lock lives as long as the connection; closing the
                // connection (not returning it to the pool) releases it, also
                // when the writer fails half-way.
                conn.close_on_drop();
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(PG_WRITE_LOCK_KEY)
                    .execute(&mut *conn)
                    .await
                    .context("taking the registry's write lock in PostgreSQL")?;
                Some(conn)
            }
        };
        Ok(WriteLock { _db: db, _file: file })
    }

    async fn check_dependencies(&self, manifest: &crate::package::Manifest) -> Result<()> {
        for (dep, req) in &manifest.dependencies {
            let Some(info) = self.info(dep).await? else {
                let hint = match self.similar_name(dep).await? {
                    Some(similar) => format!(" (did you mean `{similar}`?)"),
                    None => String::from("; publish it first"),
                };
                bail!("dependency `{dep}` of {} is not published in this registry{hint}", manifest.id());
            };
            if !info.versions.iter().any(|v| !v.yanked && req.matches(&v.version)) {
                let have: Vec<String> = info.versions.iter().map(|v| v.version.to_string()).collect();
                bail!(
                    "dependency `{dep} = \"{req}\"` of {} matches no published, unyanked version (have: {})",
                    manifest.id(),
                    have.join(", ")
                );
            }
        }
        Ok(())
    }

    fn store_blob(&self, artifact: &Artifact) -> Result<()> {
        let dest = self.blob_file(artifact.checksum());
        // Content-addressed: an intact blob with this hash is already the right bytes.
        if let Ok(existing) = fs::read(&dest) {
            if sha256(&existing) == *artifact.checksum() {
                return Ok(());
            }
        }
        let dir = dest.parent().context("blob path has no parent")?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_via_tmp(&self.root.join("tmp"), &dest, artifact.bytes())
    }

    pub(super) async fn versions_of(&self, package_id: i64) -> Result<Vec<VersionInfo>> {
        let rows = sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE package_id = $1"))
            .bind(package_id)
            .fetch_all(&self.pool)
            .await?;
        let mut versions = rows.iter().map(version_from_row).collect::<Result<Vec<_>>>()?;
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(versions)
    }

    async fn all_versions(&self) -> Result<BTreeMap<String, Vec<VersionInfo>>> {
        let rows = sqlx::query(&format!(
            "SELECT p.name AS package_name, {VERSION_COLUMNS} FROM versions JOIN packages p ON p.id = versions.package_id"
        ))
            .fetch_all(&self.pool)
            .await?;
        let mut all: BTreeMap<String, Vec<VersionInfo>> = BTreeMap::new();
        for row in &rows {
            all.entry(row.get("package_name")).or_default().push(version_from_row(row)?);
        }
        for versions in all.values_mut() {
            versions.sort_by(|a, b| a.version.cmp(&b.version));
        }
        Ok(all)
    }

    async fn db_generation(&self) -> Result<i64> {
        let (generation,): (i64,) =
            sqlx::query_as("SELECT generation FROM registry_state WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(generation)
    }

    fn index_generation(&self) -> Option<i64> {
        fs::read_to_string(self.root.join("index").join(GENERATION_FILE)).ok()?.trim().parse().ok()
    }

    /// Records the generation the index now reflects. Written after the
    /// index files are durable, and atomically, but without fsync: losing
    /// this update in a crash only costs a needless rebuild on the next open.
    fn write_generation(&self, generation: i64) -> Result<()> {
        let path = self.root.join("index").join(GENERATION_FILE);
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(self.root.join("tmp"))
            .context("creating a temporary file in the registry's tmp/")?;
        fs::write(tmp.path(), format!("{generation}\n"))
            .with_context(|| format!("writing {}", tmp.path().display()))?;
        tmp.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("moving a new file into {}", path.display()))?;
        Ok(())
    }

    /// Caller holds the lock. Rebuilds the index if it lags the database.
    async fn repair_locked(&self) -> Result<()> {
        if self.index_generation() != Some(self.db_generation().await?) {
            tracing::warn!("registry index at {} is behind its database; regenerating it", self.root.display());
            self.rebuild_index_locked().await?;
        }
        Ok(())
    }

    async fn rebuild_index_locked(&self) -> Result<()> {
        let generation = self.db_generation().await?;
        let all = self.all_versions().await?;
        for (name, versions) in &all {
            let entries: Vec<IndexEntry> = versions.iter().map(|v| entry_of(name, v)).collect();
            self.write_index_entries(name, &entries)?;
        }
        for name in self.index_file_names()? {
            if !all.contains_key(&name) {
                let path = self.root.join("index").join(index_path(&name)?);
                fs::remove_file(&path).with_context(|| format!("removing stale index file {}", path.display()))?;
            }
        }
        self.write_generation(generation)
    }

    async fn write_package_index(&self, name: &str) -> Result<()> {
        let (package_id,): (i64,) =
            sqlx::query_as("SELECT id FROM packages WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        let entries: Vec<IndexEntry> = self.versions_of(package_id).await?.iter().map(|v| entry_of(name, v)).collect();
        self.write_index_entries(name, &entries)
    }

    fn write_index_entries(&self, name: &str, entries: &[IndexEntry]) -> Result<()> {
        let path = self.root.join("index").join(index_path(name)?);
        let text = write_index_file(entries);
        if fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let dir = path.parent().context("index path has no parent")?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_via_tmp(&self.root.join("tmp"), &path, text.as_bytes())
    }

    /// Package names that have a file in the index (files at their proper path only).
    fn index_file_names(&self) -> Result<Vec<String>> {
        let index = self.root.join("index");
        let mut names = Vec::new();
        let mut stack = vec![index.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
                let proper = index_path(name).ok().map(|rel| index.join(rel));
                if proper.as_deref() == Some(path.as_path()) {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn write_config(&self) -> Result<()> {
        let config = IndexConfig { dl: "../blobs".to_string(), api: None, auth_required: false };
        let text = serde_json::to_string_pretty(&config)? + "\n";
        let path = self.root.join("index").join(CONFIG_FILE);
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            write_via_tmp(&self.root.join("tmp"), &path, text.as_bytes())?;
        }
        Ok(())
    }

    /// Removes temp files a killed writer left behind. Caller holds the lock.
    fn clean_tmp(&self) {
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// A yank reason is shown on one line of a web page: short, no control characters.
fn check_yank_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        bail!("the yank reason must be one line of at most 500 characters");
    }
    Ok(())
}

pub(super) fn summarize(name: String, versions: &[VersionInfo]) -> Option<PackageSummary> {
    let latest = versions.iter().rev().find(|v| !v.yanked).or_else(|| versions.last())?;
    Some(PackageSummary {
        name,
        latest: latest.version.clone(),
        versions: versions.len(),
        task: latest.task.clone(),
        description: latest.description.clone(),
        base_model: latest.base_model.clone(),
        hidden_size: latest.hidden_size,
        prompt_length: latest.prompt_length,
        yanked: versions.iter().all(|v| v.yanked),
    })
}

fn entry_of(name: &str, v: &VersionInfo) -> IndexEntry {
    IndexEntry {
        name: name.to_string(),
        vers: v.version.clone(),
        cksum: v.cksum.clone(),
        deps: v.deps.clone(),
        yanked: v.yanked,
        task: v.task.clone(),
        base_model: v.base_model.clone(),
        hidden_size: v.hidden_size,
        prompt_length: v.prompt_length,
        size: v.size,
        v: FORMAT_VERSION,
        sig: v.signature.clone(),
    }
}

/// A `yank_history` row selected as `version, yanked, at, reason`.
pub(super) fn yank_event_from_row(row: &AnyRow) -> Result<YankEvent> {
    Ok(YankEvent {
        version: parse_db_version(row.get("version"))?,
        yanked: row.get::<i64, _>("yanked") != 0,
        at: row.get("at"),
        reason: row.get("reason"),
    })
}

pub(super) fn version_from_row(row: &AnyRow) -> Result<VersionInfo> {
    let corrupt = |what: &str| format!("registry database has an invalid {what}");
    let deps: String = row.get("deps");
    Ok(VersionInfo {
        version: parse_db_version(row.get("version"))?,
        cksum: Checksum::parse(row.get("cksum")).with_context(|| corrupt("checksum"))?,
        size: u64::try_from(row.get::<i64, _>("size")).with_context(|| corrupt("size"))?,
        yanked: row.get::<i64, _>("yanked") != 0,
        task: row.get("task"),
        description: row.get("description"),
        license: row.get("license"),
        base_model_name: row.get("base_model_name"),
        base_model: Checksum::parse(row.get("base_model")).with_context(|| corrupt("base-model fingerprint"))?,
        hidden_size: u32::try_from(row.get::<i64, _>("hidden_size")).with_context(|| corrupt("hidden size"))?,
        prompt_length: u32::try_from(row.get::<i64, _>("prompt_length")).with_context(|| corrupt("prompt length"))?,
        dtype: row.get("dtype"),
        deps: serde_json::from_str(&deps).with_context(|| corrupt("dependency list"))?,
        published_at: row.get("published_at"),
        signature: row
            .get::<Option<String>, _>("signature")
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .with_context(|| corrupt("task signature"))?,
    })
}

pub(super) fn parse_db_version(text: &str) -> Result<Version> {
    Version::parse(text).with_context(|| format!("registry database has an invalid version `{text}`"))
}

/// Points the search row of a package at its latest version's text.
async fn refresh_search_row(tx: &mut Transaction<'_, Any>, package_id: i64, name: &str) -> Result<()> {
    let rows = sqlx::query("SELECT version, yanked, task, description FROM versions WHERE package_id = $1")
        .bind(package_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut best: Option<(Version, bool, String, String)> = None;
    for row in rows {
        let v = parse_db_version(row.get("version"))?;
        let yanked = row.get::<i64, _>("yanked") != 0;
        let better = match &best {
            None => true,
            Some((bv, by, _, _)) => (!yanked, &v) > (!*by, bv),
        };
        if better {
            best = Some((v, yanked, row.get("task"), row.get("description")));
        }
    }
    sqlx::query("DELETE FROM package_search WHERE rowid = $1").bind(package_id).execute(&mut **tx).await?;
    if let Some((_, _, task, description)) = best {
        sqlx::query("INSERT INTO package_search (rowid, name, task, description) VALUES ($1, $2, $3, $4)")
            .bind(package_id)
            .bind(name)
            .bind(task)
            .bind(description)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn bump_generation(tx: &mut Transaction<'_, Any>) -> Result<i64> {
    let (generation,): (i64,) =
        sqlx::query_as("UPDATE registry_state SET generation = generation + 1 WHERE id = 1 RETURNING generation")
            .fetch_one(&mut **tx)
            .await?;
    Ok(generation)
}

/// Atomic write through the registry's own `tmp/` (same file system, and
/// leftovers of a killed writer are cleaned on the next open).
fn write_via_tmp(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic_via(tmp_dir, dest, bytes)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Test hook: `ATTEMPT_TEST_CRASH_AT=<point>` aborts the process there (as
/// abruptly as `kill -9`: no destructors, no cleanup), to test crash safety.
/// The one place library code writes to stderr, on purpose: the crash tests
/// read the line to know the abort was the hook's.
fn crash_point(point: &str) {
    if std::env::var("ATTEMPT_TEST_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("ATTEMPT_TEST_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

/// The key of the PostgreSQL advisory lock writers take ("ATTEMPT\0" as bytes).
const PG_WRITE_LOCK_KEY: i64 = 0x4154_5445_4d50_5400;

/// Both write locks; released (database first) when dropped.
pub struct WriteLock {
    _db: Option<PoolConnection<Any>>,
    _file: RegistryLock,
}

/// Registers sqlx's SQLite and PostgreSQL drivers for `AnyPool` (once per process).
fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// A database URL with its password replaced, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// An exclusive lock on `<root>/.lock`, held by every writer (publish, yank,
/// index repair) across processes; released when dropped.
struct RegistryLock {
    _file: fs::File,
}

impl RegistryLock {
    async fn acquire(root: &Path) -> Result<RegistryLock> {
        let path = root.join(".lock");
        tokio::task::spawn_blocking(move || {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening registry lock {}", path.display()))?;
            file.lock().with_context(|| format!("locking {}", path.display()))?;
            Ok(RegistryLock { _file: file })
        })
        .await
        .context("registry lock task failed")?
    }
}
