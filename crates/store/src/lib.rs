//! Persistent state of the CommuCat server behind one object-safe [`Store`] trait.
//!
//! Backends:
//! - [`SqliteStore`]: embedded SQLite (WAL, foreign keys on), the zero-set-up default.
//! - [`PostgresStore`]: PostgreSQL through a connection pool, for production deployments.
//!
//! Each backend keeps only its own SQL, driver glue (transactions, locks, error codes) and
//! embedded migrations (`migrations/<backend>/`). What does not depend on the dialect is
//! written once and shared: the `impl Store` that maps each method to a backend's table
//! function (`forward`), argument checks and the decisions taken on rows read in a
//! transaction (`rules`), queue quota arithmetic (`quota`), and row decoding (`rows`) — a row
//! that does not fit a record is reported as [`StoreError::Corrupt`] rather than panicking.
//!
//! Use it as `Arc<dyn Store>`.

mod batch_plan;
mod error;
mod forward;
mod group_commit;
mod model;
mod postgres;
mod quota;
mod rows;
mod rules;
mod schema;
mod sqlite;

pub use error::{Result, StoreError};
pub use group_commit::GroupCommitSettings;
pub use model::{
    DeviceKeyEvent, DeviceRecord, DeviceStatus, EnqueueOutcome, FederationPeer, FriendRecord,
    GroupMember, GroupRecord, GroupRole, IdempotencyKey, InboxOffset, KeyRotation,
    NewDeviceRegistration, NewEnvelope, NewOutboxEvent, OutboxEvent, OutboxPush, OutboxStats,
    PEER_STATUSES, PairingRecord, QueueLimits, QueueUsage, QueuedEnvelope, QuotaLimit,
    RedeemOutcome, Refusal, RotateOutcome, SessionRecord, UsageScope, UserRecord, UserToCreate,
};
pub use postgres::{MAX_SCHEMA_LEN, PostgresSettings, PostgresStore, valid_schema_name};
pub use schema::{
    SchemaStatus, postgres_clock_offset, postgres_schema_status, sqlite_schema_status,
};
pub use sqlite::SqliteStore;

