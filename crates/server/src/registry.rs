//! Device and account identity rules shared by the handshake, REST and the CLI: how ids look,
//! how a session token is keyed in the store, and what a device registration holds.

use commucat_keys::encode_hex;
use commucat_store::{
    DeviceKeyEvent, DeviceRecord, DeviceStatus, NewDeviceRegistration, UserToCreate,
};
use rand_core::{OsRng, RngCore};

/// Longest accepted `device_id`.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest accepted handle.
pub const MAX_HANDLE_LEN: usize = 64;

/// The store key of a session token: its BLAKE3 hash, so a leaked database holds no usable
/// bearer tokens. Everything that looks a session up by token hashes it the same way.
#[must_use]
pub fn session_key(token: &str) -> String {
    encode_hex(blake3::hash(token.as_bytes()).as_bytes())
}

/// A fresh random id, 64 lowercase hex characters from 32 random bytes: users, key events.
#[must_use]
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    encode_hex(&bytes)
}

/// A key-log entry with a fresh id: `action` (one of the [`DeviceKeyEvent`] actions) on
/// `device_id` with `public_key`, recorded at `now`.
#[must_use]
pub fn key_event(device_id: &str, public_key: [u8; 32], action: &str, now: i64) -> DeviceKeyEvent {
    DeviceKeyEvent {
        event_id: random_id(),
        device_id: device_id.to_owned(),
        public_key,
        recorded_at: now,
        action: action.to_owned(),
    }
}

/// The registration of an active device `device_id` with `public_key` for `user_id` (created or
/// existing as `user` says), with its `register` key event; `max_active_devices` bounds the
/// owner's active devices (`None`: an approval that needs no limit, such as a pairing claim).
#[must_use]
pub fn active_device_registration(
    user: UserToCreate,
    user_id: &str,
    device_id: &str,
    public_key: [u8; 32],
    now: i64,
    max_active_devices: Option<u64>,
) -> NewDeviceRegistration {
    NewDeviceRegistration {
        user,
        device: DeviceRecord {
            device_id: device_id.to_owned(),
            user_id: user_id.to_owned(),
            public_key,
            status: DeviceStatus::Active,
            created_at: now,
        },
        key_event: key_event(device_id, public_key, DeviceKeyEvent::REGISTER, now),
        max_active_devices,
    }
}

/// Whether `id` is an acceptable `device_id`.
#[must_use]
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
}

/// Whether `handle` is an acceptable account handle.
#[must_use]
pub fn valid_handle(handle: &str) -> bool {
    !handle.is_empty()
        && handle.len() <= MAX_HANDLE_LEN
        && handle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
