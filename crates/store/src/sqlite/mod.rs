//! Embedded SQLite backend.

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

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{Result, StoreError};
use crate::group_commit::{GroupCommit, GroupCommitSettings};
use crate::model::{EnqueueOutcome, NewEnvelope};

pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connections in the file-backed pool: WAL lets readers run beside the single writer.
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection before getting [`StoreError::Unavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Store`](crate::Store) on an SQLite database file (or a private in-memory database for
/// tests).
///
/// Write transactions start with `BEGIN IMMEDIATE`, so read-check-write sequences
/// (handle taken? device limit reached?) are serialised across connections and processes.
///
/// Offline enqueues go through a group-commit writer task (see [`GroupCommitSettings`]):
/// concurrent calls share one transaction, so one WAL fsync, and each returns after that
/// commit. The task is spawned on the Tokio runtime that opens the store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    enqueue: GroupCommit<NewEnvelope, EnqueueOutcome>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, creating its parent directory,
    /// and applies the embedded migrations. WAL journal, `synchronous = FULL` (a committed
    /// write survives power loss: every commit fsyncs the WAL, so group commit is what
    /// spreads that cost over concurrent enqueues), foreign keys on, 5 s busy timeout;
    /// default [`GroupCommitSettings`].
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, GroupCommitSettings::default()).await
    }

    /// [`SqliteStore::open`] with the given group-commit settings.
    pub async fn open_with(path: &Path, group_commit: GroupCommitSettings) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        restrict_to_owner(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("cannot open {}: {m}", path.display()))
                }
                other => other,
            })?;
        Self::migrated(pool, group_commit).await
    }

    /// A private in-memory database, gone when the store is dropped. For tests.
    ///
    /// An in-memory database lives only as long as a connection to it, so the pool holds
    /// exactly one connection that never expires; concurrent callers queue for it.
    pub async fn open_in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(map_err)?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Self::migrated(pool, GroupCommitSettings::default()).await
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrated(pool: SqlitePool, group_commit: GroupCommitSettings) -> Result<Self> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let writer = queue_batch::EnqueueWriter { pool: pool.clone() };
        Ok(Self {
            pool,
            enqueue: GroupCommit::spawn(writer, group_commit),
        })
    }
}

/// Maps SQLite result codes first, then the backend-independent shapes.
fn map_err(err: sqlx::Error) -> StoreError {
    // https://www.sqlite.org/rescode.html (primary code = low byte of the extended code)
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    const SQLITE_CORRUPT: i64 = 11;
    const SQLITE_NOTADB: i64 = 26;
    let primary = err
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .and_then(|code| code.parse::<i64>().ok())
        .map(|code| code & 0xff);
    match primary {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => {
            StoreError::Unavailable(format!("database is locked by another writer: {err}"))
        }
        Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StoreError::Corrupt(err.to_string()),
        _ => StoreError::from_sqlx(err),
    }
}

crate::forward::impl_store!(SqliteStore);

/// Creates the database file with mode 0600 if it does not exist, and tightens an existing one:
/// it holds pairing codes and account data. SQLite gives the `-wal` and `-shm` files the
/// database file's permissions.
fn restrict_to_owner(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)
}
