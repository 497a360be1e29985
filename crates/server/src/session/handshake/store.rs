//! Answers to the handshake machine's queries: the store, the replay caches, the key set and
//! the clock, in the machine's vocabulary.

use commucat_handshake::StoreFailure;
use commucat_handshake::server::{
    Answer, Device, NewSession, ProfileField as WireField, ProfileRules, Query, Registration, User,
};
use commucat_store::{
    DeviceRecord, DeviceStatus, SessionRecord, StoreError, UserRecord, UserToCreate,
};

use super::super::ik_replay;
use super::Handshaker;
use crate::profile::{ProfileBounds, ProfileField};
use crate::registry::{active_device_registration, session_key};

pub(super) fn store_failure(error: StoreError) -> StoreFailure {
    match error {
        StoreError::DeviceLimit { limit, .. } => StoreFailure::DeviceLimit { limit },
        StoreError::DeviceRevoked { .. } => StoreFailure::DeviceRevoked,
        StoreError::DeviceKeyChanged { .. } => StoreFailure::DeviceKeyChanged,
        StoreError::Conflict(what) => StoreFailure::Conflict(what),
        StoreError::Unavailable(_) => StoreFailure::Unavailable,
        other => StoreFailure::Other(other.to_string()),
    }
}

pub(super) fn user(record: UserRecord) -> User {
    User {
        user_id: record.user_id,
        handle: record.handle,
        display_name: record.display_name,
        avatar_url: record.avatar_url,
        created_at: record.created_at,
    }
}

pub(super) fn user_record(user: User) -> UserRecord {
    UserRecord {
        user_id: user.user_id,
        handle: user.handle,
        display_name: user.display_name,
        avatar_url: user.avatar_url,
        created_at: user.created_at,
    }
}

fn device(record: DeviceRecord) -> Device {
    Device {
        user_id: record.user_id,
        public_key: record.public_key,
        active: record.status == DeviceStatus::Active,
    }
}

/// The server's profile field for the machine's.
pub(super) const fn profile_field(field: WireField) -> ProfileField {
    match field {
        WireField::DisplayName => ProfileField::DisplayName,
        WireField::AvatarUrl => ProfileField::AvatarUrl,
    }
}

impl ProfileRules for ProfileBounds {
    fn check(&self, field: WireField, value: Option<&str>) -> Result<(), String> {
        ProfileBounds::check(self, profile_field(field), value).map_err(|e| e.to_string())
    }

    fn for_wire(&self, user: User) -> User {
        self::user(ProfileBounds::for_wire(self, user_record(user)))
    }
}

impl Handshaker {
    /// Performs `query` and returns the machine's answer.
    pub(super) async fn answer(&self, query: Query) -> Answer {
        let store = &self.store;
        match query {
            Query::NoiseKeys => Answer::NoiseKeys {
                keys: self.settings.noise_keys.load(),
                now: crate::clock::unix_now(),
            },
            Query::Replay { message_one } => {
                let shared = self.shared_replays.as_deref();
                Answer::Fresh(
                    ik_replay::admit(&self.replays, shared, &self.metrics, &message_one).await,
                )
            }
            Query::Device { device_id } => Answer::Device(
                store
                    .device(&device_id)
                    .await
                    .map(|d| d.map(device))
                    .map_err(store_failure),
            ),
            Query::User { user_id } => Answer::User(
                store
                    .user(&user_id)
                    .await
                    .map(|u| u.map(user))
                    .map_err(store_failure),
            ),
            Query::UserByHandle { handle } => Answer::User(
                store
                    .user_by_handle(&handle)
                    .await
                    .map(|u| u.map(user))
                    .map_err(store_failure),
            ),
            Query::ActiveDevices { user_id } => Answer::Count(
                store
                    .count_active_devices(&user_id)
                    .await
                    .map_err(store_failure),
            ),
            Query::Register(registration) => Answer::Registered(
                store
                    .register_device(new_registration(*registration))
                    .await
                    .map(user)
                    .map_err(store_failure),
            ),
            Query::UpdateProfile {
                user_id,
                display_name,
                avatar_url,
            } => Answer::Done(
                store
                    .update_profile(&user_id, display_name, avatar_url)
                    .await
                    .map(|_| ())
                    .map_err(store_failure),
            ),
            Query::CreateSession(session) => {
                let NewSession {
                    session_id,
                    device_id,
                    user_id,
                    device_public,
                    created_at,
                    expires_at,
                } = *session;
                let record = SessionRecord {
                    session_id: session_key(&session_id),
                    device_id,
                    user_id,
                    created_at,
                    expires_at,
                };
                Answer::Done(
                    store
                        .create_session(record, &device_public)
                        .await
                        .map_err(store_failure),
                )
            }
        }
    }
}

fn new_registration(registration: Registration) -> commucat_store::NewDeviceRegistration {
    let Registration {
        new_user,
        user_id,
        device_id,
        device_public,
        now,
        max_active_devices,
    } = registration;
    let target = match new_user {
        Some(new) => UserToCreate::New(user_record(new)),
        None => UserToCreate::Existing(user_id.clone()),
    };
    active_device_registration(
        target,
        &user_id,
        &device_id,
        device_public,
        now,
        max_active_devices,
    )
}
