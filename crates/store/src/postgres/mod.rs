//! PostgreSQL backend.

mod devices;
mod federation;
mod friends;
mod groups;
mod listing;
mod pairing;
mod queue;
mod queue_batch;
mod sessions;
mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::{Result, StoreError};
use crate::group_commit::{GroupCommit, GroupCommitSettings};
use crate::model::{EnqueueOutcome, NewEnvelope};

pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// A pooled connection idle for longer than this is pinged before it is handed out, so one
/// broken while the pool held it (a database restart) is replaced instead of failing a call.
/// Connections reused sooner skip the round trip: the pool already tests every connection when
/// it is returned.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Longest schema name PostgreSQL keeps (`NAMEDATALEN - 1`).
pub const MAX_SCHEMA_LEN: usize = 63;

/// Pool settings of a [`PostgresStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a call waits for a connection (pooled or new) before it fails with
    /// [`StoreError::Unavailable`]. Keep it short: while the database is down every call that
    /// needs it waits this long, and handshakes should fail fast rather than hang.
    pub acquire_timeout: Duration,
    /// Schema holding the tables (created if missing, and set as the connections'
    /// `search_path`); `None` uses the server's default `search_path` (normally `public`).
    pub schema: Option<String>,
    /// How offline enqueues are batched into transactions.
    pub group_commit: GroupCommitSettings,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            schema: None,
            group_commit: GroupCommitSettings::default(),
        }
    }
}

/// Whether `name` is accepted as a schema name: 1..=63 characters of `[a-z0-9_]`, not starting
/// with a digit, so it never needs quoting.
#[must_use]
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCHEMA_LEN
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// [`Store`](crate::Store) on a PostgreSQL database, through a connection pool.
///
/// Transactions run at READ COMMITTED; read-check-write sequences take row locks first (the
/// owner's row for the device limit and friend list, the device's row for sessions and
/// revocation, the code's row for pairing claims; for the queue quotas, one advisory lock per
/// store schema that every queue write takes), so concurrent callers get the same answers as
/// with SQLite's single writer.
///
/// Offline enqueues go through a group-commit writer task (see [`GroupCommitSettings`]):
/// concurrent calls share one transaction, so one WAL flush, and each returns after that
/// commit. The task is spawned on the Tokio runtime that connects the store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    enqueue: GroupCommit<NewEnvelope, EnqueueOutcome>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://` or `postgresql://`, libpq-style parameters allowed),
    /// creates `settings.schema` if set, and applies the embedded migrations.
    ///
    /// Fails with [`StoreError::Invalid`] for a malformed URL or schema name, and with
    /// [`StoreError::Unavailable`] (within about `acquire_timeout`) when the server cannot be
    /// reached.
    pub async fn connect(url: &str, settings: &PostgresSettings) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL: {e}")))?;
        Self::connect_with(options, settings).await
    }

    /// [`PostgresStore::connect`] with parsed connect options.
    async fn connect_with(options: PgConnectOptions, settings: &PostgresSettings) -> Result<Self> {
        let mut options = options.application_name("commucat");
        if let Some(schema) = &settings.schema {
            if !valid_schema_name(schema) {
                return Err(StoreError::Invalid(format!(
                    "schema name {schema:?}: use 1..={MAX_SCHEMA_LEN} characters of [a-z0-9_], not starting with a digit"
                )));
            }
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < PING_IF_IDLE_FOR {
                        return Ok(true);
                    }
                    // An error drops the connection and the pool tries another.
                    sqlx::Connection::ping(conn).await.map(|()| true)
                })
            })
            .connect_with(options)
            .await
            .map_err(map_err)?;
        if let Some(schema) = &settings.schema {
            // Checked above: a plain identifier, safe to splice.
            let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&pool)
                .await
                .map_err(map_err)?;
        }
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let writer = queue_batch::EnqueueWriter { pool: pool.clone() };
        Ok(Self {
            enqueue: GroupCommit::spawn(writer, settings.group_commit),
            pool,
        })
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Maps PostgreSQL SQLSTATE classes first, then the backend-independent shapes.
fn map_err(err: sqlx::Error) -> StoreError {
    // https://www.postgresql.org/docs/current/errcodes-appendix.html
    let code = err
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned);
    match code.as_deref() {
        // connection exception, insufficient resources, operator intervention (shutdown,
        // starting up), transaction rollback (serialization failure, deadlock), lock timeout
        Some(c)
            if c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57")
                || c.starts_with("40")
                || c == "55P03" =>
        {
            StoreError::Unavailable(format!("database unavailable: {err}"))
        }
        Some("XX001" | "XX002") => StoreError::Corrupt(err.to_string()),
        _ => StoreError::from_sqlx(err),
    }
}

/// The unique constraint or index a failed statement violated, if that is why it failed.
fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    err.as_database_error()
        .filter(|db| db.kind() == sqlx::error::ErrorKind::UniqueViolation)
        .and_then(sqlx::error::DatabaseError::constraint)
}

crate::forward::impl_store!(PostgresStore);
