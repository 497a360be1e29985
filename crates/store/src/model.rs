//! Records the store reads and writes. Times are unix seconds.

use crate::error::{Result, StoreError};

/// An account. `handle` is unique across users; the store compares it byte for byte,
/// so callers normalise handles before storing or looking them up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Opaque id (64-hex in practice).
    pub user_id: String,
    /// Unique public name.
    pub handle: String,
    /// Optional display name.
    pub display_name: Option<String>,
    /// Optional avatar URL.
    pub avatar_url: Option<String>,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// Whether a device may still connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    /// The device may connect.
    Active,
    /// The device was revoked and must be refused.
    Revoked,
}

impl DeviceStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A device of a user, identified by its Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Opaque id.
    pub device_id: String,
    /// Owner.
    pub user_id: String,
    /// Device public key.
    pub public_key: [u8; 32],
    /// Active or revoked.
    pub status: DeviceStatus,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// One entry of a device's key log (registration, revocation, later rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyEvent {
    /// Opaque unique id.
    pub event_id: String,
    /// The device the event is about.
    pub device_id: String,
    /// The key the event is about.
    pub public_key: [u8; 32],
    /// When it happened, unix seconds.
    pub recorded_at: i64,
    /// What happened, e.g. [`DeviceKeyEvent::REGISTER`] or [`DeviceKeyEvent::REVOKE`].
    pub action: String,
}

impl DeviceKeyEvent {
    /// `action` of the event written when a device is registered.
    pub const REGISTER: &'static str = "register";
    /// `action` of the event written when a device is revoked.
    pub const REVOKE: &'static str = "revoke";
    /// `action` of the event written when a device replaces its key (the event carries the
    /// new key).
    pub const ROTATE: &'static str = "rotate";
}

impl DeviceKeyEvent {
    /// [`StoreError::Invalid`] unless the event is for `device_id` (every backend checks this
    /// before it writes).
    ///
    /// # Errors
    /// The event names another device.
    pub fn check_device(&self, device_id: &str) -> Result<()> {
        if self.device_id == device_id {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "key event {} is for device {}, not {device_id}",
                self.event_id, self.device_id
            )))
        }
    }
}

/// A device key change for [`crate::Store::rotate_device_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    /// The device whose key changes.
    pub device_id: String,
    /// The key the change was proven with; the stored key must still be this one.
    pub old_public_key: [u8; 32],
    /// The `rotate` event: the new key and the time of the change.
    pub event: DeviceKeyEvent,
    /// Shortest time between two rotations of the device, seconds (the first one is not
    /// limited).
    pub min_interval_secs: i64,
}

impl KeyRotation {
    /// [`StoreError::Invalid`] unless the event is a `rotate` event for this device carrying a
    /// key other than the old one.
    ///
    /// # Errors
    /// A malformed rotation.
    pub fn check(&self) -> Result<()> {
        self.event.check_device(&self.device_id)?;
        if self.event.action != DeviceKeyEvent::ROTATE
            || self.event.public_key == self.old_public_key
        {
            return Err(StoreError::Invalid(format!(
                "key event {} must be a rotate event carrying a new key",
                self.event.event_id
            )));
        }
        Ok(())
    }
}

/// Result of [`crate::Store::rotate_device_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The key was replaced, the event recorded and the device's sessions deleted.
    Rotated,
    /// The device is revoked; nothing changed.
    Revoked,
    /// The stored key is no longer `old_public_key` (a concurrent rotation); nothing changed.
    KeyChanged,
    /// The new key was this device's key before (keys are never reused, so an old proof
    /// cannot bring a replaced key back); nothing changed.
    KeyReused,
    /// The last rotation was less than `min_interval_secs` ago; nothing changed.
    TooSoon {
        /// Time of the last rotation, unix seconds.
        last_change_at: i64,
    },
}

/// An authenticated session of one device.
///
/// If `session_id` doubles as a bearer token, callers should store a hash of it, not the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Opaque unique id.
    pub session_id: String,
    /// The device that authenticated.
    pub device_id: String,
    /// The device's owner (must match the device's `user_id`).
    pub user_id: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Expiry, unix seconds; the store returns expired rows until they are purged.
    pub expires_at: i64,
}

