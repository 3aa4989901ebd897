//! Package owners: the users who may publish new versions of a package, yank
//! it, and change its owners.

use anyhow::Result;
use sqlx::AnyPool;

use super::tokens::unix_now;

pub async fn list(pool: &AnyPool, package: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT owner FROM package_owners WHERE package_name = $1 ORDER BY added_at, owner")
            .bind(package)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// May `owner` manage `package`? A package nobody owns yet (published
/// locally, before the server existed) is claimed by its next publisher.
pub async fn may_manage(pool: &AnyPool, package: &str, owner: &str) -> Result<bool> {
    let owners = list(pool, package).await?;
    Ok(owners.is_empty() || owners.iter().any(|o| o == owner))
}

pub async fn add(pool: &AnyPool, package: &str, owners: &[String]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for owner in owners {
        sqlx::query(
            "INSERT INTO package_owners (package_name, owner, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(package)
        .bind(owner)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn remove(pool: &AnyPool, package: &str, owners: &[String]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for owner in owners {
        sqlx::query("DELETE FROM package_owners WHERE package_name = $1 AND owner = $2")
            .bind(package)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
