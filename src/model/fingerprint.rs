//! Base-model fingerprint: sha256 over the canonical weights — tensors in
//! sorted name order, each as (name, dtype, shape, raw little-endian bytes) —
//! so it does not change with file sharding, header order or file layout.
//! Prompt packages record it to bind a prompt to the exact frozen model.
//!
//! Hashing a large checkpoint takes a while, so results are cached in
//! `$ATTEMPT_HOME/attempt.db`, keyed by the canonical path, size and mtime of
//! every weight file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::weights::{weight_files, SafetensorsFile};
use crate::home::Home;

/// Domain separator: a new canonical form must change this.
const FORMAT: &[u8] = b"attempt-pkg/model-fingerprint/v1\n";

/// `sha256:<64 hex>` of the weights in `dir`, computed (no cache).
pub fn compute(dir: &Path) -> Result<String> {
    let files = weight_files(dir)?;
    let opened = files.iter().map(|p| SafetensorsFile::open(p)).collect::<Result<Vec<_>>>()?;
    let parsed = opened.iter().map(|f| f.parse()).collect::<Result<Vec<_>>>()?;
    // name → (file index, view); a name in two shards is ambiguous.
    let mut by_name = BTreeMap::new();
    for (i, st) in parsed.iter().enumerate() {
        for (name, view) in st.tensors() {
            if let Some((j, _)) = by_name.insert(name.clone(), (i, view)) {
                bail!("tensor {name} appears in both {} and {}", files[j].display(), files[i].display());
            }
        }
    }
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update((by_name.len() as u64).to_le_bytes());
    for (name, (_, view)) in &by_name {
        field(&mut h, name.as_bytes());
        field(&mut h, format!("{:?}", view.dtype()).as_bytes());
        h.update((view.shape().len() as u64).to_le_bytes());
        for &d in view.shape() {
            h.update((d as u64).to_le_bytes());
        }
        field(&mut h, view.data());
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Length-prefixed so that no two different inputs hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The fingerprint of `dir`, from the cache in `$ATTEMPT_HOME/attempt.db`
/// when no weight file changed since it was computed.
pub fn fingerprint(home: &Home, dir: &Path) -> Result<String> {
    let key = files_key(dir)?;
    let db = home.root().join("attempt.db");
    if let Some(hit) = cache_get(&db, &key)? {
        return Ok(hit);
    }
    let fp = compute(dir)?;
    cache_put(&db, &key, &fp)?;
    Ok(fp)
}

/// Canonical path, size and mtime (ns) of every weight file, as JSON.
fn files_key(dir: &Path) -> Result<String> {
    let mut entries = Vec::new();
    for f in weight_files(dir)? {
        let canon: PathBuf = f.canonicalize().with_context(|| format!("cannot resolve {}", f.display()))?;
        let meta = std::fs::metadata(&canon).with_context(|| format!("cannot stat {}", canon.display()))?;
        let mtime =
            meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
        entries.push(serde_json::json!([canon.to_string_lossy(), meta.len(), mtime.to_string()]));
    }
    Ok(serde_json::Value::Array(entries).to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

async fn connect(db: &Path) -> Result<sqlx::SqliteConnection> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sqlx::Connection;
    if let Some(parent) = db.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let opts = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(10));
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .with_context(|| format!("cannot open database {}", db.display()))?;
    sqlx::migrate!("./migrations/home")
        .run(&mut conn)
        .await
        .with_context(|| format!("cannot migrate database {}", db.display()))?;
    Ok(conn)
}

fn cache_get(db: &Path, key: &str) -> Result<Option<String>> {
    runtime()?.block_on(async {
        let mut conn = connect(db).await?;
        let row: Option<(String,)> = sqlx::query_as("SELECT fingerprint FROM model_fingerprints WHERE files_key = ?")
            .bind(key)
            .fetch_optional(&mut conn)
            .await
            .with_context(|| format!("cannot read the fingerprint cache in {}", db.display()))?;
        Ok(row.map(|r| r.0))
    })
}

fn cache_put(db: &Path, key: &str, fingerprint: &str) -> Result<()> {
    let now = std::time::SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    runtime()?.block_on(async {
        let mut conn = connect(db).await?;
        sqlx::query(
            "INSERT INTO model_fingerprints (files_key, fingerprint, computed_at) VALUES (?, ?, ?) \
             ON CONFLICT(files_key) DO UPDATE SET fingerprint = excluded.fingerprint, computed_at = excluded.computed_at",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(now)
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot write the fingerprint cache in {}", db.display()))?;
        Ok(())
    })
}