/// Which user a new device belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserToCreate {
    /// An existing user, by id.
    Existing(String),
    /// A user created in the same transaction as the device.
    New(UserRecord),
}

impl UserToCreate {
    /// The user id the registration targets.
    pub fn user_id(&self) -> &str {
        match self {
            Self::Existing(user_id) => user_id,
            Self::New(user) => &user.user_id,
        }
    }
}

/// Everything [`Store::register_device`](crate::Store::register_device) writes in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeviceRegistration {
    /// The owner, existing or to be created.
    pub user: UserToCreate,
    /// The device; its `user_id` must be the owner's id.
    pub device: DeviceRecord,
    /// The key-log entry; its `device_id` must be the device's id.
    pub key_event: DeviceKeyEvent,
    /// Refuse the registration if the owner already has this many active devices.
    pub max_active_devices: Option<u64>,
}

impl NewDeviceRegistration {
    /// [`StoreError::Invalid`] unless the device names the owner and the key event the device.
    ///
    /// # Errors
    /// Mismatched ids.
    pub fn check(&self) -> Result<()> {
        if self.device.user_id != self.user.user_id() {
            return Err(StoreError::Invalid(format!(
                "device {} names user {}, registration is for user {}",
                self.device.device_id,
                self.device.user_id,
                self.user.user_id()
            )));
        }
        self.key_event.check_device(&self.device.device_id)
    }
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupRole {
    /// Created the group; exactly one per group.
    Owner,
    /// May invite members.
    Admin,
    /// May read and write.
    Member,
}

impl GroupRole {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// A group: a persistent roster that governs the channels bound to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Opaque unique id (client-chosen or generated).
    pub group_id: String,
    /// The device that created the group (its only `owner`).
    pub owner_device: String,
    /// Display name.
    pub name: Option<String>,
    /// Whether the server fans out (`relay` of GROUP_CREATE).
    pub relay: bool,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// One device on a group's roster. Device ids are opaque references: a roster may name
/// devices that have not registered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The group.
    pub group_id: String,
    /// The member device.
    pub device_id: String,
    /// Its role.
    pub role: GroupRole,
    /// When it was added, unix seconds.
    pub joined_at: i64,
}

/// A client's key marking a frame as already accepted, so a resend is not delivered twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose keys these are (the sending device).
    pub scope: String,
    /// The key within the scope.
    pub key: String,
    /// When the key stops counting, unix seconds; an expired key is as good as absent.
    pub expires_at: i64,
}

/// A frame to store for recipients that are not connected.
///
/// The payload is stored once and referenced by one queue row per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvelope {
    /// Recipient devices (duplicates are ignored).
    pub recipients: Vec<String>,
    /// Channel the frame travels on.
    pub channel_id: u32,
    /// Sending device.
    pub sender: String,
    /// Replay order: envelopes replay by ascending `order_key`, then by enqueue order.
    pub order_key: i64,
    /// The encoded frame (its sequence number is replaced on replay).
    pub frame: Vec<u8>,
    /// Enqueue time, unix seconds (also "now" for the queue bound).
    pub enqueued_at: i64,
    /// Expiry, unix seconds: an expired envelope is never replayed.
    pub expires_at: i64,
    /// Recorded in the same transaction; if it is already present and unexpired nothing is
    /// stored and the outcome is [`EnqueueOutcome::Duplicate`].
    pub idempotency: Option<IdempotencyKey>,
    /// Quotas checked (and the usage they count updated) in the same transaction.
    pub limits: QueueLimits,
}

/// Quotas of the offline queue. Every queue entry counts once toward its recipient, its sender
/// and the total, with the length of its frame in bytes: a frame queued for `n` recipients
/// counts `n` times (its payload is stored once, but each copy is owed to someone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Unexpired entries one recipient may have.
    pub frames_per_recipient: u64,
    /// Bytes of unexpired entries one recipient may have.
    pub bytes_per_recipient: u64,
    /// Unexpired entries one sender may have queued, across all recipients.
    pub frames_per_sender: u64,
    /// Bytes of unexpired entries one sender may have queued, across all recipients.
    pub bytes_per_sender: u64,
    /// Bytes of unexpired entries in the whole queue.
    pub bytes_total: u64,
}

