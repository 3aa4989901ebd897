//! Read queries for the registry's web pages (`src/server/pages/`): the same
//! database the API answers from, seen from a browser — newest and most
//! downloaded packages, totals, task and base-model filters, one model's
//! prompts, dependents, download counts. The download counts are written
//! here too, in batches the server collects (`src/server/downloads.rs`).
//!
//! Every query runs unchanged on SQLite and PostgreSQL (sums are cast to
//! BIGINT because PostgreSQL's SUM of a BIGINT is NUMERIC).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use registry_index::Checksum;
use semver::Version;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::api::{PackageInfo, PackageSummary, VersionInfo};
use super::local::{parse_db_version, summarize, version_from_row, yank_event_from_row, VERSION_COLUMNS};
use super::LocalRegistry;

/// Narrows a listing or a search to packages with at least one version
/// trained for `task` and/or for the base model `base_model`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub task: Option<String>,
    pub base_model: Option<Checksum>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.task.is_none() && self.base_model.is_none()
    }

    /// `AND EXISTS (…)` for the package whose id is `id_column`, numbering
    /// its placeholders from `$first` (bind them with [`Filters::bind`]).
    pub(super) fn sql(&self, id_column: &str, first: usize) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut next = first;
        let mut conditions = Vec::new();
        for (column, present) in [("task", self.task.is_some()), ("base_model", self.base_model.is_some())] {
            if present {
                conditions.push(format!("fv.{column} = ${next}"));
                next += 1;
            }
        }
        format!(
            "AND EXISTS (SELECT 1 FROM versions fv WHERE fv.package_id = {id_column} AND {})",
            conditions.join(" AND ")
        )
    }

    /// Binds the values [`Filters::sql`] has placeholders for, in its order.
    pub(super) fn bind<'q>(&self, mut query: Query<'q, Any, AnyArguments<'q>>) -> Query<'q, Any, AnyArguments<'q>> {
        if let Some(task) = &self.task {
            query = query.bind(task.clone());
        }
        if let Some(model) = &self.base_model {
            query = query.bind(model.hex().to_string());
        }
        query
    }
}

/// Registry-wide counts for the home page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub packages: u64,
    pub versions: u64,
    pub downloads: u64,
}

/// A package in a list, with what the list is ordered by.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPackage {
    pub summary: PackageSummary,
    /// All versions' downloads.
    pub downloads: u64,
    /// When its newest version was published (unix seconds).
    pub published_at: i64,
}

/// A package that depends on another, with the versions that do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    pub name: String,
    pub versions: Vec<Version>,
}

/// See [`LocalRegistry::page_extras`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageExtras {
    pub owners: Vec<String>,
    pub dependents: Vec<Dependent>,
    pub manifest: Option<String>,
}

/// A frozen base model as the registry knows it from its prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    pub fingerprint: Checksum,
    /// The names publishers gave it (usually one).
    pub names: Vec<String>,
    pub hidden_sizes: Vec<u32>,
    /// Packages with at least one version for it.
    pub packages: u64,
}

