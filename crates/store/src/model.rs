//! Records the store reads and writes. Times are unix seconds.

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
