//! Embedded SQLite backend.

mod devices;
mod friends;
mod groups;
mod pairing;
mod queue;
mod sessions;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::Store;
use crate::error::{Result, StoreError};
use crate::model::{
    DeviceKeyEvent, DeviceRecord, EnqueueOutcome, FriendRecord, GroupMember, GroupRecord,
    InboxOffset, KeyRotation, NewDeviceRegistration, NewEnvelope, PairingRecord, QueueUsage,
    QueuedEnvelope, RedeemOutcome, RotateOutcome, SessionRecord, UsageScope, UserRecord,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connections in the file-backed pool: WAL lets readers run beside the single writer.
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection before getting [`StoreError::Unavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Store`] on an SQLite database file (or a private in-memory database for tests).
///
/// Write transactions start with `BEGIN IMMEDIATE`, so read-check-write sequences
/// (handle taken? device limit reached?) are serialised across connections and processes.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, creating its parent directory,
    /// and applies the embedded migrations. WAL journal, `synchronous = FULL` (a committed
    /// write survives power loss), foreign keys on, 5 s busy timeout.
    pub async fn open(path: &Path) -> Result<Self> {
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
        Self::migrated(pool).await
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
        Self::migrated(pool).await
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrated(pool: SqlitePool) -> Result<Self> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(Self { pool })
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

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn applied_migrations(&self) -> Result<Vec<(i64, String)>> {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        users::by_id(&self.pool, user_id).await
    }

    async fn user_by_handle(&self, handle: &str) -> Result<Option<UserRecord>> {
        users::by_handle(&self.pool, handle).await
    }

    async fn update_profile(
        &self,
        user_id: &str,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<UserRecord> {
        users::update_profile(&self.pool, user_id, display_name, avatar_url).await
    }

    async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        devices::by_id(&self.pool, device_id).await
    }

    async fn devices_of_user(&self, user_id: &str) -> Result<Vec<DeviceRecord>> {
        devices::of_user(&self.pool, user_id).await
    }

    async fn count_active_devices(&self, user_id: &str) -> Result<u64> {
        devices::count_active(&self.pool, user_id).await
    }

    async fn register_device(&self, registration: NewDeviceRegistration) -> Result<UserRecord> {
        devices::register(&self.pool, registration).await
    }

    async fn revoke_device(&self, device_id: &str, event: DeviceKeyEvent) -> Result<()> {
        devices::revoke(&self.pool, device_id, event).await
    }

    async fn rotate_device_key(&self, rotation: KeyRotation) -> Result<RotateOutcome> {
        devices::rotate(&self.pool, rotation).await
    }

    async fn key_events(&self, device_id: &str) -> Result<Vec<DeviceKeyEvent>> {
        devices::key_events(&self.pool, device_id).await
    }

    async fn create_session(&self, session: SessionRecord) -> Result<()> {
        sessions::create(&self.pool, session).await
    }

    async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        sessions::by_id(&self.pool, session_id).await
    }

    async fn extend_session(&self, session_id: &str, expires_at: i64) -> Result<()> {
        sessions::extend(&self.pool, session_id, expires_at).await
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool> {
        sessions::delete(&self.pool, session_id).await
    }

    async fn purge_expired_sessions(&self, now: i64) -> Result<u64> {
        sessions::purge_expired(&self.pool, now).await
    }

    async fn create_group(&self, group: GroupRecord, members: Vec<GroupMember>) -> Result<()> {
        groups::create(&self.pool, group, members).await
    }

    async fn group(&self, group_id: &str) -> Result<Option<GroupRecord>> {
        groups::by_id(&self.pool, group_id).await
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<GroupMember>> {
        groups::members(&self.pool, group_id).await
    }

    async fn upsert_group_member(&self, member: GroupMember) -> Result<GroupMember> {
        groups::upsert_member(&self.pool, member).await
    }

    async fn enqueue(&self, envelope: NewEnvelope) -> Result<EnqueueOutcome> {
        queue::enqueue(&self.pool, envelope).await
    }

    async fn queue_usage(&self, scope: UsageScope<'_>) -> Result<QueueUsage> {
        queue::usage_of(&self.pool, scope).await
    }

    async fn pending_envelopes_except(
        &self,
        recipient: &str,
        now: i64,
        limit: u32,
        skip: &[i64],
    ) -> Result<Vec<QueuedEnvelope>> {
        queue::pending(&self.pool, recipient, now, limit, skip).await
    }

    async fn mark_delivered(&self, recipient: &str, envelope_ids: &[i64], now: i64) -> Result<u64> {
        queue::mark_delivered(&self.pool, recipient, envelope_ids, now).await
    }

    async fn queued_count(&self, recipient: &str, now: i64) -> Result<u64> {
        queue::queued(&self.pool, recipient, now).await
    }

    async fn inbox_offset(&self, device_id: &str, channel_id: u32) -> Result<Option<InboxOffset>> {
        queue::inbox_offset(&self.pool, device_id, channel_id).await
    }

    async fn purge_expired_envelopes(&self, now: i64) -> Result<u64> {
        queue::purge_expired(&self.pool, now).await
    }

    async fn purge_expired_idempotency(&self, now: i64) -> Result<u64> {
        queue::purge_expired_keys(&self.pool, now).await
    }

    async fn create_pairing(&self, pairing: PairingRecord) -> Result<()> {
        pairing::create(&self.pool, pairing).await
    }

    async fn pairing(&self, code: &str) -> Result<Option<PairingRecord>> {
        pairing::by_code(&self.pool, code).await
    }

    async fn redeem_pairing(
        &self,
        code: &str,
        now: i64,
        max_attempts: u32,
        registration: NewDeviceRegistration,
    ) -> Result<RedeemOutcome> {
        pairing::redeem(&self.pool, code, now, max_attempts, registration).await
    }

    async fn purge_expired_pairings(&self, now: i64) -> Result<u64> {
        pairing::purge_expired(&self.pool, now).await
    }

    async fn friends(&self, user_id: &str) -> Result<Vec<FriendRecord>> {
        friends::of_user(&self.pool, user_id).await
    }

    async fn replace_friends(
        &self,
        user_id: &str,
        friends: Vec<FriendRecord>,
    ) -> Result<Vec<FriendRecord>> {
        friends::replace(&self.pool, user_id, friends).await
    }
}

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