/// A base model with its package count, for the home page's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    pub fingerprint: Checksum,
    pub name: String,
    pub packages: u64,
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl LocalRegistry {
    /// Adds `counts` (artifact checksum → downloads since the last batch) in
    /// one transaction.
    pub async fn record_downloads(&self, counts: &[(Checksum, u64)]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for (cksum, n) in counts {
            sqlx::query(
                "INSERT INTO blob_downloads (cksum, downloads) VALUES ($1, $2) \
                 ON CONFLICT (cksum) DO UPDATE SET downloads = blob_downloads.downloads + excluded.downloads",
            )
            .bind(cksum.hex().to_string())
            .bind(as_i64(*n))
            .execute(&mut *tx)
            .await
            .context("recording downloads")?;
        }
        tx.commit().await.context("committing download counts")?;
        Ok(())
    }

    /// What the package page needs of `name`: [`LocalRegistry::info`] and
    /// each version's downloads, in two queries where `info` and
    /// [`LocalRegistry::version_downloads`] take four (the yank history is
    /// read only when a version is yanked: only yanked versions show a
    /// reason). `None` if there is no such package.
    pub async fn package_with_downloads(&self, name: &str) -> Result<Option<(PackageInfo, BTreeMap<Version, u64>)>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS}, d.downloads AS downloads FROM versions JOIN packages p ON p.id = versions.package_id \
             LEFT JOIN blob_downloads d ON d.cksum = versions.cksum WHERE p.name = $1"
        ))
        .bind(name)
        .fetch_all(self.pool())
        .await
        .context("reading a package")?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut versions = Vec::with_capacity(rows.len());
        let mut downloads = BTreeMap::new();
        for row in &rows {
            let version = version_from_row(row)?;
            if let Some(n) = row.get::<Option<i64>, _>("downloads") {
                downloads.insert(version.version.clone(), count(n));
            }
            versions.push(version);
        }
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        let mut yank_history = Vec::new();
        if versions.iter().any(|v| v.yanked) {
            let rows = sqlx::query(
                "SELECT v.version, h.yanked, h.at, h.reason FROM yank_history h JOIN versions v ON v.id = h.version_id \
                 JOIN packages p ON p.id = v.package_id WHERE p.name = $1 ORDER BY h.id",
            )
            .bind(name)
            .fetch_all(self.pool())
            .await
            .context("reading a yank history")?;
            yank_history = rows.iter().map(yank_event_from_row).collect::<Result<_>>()?;
        }
        Ok(Some((PackageInfo { name: name.to_string(), versions, yank_history }, downloads)))
    }

    /// Downloads of each version of `name` that has any.
    pub async fn version_downloads(&self, name: &str) -> Result<BTreeMap<Version, u64>> {
        let rows = sqlx::query(
            "SELECT v.version, d.downloads FROM versions v JOIN packages p ON p.id = v.package_id \
             JOIN blob_downloads d ON d.cksum = v.cksum WHERE p.name = $1",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .context("reading download counts")?;
        rows.iter().map(|row| Ok((parse_db_version(row.get("version"))?, count(row.get("downloads"))))).collect()
    }

    pub async fn totals(&self) -> Result<Totals> {
        let (packages,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM packages").fetch_one(self.pool()).await?;
        let (versions,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM versions").fetch_one(self.pool()).await?;
        let (downloads,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(d.downloads), 0) AS BIGINT) FROM blob_downloads d JOIN versions v ON v.cksum = d.cksum",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(Totals { packages: count(packages), versions: count(versions), downloads: count(downloads) })
    }

    /// The `limit` packages published most recently (by their newest version).
    pub async fn newest(&self, limit: usize) -> Result<Vec<ListedPackage>> {
        // Read a few versions per wanted package through the publish-time
        // index and keep each package's first: no scan of every version.
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT package_id, published_at FROM versions ORDER BY published_at DESC, id DESC LIMIT $1",
        )
        .bind(as_i64(limit as u64 * 8))
        .fetch_all(self.pool())
        .await
        .context("listing the newest packages")?;
        let mut seen = Vec::new();
        for (package_id, at) in rows {
            if seen.len() == limit {
                break;
            }
            if !seen.iter().any(|(id, _)| *id == package_id) {
                seen.push((package_id, at));
            }
        }
        let mut out = Vec::with_capacity(seen.len());
        for (package_id, published_at) in seen {
            if let Some(listed) = self.listed(package_id, Some(published_at)).await? {
                out.push(listed);
            }
        }
        Ok(out)
    }

    /// The `limit` packages with the most downloads (all versions together).
    pub async fn most_downloaded(&self, limit: usize) -> Result<Vec<ListedPackage>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT v.package_id FROM blob_downloads d JOIN versions v ON v.cksum = d.cksum \
             GROUP BY v.package_id ORDER BY CAST(SUM(d.downloads) AS BIGINT) DESC, v.package_id LIMIT $1",
        )
        .bind(as_i64(limit as u64))
        .fetch_all(self.pool())
        .await
        .context("listing the most downloaded packages")?;
        let mut out = Vec::with_capacity(rows.len());
        for (package_id,) in rows {
            out.extend(self.listed(package_id, None).await?);
        }
        Ok(out)
    }

    /// Packages `offset..offset + limit` by name that match `filters`, and
    /// whether more follow (the home page's browsing without a query).
    pub async fn list_filtered(
        &self,
        filters: &Filters,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<ListedPackage>, bool)> {
        let sql = format!(
            "SELECT p.id FROM packages p WHERE 1 = 1 {} ORDER BY p.name LIMIT $1 OFFSET $2",
            filters.sql("p.id", 3)
        );
        let rows = filters
            .bind(sqlx::query(&sql).bind(as_i64(limit.saturating_add(1))).bind(as_i64(offset)))
            .fetch_all(self.pool())
            .await
            .context("listing the registry")?;
        let more = rows.len() as u64 > limit;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.iter().take(usize::try_from(limit).unwrap_or(usize::MAX)) {
            out.extend(self.listed(row.get("id"), None).await?);
        }
        Ok((out, more))
    }

    /// Every task a version was published for, by name.
    pub async fn tasks(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT task FROM versions ORDER BY task").fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Every base model with prompts, most packages first.
    pub async fn models(&self) -> Result<Vec<ModelChoice>> {
        let rows = sqlx::query(
            "SELECT base_model, MIN(base_model_name) AS model_name, COUNT(DISTINCT package_id) AS packages \
             FROM versions GROUP BY base_model ORDER BY packages DESC, base_model",
        )
        .fetch_all(self.pool())
        .await
        .context("listing base models")?;
        rows.iter()
            .map(|row| {
                Ok(ModelChoice {
                    fingerprint: Checksum::parse(row.get("base_model"))
                        .context("registry database has an invalid fingerprint")?,
                    name: row.get("model_name"),
                    packages: count(row.get("packages")),
                })
            })
            .collect()
    }

    /// What the registry knows of the base model `fingerprint`; `None` if no
    /// version was published for it.
    pub async fn model_facts(&self, fingerprint: &Checksum) -> Result<Option<ModelFacts>> {
        let rows = sqlx::query("SELECT DISTINCT base_model_name, hidden_size FROM versions WHERE base_model = $1")
            .bind(fingerprint.hex().to_string())
            .fetch_all(self.pool())
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut names: Vec<String> = rows.iter().map(|r| r.get("base_model_name")).collect();
        let mut hidden_sizes: Vec<u32> =
            rows.iter().filter_map(|r| u32::try_from(r.get::<i64, _>("hidden_size")).ok()).collect();
        names.sort();
        names.dedup();
        hidden_sizes.sort_unstable();
        hidden_sizes.dedup();
        let (packages,): (i64,) =
            sqlx::query_as("SELECT COUNT(DISTINCT package_id) FROM versions WHERE base_model = $1")
                .bind(fingerprint.hex().to_string())
                .fetch_one(self.pool())
                .await?;
        Ok(Some(ModelFacts { fingerprint: fingerprint.clone(), names, hidden_sizes, packages: count(packages) }))
    }

    /// Packages `offset..offset + limit` (by name) with versions for the base
    /// model `fingerprint`, each described by its newest version for that
    /// model; and whether more follow.
    pub async fn packages_for_model(
        &self,
        fingerprint: &Checksum,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<ListedPackage>, bool)> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT DISTINCT p.id, p.name FROM versions v JOIN packages p ON p.id = v.package_id \
             WHERE v.base_model = $1 ORDER BY p.name LIMIT $2 OFFSET $3",
        )
        .bind(fingerprint.hex().to_string())
        .bind(as_i64(limit.saturating_add(1)))
        .bind(as_i64(offset))
        .fetch_all(self.pool())
        .await
        .context("listing a model's packages")?;
        let more = rows.len() as u64 > limit;
        let mut out = Vec::with_capacity(rows.len());
        for (package_id, name) in rows.into_iter().take(usize::try_from(limit).unwrap_or(usize::MAX)) {
            let versions: Vec<VersionInfo> =
                self.versions_of(package_id).await?.into_iter().filter(|v| &v.base_model == fingerprint).collect();
            let published_at = versions.iter().map(|v| v.published_at).max().unwrap_or(0);
            if let Some(summary) = summarize(name, &versions) {
                out.push(ListedPackage { summary, downloads: self.package_downloads(package_id).await?, published_at });
            }
        }
        Ok((out, more))
    }

    /// What the package page shows beside the versions: `name`'s owners
    /// (oldest first), the packages with a version that depends on it (by
    /// name, with those versions), and the manifest JSON stored with
    /// `name@version` (metrics, provenance) if that is published. One query
    /// where three would do: a page not yet cached costs mostly round trips
    /// to the database (docs/pages.md).
    pub async fn page_extras(&self, name: &str, version: &Version) -> Result<PageExtras> {
        // Each part of the union is tagged so one ordered pass can split them;
        // the casts give PostgreSQL one type per column.
        let rows: Vec<(i64, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT CAST(0 AS BIGINT) AS part, owner AS a, CAST(NULL AS TEXT) AS b, CAST(added_at AS BIGINT) AS k \
             FROM package_owners WHERE package_name = $1 \
             UNION ALL SELECT CAST(1 AS BIGINT), p.name, v.version, CAST(0 AS BIGINT) FROM version_dependencies vd \
             JOIN versions v ON v.id = vd.version_id JOIN packages p ON p.id = v.package_id WHERE vd.name = $1 \
             UNION ALL SELECT CAST(2 AS BIGINT), v.manifest, CAST(NULL AS TEXT), CAST(0 AS BIGINT) FROM versions v \
             JOIN packages p ON p.id = v.package_id WHERE p.name = $1 AND v.version = $2 \
             ORDER BY part, k, a",
        )
        .bind(name)
        .bind(version.to_string())
        .fetch_all(self.pool())
        .await
        .context("reading a package's owners, dependents and manifest")?;
        let mut extras = PageExtras::default();
        let mut by_name: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        for (part, a, b, _) in rows {
            match (part, b) {
                (0, _) => extras.owners.push(a),
                (1, Some(version)) => by_name.entry(a).or_default().push(parse_db_version(&version)?),
                (2, _) => extras.manifest = Some(a),
                (part, b) => anyhow::bail!("unexpected row ({part}, {a:?}, {b:?}) reading the page of `{name}`"),
            }
        }
        extras.dependents = by_name
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort();
                Dependent { name, versions }
            })
            .collect();
        Ok(extras)
    }

    async fn package_downloads(&self, package_id: i64) -> Result<u64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(d.downloads), 0) AS BIGINT) FROM versions v \
             JOIN blob_downloads d ON d.cksum = v.cksum WHERE v.package_id = $1",
        )
        .bind(package_id)
        .fetch_one(self.pool())
        .await?;
        Ok(count(n))
    }

    /// One package for a list; `published_at` when the caller already knows it.
    async fn listed(&self, package_id: i64, published_at: Option<i64>) -> Result<Option<ListedPackage>> {
        let Some((name,)) = sqlx::query_as::<_, (String,)>("SELECT name FROM packages WHERE id = $1")
            .bind(package_id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let versions = self.versions_of(package_id).await?;
        let published_at = published_at.unwrap_or_else(|| versions.iter().map(|v| v.published_at).max().unwrap_or(0));
        let Some(summary) = summarize(name, &versions) else { return Ok(None) };
        Ok(Some(ListedPackage { summary, downloads: self.package_downloads(package_id).await?, published_at }))
    }
}