impl QueueLimits {
    /// No quota at all.
    pub const UNBOUNDED: Self = Self {
        frames_per_recipient: u64::MAX,
        bytes_per_recipient: u64::MAX,
        frames_per_sender: u64::MAX,
        bytes_per_sender: u64::MAX,
        bytes_total: u64::MAX,
    };

    /// Only `frames` entries per recipient.
    #[must_use]
    pub const fn frames_per_recipient(frames: u64) -> Self {
        Self {
            frames_per_recipient: frames,
            ..Self::UNBOUNDED
        }
    }
}

/// Which quota refused a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaLimit {
    /// [`QueueLimits::frames_per_recipient`].
    RecipientFrames,
    /// [`QueueLimits::bytes_per_recipient`].
    RecipientBytes,
    /// [`QueueLimits::frames_per_sender`].
    SenderFrames,
    /// [`QueueLimits::bytes_per_sender`].
    SenderBytes,
    /// [`QueueLimits::bytes_total`].
    TotalBytes,
}

/// A recipient the envelope was not stored for, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The recipient.
    pub recipient: String,
    /// The quota that would have been exceeded.
    pub limit: QuotaLimit,
}

/// Whose usage of the offline queue to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageScope<'a> {
    /// Entries queued for this device.
    Recipient(&'a str),
    /// Entries this device queued for others.
    Sender(&'a str),
    /// Every entry.
    Total,
}

/// Entries and their bytes, as counted for the quotas (expired entries count until purged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueUsage {
    /// Queue entries.
    pub frames: u64,
    /// Sum of their frame lengths.
    pub bytes: u64,
}

/// What [`Store::enqueue`](crate::Store::enqueue) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// The envelope was committed for `stored`; `refused` recipients were over a quota.
    Stored {
        /// Recipients the envelope was queued for.
        stored: Vec<String>,
        /// Recipients it was not stored for (nothing was stored for them), with the quota.
        refused: Vec<Refusal>,
    },
    /// The idempotency key was already present: nothing was stored.
    Duplicate,
}

/// A queued envelope of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEnvelope {
    /// Unique, increasing id of this recipient's queue entry (never reused).
    pub envelope_id: i64,
    /// The recipient device.
    pub recipient: String,
    /// Channel the frame travels on.
    pub channel_id: u32,
    /// Sending device.
    pub sender: String,
    /// Replay order key.
    pub order_key: i64,
    /// The encoded frame.
    pub frame: Vec<u8>,
    /// Enqueue time, unix seconds.
    pub enqueued_at: i64,
    /// Expiry, unix seconds.
    pub expires_at: i64,
}

/// The last envelope delivered to a device on a channel (audit and resumption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxOffset {
    /// The recipient device.
    pub device_id: String,
    /// The channel.
    pub channel_id: u32,
    /// Id of the last delivered envelope on that channel.
    pub last_envelope_id: i64,
    /// When it was delivered, unix seconds.
    pub updated_at: i64,
}

/// A pairing code: lets one new device join the issuer's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingRecord {
    /// The code as shown to people (`ABCD-EFGH`), unique.
    pub code: String,
    /// The account the claimed device joins.
    pub user_id: String,
    /// The device that issued the code (must belong to `user_id`).
    pub issuer_device_id: String,
    /// Issue time, unix seconds.
    pub issued_at: i64,
    /// Expiry, unix seconds: the code cannot be claimed at or after it.
    pub expires_at: i64,
    /// Failed claims so far.
    pub attempts: u32,
    /// When the code was redeemed, if it was.
    pub redeemed_at: Option<i64>,
    /// The device registered by the redeeming claim.
    pub redeemed_device_id: Option<String>,
}