/// Everything the server persists. All times are unix seconds.
///
/// Every method is atomic: a failed call writes nothing.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<()>;

    /// The schema migrations applied to this store, oldest first, as `(version,
    /// description)`; for `commucat migrate`.
    async fn applied_migrations(&self) -> Result<Vec<(i64, String)>>;

    /// The user with this id.
    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>>;

    /// The user with this handle (exact match).
    async fn user_by_handle(&self, handle: &str) -> Result<Option<UserRecord>>;

    /// Sets the profile fields that are `Some` and keeps the stored value for `None`
    /// (SQL `COALESCE`). Returns the updated user; unknown user → [`StoreError::NotFound`].
    async fn update_profile(
        &self,
        user_id: &str,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<UserRecord>;

    /// The device with this id, whatever its status.
    async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>>;

    /// The active devices among `device_ids` (each once, sorted); unknown and revoked ids are
    /// left out. One statement whatever the number of ids.
    async fn active_devices_among(&self, device_ids: &[String]) -> Result<Vec<String>>;

    /// All devices of a user (active and revoked), ordered by `created_at`, then `device_id`.
    /// Unknown user → empty list.
    async fn devices_of_user(&self, user_id: &str) -> Result<Vec<DeviceRecord>>;

    /// Number of active devices of a user (0 for an unknown user).
    async fn count_active_devices(&self, user_id: &str) -> Result<u64>;

    /// Registers a device in one transaction, returning its owner:
    /// 1. creates the user if [`UserToCreate::New`] (taken handle or user id →
    ///    [`StoreError::Conflict`]), or checks that the existing user exists
    ///    ([`StoreError::NotFound`]);
    /// 2. if `max_active_devices` is set, refuses with [`StoreError::DeviceLimit`] when the
    ///    user already has that many active devices — checked inside the transaction, so
    ///    concurrent registrations cannot both pass;
    /// 3. inserts the device (existing `device_id` → [`StoreError::Conflict`]);
    /// 4. inserts the key event.
    ///
    /// `device.user_id` must be the owner's id and `key_event.device_id` the device's id,
    /// else [`StoreError::Invalid`]. If any step fails nothing is written.
    async fn register_device(&self, registration: NewDeviceRegistration) -> Result<UserRecord>;

    /// Marks a device revoked, records `event` and deletes the device's sessions, in one
    /// transaction. Unknown device → [`StoreError::NotFound`]; `event.device_id` must equal
    /// `device_id` ([`StoreError::Invalid`]). Revoking a revoked device changes nothing and
    /// returns `Ok`.
    async fn revoke_device(&self, device_id: &str, event: DeviceKeyEvent) -> Result<()>;

    /// Replaces a device's public key, in one transaction: refuses (writing nothing) a revoked
    /// device, a stored key other than `rotation.old_public_key`, a new key that the device had
    /// before, or a change sooner than
    /// `min_interval_secs` after the device's last `rotate` event (a device may rotate away from
    /// its registration key at once, e.g. one a pairing generated); otherwise
    /// stores `rotation.event.public_key` as the device's key, records the event and deletes
    /// the device's sessions (their tokens were obtained with the old key). Unknown device →
    /// [`StoreError::NotFound`]; an event for another device, with another action than
    /// `rotate` or with the old key → [`StoreError::Invalid`].
    async fn rotate_device_key(&self, rotation: KeyRotation) -> Result<RotateOutcome>;

    /// The key log of a device, oldest first (ties in insertion order).
    async fn key_events(&self, device_id: &str) -> Result<Vec<DeviceKeyEvent>>;

    /// Stores a new session for a device authenticated with `device_key`. The device's status
    /// and key are compared in the insert's transaction, so a revocation or key rotation that
    /// commits first always wins: revoked device → [`StoreError::DeviceRevoked`]; a stored key
    /// other than `device_key` → [`StoreError::DeviceKeyChanged`]. Existing `session_id` →
    /// [`StoreError::Conflict`]; unknown device → [`StoreError::NotFound`]; device of another
    /// user → [`StoreError::Invalid`].
    async fn create_session(&self, session: SessionRecord, device_key: &[u8; 32]) -> Result<()>;

    /// The session with this id, expired or not (callers compare `expires_at`).
    async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>>;

    /// Moves a session's expiry to `expires_at` if that is later than the stored one
    /// (never shortens, so out-of-order refreshes are harmless). A plain update: it never
    /// fails because the row exists. Unknown session → [`StoreError::NotFound`].
    async fn extend_session(&self, session_id: &str, expires_at: i64) -> Result<()>;

    /// Deletes a session; returns whether it existed.
    async fn delete_session(&self, session_id: &str) -> Result<bool>;

    /// Deletes every session with `expires_at <= now`; returns how many.
    async fn purge_expired_sessions(&self, now: i64) -> Result<u64>;

    // ---------------------------------------------------------------- groups

    /// Creates a group with its roster in one transaction. The roster must list every device
    /// once, all with `group.group_id`, and exactly one `owner`: `group.owner_device`
    /// ([`StoreError::Invalid`] otherwise). Existing `group_id` → [`StoreError::Conflict`].
    /// An owner that already owns `max_owned` groups gets [`StoreError::GroupLimit`] (counted
    /// inside the transaction, so concurrent creates cannot pass it together).
    async fn create_group(
        &self,
        group: GroupRecord,
        members: Vec<GroupMember>,
        max_owned: u64,
    ) -> Result<()>;

    /// The group with this id.
    async fn group(&self, group_id: &str) -> Result<Option<GroupRecord>>;

    /// The roster of a group, ordered by device id (empty for an unknown group).
    async fn group_members(&self, group_id: &str) -> Result<Vec<GroupMember>>;

    /// Adds a device to a group or changes its role, and returns the stored entry. The owner
    /// keeps its role whatever is asked; granting `owner` is [`StoreError::Invalid`]; an
    /// unknown group is [`StoreError::NotFound`]. `joined_at` of an existing member is kept.
    async fn upsert_group_member(&self, member: GroupMember) -> Result<GroupMember>;

    // ---------------------------------------------------------------- offline queue

    /// Stores a frame for recipients that are not connected, in one transaction: records the
    /// idempotency key (an unexpired existing key → [`EnqueueOutcome::Duplicate`], nothing
    /// stored), purges envelopes expired at `enqueued_at` (their usage is freed), refuses
    /// recipients whose frame or byte quota the frame would exceed, then — if the remaining
    /// copies would exceed the sender's frame or byte quota or the total byte quota — refuses
    /// them all, and queues the frame once for the others. Usage ([`Store::queue_usage`]) is
    /// updated in the same transaction, and concurrent enqueues are serialised, so no quota
    /// is ever exceeded. If every recipient is refused nothing is written, not even the key.
    /// `expires_at <= enqueued_at` → [`StoreError::Invalid`].
    async fn enqueue(&self, envelope: NewEnvelope) -> Result<EnqueueOutcome>;

    /// Usage of the offline queue as the quotas count it.
    async fn queue_usage(&self, scope: UsageScope<'_>) -> Result<QueueUsage>;

    /// Up to `limit` unexpired envelopes of `recipient`, in replay order (`order_key`, then
    /// enqueue order).
    async fn pending_envelopes(
        &self,
        recipient: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<QueuedEnvelope>> {
        self.pending_envelopes_except(recipient, now, limit, &[])
            .await
    }

    /// As [`Store::pending_envelopes`], leaving out the envelopes in `skip` (already sent and
    /// awaiting proof of receipt).
    async fn pending_envelopes_except(
        &self,
        recipient: &str,
        now: i64,
        limit: u32,
        skip: &[i64],
    ) -> Result<Vec<QueuedEnvelope>>;

    /// Deletes delivered envelopes of `recipient`, frees their usage and advances its inbox
    /// offset per channel to the highest delivered envelope id (offsets never move back), in
    /// one transaction.
    /// Ids that are not queued for `recipient` are ignored. Returns how many were deleted.
    async fn mark_delivered(&self, recipient: &str, envelope_ids: &[i64], now: i64) -> Result<u64>;

    /// Number of unexpired envelopes queued for `recipient`.
    async fn queued_count(&self, recipient: &str, now: i64) -> Result<u64>;

    /// The last envelope delivered to `device_id` on `channel_id`.
    async fn inbox_offset(&self, device_id: &str, channel_id: u32) -> Result<Option<InboxOffset>>;

    /// Deletes every envelope with `expires_at <= now` and frees its usage; returns how many
    /// queue entries went.
    async fn purge_expired_envelopes(&self, now: i64) -> Result<u64>;

    /// Deletes every idempotency key with `expires_at <= now`; returns how many.
    async fn purge_expired_idempotency(&self, now: i64) -> Result<u64>;

    // ---------------------------------------------------------------- pairing

    /// Stores a new pairing code. The issuer device must exist ([`StoreError::NotFound`]) and
    /// belong to `pairing.user_id`, and `expires_at` must be after `issued_at`
    /// ([`StoreError::Invalid`]); an existing code → [`StoreError::Conflict`].
    async fn create_pairing(&self, pairing: PairingRecord) -> Result<()>;

    /// The pairing code, whatever its state.
    async fn pairing(&self, code: &str) -> Result<Option<PairingRecord>>;

    /// Claims a pairing code, in one transaction: a code that is already redeemed, has
    /// `max_attempts` failed attempts or has expired (`now >= expires_at`) is refused and the
    /// refusal counted as a failed attempt (committed); otherwise the device is registered as
    /// [`Store::register_device`] does (its `max_active_devices` applies if set) and the code is
    /// marked redeemed by it. `registration.user` must be
    /// [`UserToCreate::Existing`] of the code's user ([`StoreError::Invalid`]). A registration
    /// failure writes nothing, not even an attempt.
    async fn redeem_pairing(
        &self,
        code: &str,
        now: i64,
        max_attempts: u32,
        registration: NewDeviceRegistration,
    ) -> Result<RedeemOutcome>;

    /// Deletes every pairing code with `expires_at <= now`; returns how many.
    async fn purge_expired_pairings(&self, now: i64) -> Result<u64>;

    // ---------------------------------------------------------------- friends

    /// A user's friend list in stored order (empty for an unknown user).
    async fn friends(&self, user_id: &str) -> Result<Vec<FriendRecord>>;

    /// Replaces a user's friend list, in one transaction, and returns it as stored. A user id
    /// listed twice keeps its first position and the later entry's fields. Unknown user →
    /// [`StoreError::NotFound`].
    async fn replace_friends(
        &self,
        user_id: &str,
        friends: Vec<FriendRecord>,
    ) -> Result<Vec<FriendRecord>>;

    // ---------------------------------------------------------------- operator views

    /// Up to `limit` devices of every account, revoked ones included, oldest first (ties by
    /// device id).
    async fn list_devices(&self, limit: u32) -> Result<Vec<DeviceRecord>>;

    /// Up to `limit` pairing codes whatever their state, newest first (ties by code).
    async fn list_pairings(&self, limit: u32) -> Result<Vec<PairingRecord>>;

    /// Up to `limit` groups, oldest first (ties by group id).
    async fn list_groups(&self, limit: u32) -> Result<Vec<GroupRecord>>;

    /// Unexpired envelopes queued per recipient at `now`, for up to `limit` recipients with at
    /// least one, deepest queue first (ties by device id).
    async fn queue_depths(&self, now: i64, limit: u32) -> Result<Vec<(String, u64)>>;

    // ---------------------------------------------------------------- federation

    /// Queues a federation event for its peer, in one transaction: purges the peer's expired
    /// events, then refuses ([`OutboxPush::Full`], nothing written) if the peer already has
    /// `max_per_peer` events queued, else stores it. Concurrent pushes for one peer are
    /// serialised, so the bound holds. `expires_at <= enqueued_at` → [`StoreError::Invalid`].
    async fn push_outbox(&self, event: NewOutboxEvent, max_per_peer: u64) -> Result<OutboxPush>;

    /// Up to `limit` unexpired events queued for `peer`, oldest first (`outbox_id` order).
    async fn outbox_batch(&self, peer: &str, now: i64, limit: u32) -> Result<Vec<OutboxEvent>>;

    /// Deletes a delivered (or abandoned) event; returns whether it was queued.
    async fn outbox_done(&self, outbox_id: i64) -> Result<bool>;

    /// Records a failed delivery attempt of an event: one more attempt, `error` and `at`.
    async fn outbox_failed(&self, outbox_id: i64, error: &str, at: i64) -> Result<()>;

    /// Depth, oldest event and last error of every peer with unexpired events, by domain.
    async fn outbox_stats(&self, now: i64) -> Result<Vec<OutboxStats>>;

    /// Deletes every outbox event with `expires_at <= now`; returns how many.
    async fn purge_expired_outbox(&self, now: i64) -> Result<u64>;

    /// Records an idempotency key unless an unexpired copy exists (in the table the offline
    /// queue's keys live in, purged by [`Store::purge_expired_idempotency`]); returns whether
    /// it was recorded (`false`: seen before).
    async fn claim_key(&self, key: IdempotencyKey, now: i64) -> Result<bool>;

    /// Forgets an idempotency key (the work it guarded failed and may be retried).
    async fn release_key(&self, scope: &str, key: &str) -> Result<()>;

    /// Every peer of the federation registry, by domain.
    async fn federation_peers(&self) -> Result<Vec<FederationPeer>>;

    /// Records `peer` in the registry, replacing the row of its domain. A status other than
    /// [`PEER_STATUSES`], an empty domain or endpoint → [`StoreError::Invalid`].
    async fn put_federation_peer(&self, peer: FederationPeer) -> Result<()>;

    /// Sets the status of the registry row of `domain` at `at`; returns whether it exists.
    async fn set_federation_peer_status(&self, domain: &str, status: &str, at: i64)
    -> Result<bool>;
}
