//! Whether a store's schema is up to date, read without changing anything (for
//! `commucat doctor`): opening a store ([`crate::SqliteStore::open`],
//! [`crate::PostgresStore::connect`]) applies pending migrations, this does not.

use std::path::Path;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::error::{Result, StoreError};
use crate::postgres::{PostgresSettings, valid_schema_name};

/// A store's migrations against the ones this build carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations this build carries.
    pub known: usize,
    /// Migrations recorded as applied.
    pub applied: usize,
    /// Migrations this build carries that are not applied yet, as `version description`.
    pub pending: Vec<String>,
    /// Applied versions this build does not know (a newer build migrated the store).
    pub unknown: Vec<i64>,
    /// Versions recorded as failed (a migration stopped half-way).
    pub failed: Vec<i64>,
}

impl SchemaStatus {
    /// Every known migration applied, none failed or unknown.
    #[must_use]
    pub fn up_to_date(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty() && self.failed.is_empty()
    }

    fn of(migrator: &Migrator, rows: &[(i64, bool)]) -> Self {
        let pending = migrator
            .iter()
            .filter(|m| !rows.iter().any(|(v, ok)| *v == m.version && *ok))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        let unknown = rows
            .iter()
            .filter(|(v, _)| !migrator.iter().any(|m| m.version == *v))
            .map(|(v, _)| *v)
            .collect();
        let failed = rows.iter().filter(|(_, ok)| !ok).map(|(v, _)| *v).collect();
        Self {
            known: migrator.iter().count(),
            applied: rows.iter().filter(|(_, ok)| *ok).count(),
            pending,
            unknown,
            failed,
        }
    }
}

/// The schema of the SQLite database at `path`, opened read-only; `None` when the file does not
/// exist.
///
/// # Errors
/// The file cannot be opened or read as an SQLite database.
pub async fn sqlite_schema_status(path: &Path) -> Result<Option<SchemaStatus>> {
    if !path.exists() {
        return Ok(None);
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    let rows = async {
        let exists: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&pool)
        .await?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        sqlx::query_as::<_, (i64, bool)>("SELECT version, success FROM _sqlx_migrations")
            .fetch_all(&pool)
            .await
    }
    .await
    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())));
    pool.close().await;
    Ok(Some(SchemaStatus::of(&crate::sqlite::MIGRATOR, &rows?)))
}

/// The schema of the PostgreSQL store at `url` (in `settings.schema` if set), read without
/// creating or migrating anything; fails within about `settings.acquire_timeout` when the
/// server cannot be reached.
///
/// # Errors
/// A malformed URL or schema name, or the server cannot be reached or read.
pub async fn postgres_schema_status(
    url: &str,
    settings: &PostgresSettings,
) -> Result<SchemaStatus> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL: {e}")))?
        .application_name("commucat-doctor");
    if let Some(schema) = &settings.schema {
        if !valid_schema_name(schema) {
            return Err(StoreError::Invalid(format!("schema name {schema:?}")));
        }
        options = options.options([("search_path", schema.as_str())]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let rows = async {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&pool)
                .await?;
        if table.is_none() {
            return Ok(Vec::new());
        }
        sqlx::query_as::<_, (i64, bool)>("SELECT version, success FROM _sqlx_migrations")
            .fetch_all(&pool)
            .await
    }
    .await
    .map_err(|e| StoreError::Unavailable(e.to_string()));
    pool.close().await;
    Ok(SchemaStatus::of(&crate::postgres::MIGRATOR, &rows?))
}

/// Seconds the PostgreSQL server's clock is ahead of `local_unix_secs` (negative: behind).
///
/// # Errors
/// The server cannot be reached.
pub async fn postgres_clock_offset(
    url: &str,
    settings: &PostgresSettings,
    local_unix_secs: f64,
) -> Result<f64> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL: {e}")))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let remote: std::result::Result<f64, _> =
        sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
            .fetch_one(&pool)
            .await;
    pool.close().await;
    let remote = remote.map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(remote - local_unix_secs)
}