impl PairingRecord {
    /// Why a claim of this code at `now` must be refused (each refusal also counts an attempt),
    /// or `None` when it may be redeemed.
    #[must_use]
    pub fn refusal(&self, now: i64, max_attempts: u32) -> Option<RedeemOutcome> {
        // A blocked code says so first, whatever else is wrong with it: past the cap, guesses
        // at a redeemed or expired code are refused as such too.
        if self.attempts >= max_attempts {
            Some(RedeemOutcome::TooManyAttempts)
        } else if self.redeemed_at.is_some() {
            Some(RedeemOutcome::AlreadyRedeemed)
        } else if now >= self.expires_at {
            Some(RedeemOutcome::Expired)
        } else {
            None
        }
    }

    /// [`StoreError::Invalid`] unless `registration` adds its device to this code's user.
    ///
    /// # Errors
    /// The registration is for another or a new user.
    pub fn check_registration(&self, registration: &NewDeviceRegistration) -> Result<()> {
        if registration.user == UserToCreate::Existing(self.user_id.clone()) {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "pairing code {} adds devices to user {}, not to {}",
                self.code,
                self.user_id,
                registration.user.user_id()
            )))
        }
    }
}

/// What [`Store::redeem_pairing`](crate::Store::redeem_pairing) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// The device was registered under the code's user, who is returned.
    Redeemed(UserRecord),
    /// No such code.
    Unknown,
    /// The code has expired (the failed attempt was counted).
    Expired,
    /// The code was already redeemed (the failed attempt was counted).
    AlreadyRedeemed,
    /// The code has used up its failed attempts (this attempt was counted too).
    TooManyAttempts,
}

/// One entry of a user's friend list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRecord {
    /// The friend's user id (an opaque reference; it need not be a local user).
    pub user_id: String,
    /// The friend's handle as the client knows it.
    pub handle: Option<String>,
    /// The owner's private name for the friend.
    pub alias: Option<String>,
}

// ---------------------------------------------------------------- federation outbox

/// A signed federation event to queue for delivery to a peer domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    /// The peer's domain.
    pub peer: String,
    /// The channel the event belongs to: events of one (peer, channel) are delivered in order.
    pub channel_id: u32,
    /// The event's id (for operators and logs).
    pub event_id: String,
    /// The request body to send (the signed event's JSON).
    pub body: Vec<u8>,
    /// Unix seconds.
    pub enqueued_at: i64,
    /// Unix seconds; an expired event is never sent and is purged.
    pub expires_at: i64,
}

/// What [`crate::Store::push_outbox`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxPush {
    /// Queued under this id.
    Stored {
        /// Increasing: delivery order.
        outbox_id: i64,
    },
    /// The peer already has `depth` unexpired events queued, the most allowed; nothing was
    /// written.
    Full {
        /// Events queued for the peer.
        depth: u64,
    },
}

/// A queued federation event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Queue position (increasing).
    pub outbox_id: i64,
    /// The peer's domain.
    pub peer: String,
    /// The event's channel.
    pub channel_id: u32,
    /// The event's id.
    pub event_id: String,
    /// The request body.
    pub body: Vec<u8>,
    /// Unix seconds.
    pub enqueued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Failed delivery attempts so far.
    pub attempts: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A peer domain recorded in the federation registry (`federation_peer`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FederationPeer {
    /// The peer's domain (lowercase).
    pub domain: String,
    /// Its `https://` base URL.
    pub endpoint: String,
    /// Its pinned Ed25519 federation key, hex; `None` while none is pinned.
    pub public_key: Option<String>,
    /// `active`, `pending` or `blocked`.
    pub status: String,
    /// A certificate bundle to trust for it instead of the system roots.
    pub ca_file: Option<String>,
    /// When the row last changed, unix seconds.
    pub updated_at: i64,
}

/// The statuses a registry row may have.
pub const PEER_STATUSES: [&str; 3] = ["active", "pending", "blocked"];

/// The outbox of one peer, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    /// The peer's domain.
    pub peer: String,
    /// Unexpired events queued.
    pub depth: u64,
    /// When the oldest of them was queued, unix seconds.
    pub oldest_enqueued_at: Option<i64>,
    /// The most recent delivery failure among them, if any.
    pub last_error: Option<String>,
    /// When that failure happened, unix seconds.
    pub last_attempt_at: Option<i64>,
}
