//! PostgreSQL backend.

mod devices;
mod friends;
mod groups;
mod pairing;
mod queue;
mod sessions;
mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::Store;
use crate::error::{Result, StoreError};
use crate::model::{
    DeviceKeyEvent, DeviceRecord, EnqueueOutcome, FriendRecord, GroupMember, GroupRecord,
    InboxOffset, KeyRotation, NewDeviceRegistration, NewEnvelope, PairingRecord, QueueUsage,
    QueuedEnvelope, RedeemOutcome, RotateOutcome, SessionRecord, UsageScope, UserRecord,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

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
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            schema: None,
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

/// [`Store`] on a PostgreSQL database, through a connection pool.
///
/// Transactions run at READ COMMITTED; read-check-write sequences take row locks first (the
/// owner's row for the device limit and friend list, the device's row for sessions and
/// revocation, the code's row for pairing claims, per-recipient advisory locks for the queue
/// bound), so concurrent callers get the same answers as with SQLite's single writer.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
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
        Ok(Self { pool })
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

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn applied_migrations(&self) -> Result<Vec<(i64, String)>> {
        // The migrator's table lives in the store's schema (the connections' search_path).
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
