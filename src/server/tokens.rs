//! API tokens: created and revoked on the server side (`attempt-pkg token`),
//! stored as sha256 hashes in the registry database, scoped to actions
//! (publish, yank) and optionally to named packages.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use rand::RngCore;
use registry_index::validate_name;
use serde::Serialize;
use sqlx::{AnyPool, Row};

/// Every token starts with this, so leaked tokens are easy to recognise (and grep for).
pub const TOKEN_PREFIX: &str = "apk_";

/// What a token may do besides reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Publish new packages and new versions (and manage owners).
    Publish,
    /// Yank and unyank versions.
    Yank,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Yank => "yank",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Scope> {
        match s {
            "publish" => Ok(Scope::Publish),
            "yank" => Ok(Scope::Yank),
            other => bail!("unknown token scope `{other}` (expected publish or yank)"),
        }
    }
}

/// A live token, as the server sees it after authentication.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub scopes: Vec<Scope>,
    /// `None`: every package.
    pub packages: Option<Vec<String>>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TokenInfo {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn allows_package(&self, name: &str) -> bool {
        self.packages.as_ref().is_none_or(|list| list.iter().any(|p| p == name))
    }
}

/// What `token create` asks for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub owner: String,
    pub scopes: Vec<Scope>,
    pub packages: Option<Vec<String>>,
}

/// sha256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    crate::fsutil::sha256(token.as_bytes()).hex().to_string()
}

/// Creates a token and returns its secret (shown once; only the hash is kept).
pub async fn create(pool: &AnyPool, new: &NewToken) -> Result<String> {
    if new.name.trim().is_empty() || new.name.len() > 128 {
        bail!("a token name must be 1 to 128 characters");
    }
    check_owner_name(&new.owner)?;
    if new.scopes.is_empty() {
        bail!("a token needs at least one scope (--scope publish or --scope yank)");
    }
    if let Some(packages) = &new.packages {
        for p in packages {
            validate_name(p)?;
        }
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
    let mut scopes: Vec<&str> = new.scopes.iter().map(|s| s.as_str()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let packages = match &new.packages {
        Some(list) => Some(serde_json::to_string(list)?),
        None => None,
    };
    sqlx::query("INSERT INTO api_tokens (name, owner, token_hash, scopes, packages, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&new.name)
        .bind(&new.owner)
        .bind(hash_token(&token))
        .bind(scopes.join(","))
        .bind(packages)
        .bind(unix_now())
        .execute(pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => anyhow::anyhow!(
                "a live token named `{}` already exists; revoke it first (`attempt-pkg token revoke {}`) or pick another name",
                new.name,
                new.name
            ),
            _ => anyhow::Error::new(e).context("storing the new token"),
        })?;
    Ok(token)
}

/// Every token, revoked ones included, oldest first.
pub async fn list(pool: &AnyPool) -> Result<Vec<TokenInfo>> {
    let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY id").fetch_all(pool).await?;
    rows.iter().map(token_from_row).collect()
}

/// Revokes the live token named `name`; false if there is none.
pub async fn revoke(pool: &AnyPool, name: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
        .bind(unix_now())
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The live token whose secret is `token`, if any.
pub async fn authenticate(pool: &AnyPool, token: &str) -> Result<Option<TokenInfo>> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 256 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(hash_token(token))
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(token_from_row).transpose()
}

/// Records that a token was used (best effort: a failure here must not fail the request).
pub async fn touch(pool: &AnyPool, id: i64) {
    let _ = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(unix_now())
        .bind(id)
        .execute(pool)
        .await;
}

/// Owner names are user names: short, printable, no spaces.
pub fn check_owner_name(owner: &str) -> Result<()> {
    let ok = !owner.is_empty()
        && owner.len() <= 64
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !ok {
        bail!("owner `{owner}` is not a valid user name (1-64 characters: letters, digits, `-`, `_`, `.`, `@`)");
    }
    Ok(())
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<TokenInfo> {
    let scopes: String = row.get("scopes");
    let scopes = scopes.split(',').filter(|s| !s.is_empty()).map(Scope::from_str).collect::<Result<Vec<_>>>()?;
    let packages: Option<String> = row.get("packages");
    let packages = match packages {
        Some(json) => Some(serde_json::from_str(&json).context("registry database has an invalid token package list")?),
        None => None,
    };
    Ok(TokenInfo {
        id: row.get("id"),
        name: row.get("name"),
        owner: row.get("owner"),
        scopes,
        packages,
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
        revoked_at: row.get("revoked_at"),
    })
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
