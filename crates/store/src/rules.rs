//! The rules every backend applies, apart from the SQL: argument checks made before touching
//! the database, the decisions taken on rows read inside a transaction, and the errors they
//! produce. Backends read and write rows and call these at the same points, so both answer a
//! call alike; the rules themselves are plain functions, tested here without a database.
//!
//! Queue quota arithmetic lives beside them in [`crate::quota`]; checks that belong to a
//! record's own shape are methods of the public model types (`NewDeviceRegistration::check`,
//! `KeyRotation::check`, `DeviceKeyEvent::check_device`, `PairingRecord::refusal`, …).

use std::collections::{BTreeSet, HashSet};

use crate::error::{Result, StoreError};
use crate::model::{
    DeviceKeyEvent, DeviceRecord, DeviceStatus, GroupMember, GroupRecord, GroupRole, NewEnvelope,
    PairingRecord, RotateOutcome, SessionRecord, UserRecord,
};

// ---------------------------------------------------------------- lookups and conflicts

/// The row the operation needs, or [`StoreError::NotFound`] naming it.
pub(crate) fn found<T>(row: Option<T>, what: &'static str, id: &str) -> Result<T> {
    row.ok_or_else(|| StoreError::NotFound {
        what,
        id: id.to_owned(),
    })
}

/// [`StoreError::NotFound`] when an update by id changed no row.
pub(crate) fn updated(rows_affected: u64, what: &'static str, id: &str) -> Result<()> {
    if rows_affected == 0 {
        return Err(StoreError::NotFound {
            what,
            id: id.to_owned(),
        });
    }
    Ok(())
}

/// What an insert found already taken; names it in the [`StoreError::Conflict`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Taken<'a> {
    Handle(&'a str),
    User(&'a str),
    Device(&'a str),
    KeyEvent(&'a str),
    Session(&'a str),
    Group(&'a str),
    PairingCode(&'a str),
}

impl Taken<'_> {
    /// The conflict, phrased for the caller.
    pub(crate) fn error(self) -> StoreError {
        StoreError::Conflict(match self {
            Self::Handle(handle) => format!("handle {handle:?} is already taken"),
            Self::User(id) => format!("user {id} already exists"),
            Self::Device(id) => format!("device {id} already exists"),
            Self::KeyEvent(id) => format!("key event {id} already exists"),
            Self::Session(id) => format!("session {id} already exists"),
            Self::Group(id) => format!("group {id} already exists"),
            Self::PairingCode(code) => format!("pairing code {code} already exists"),
        })
    }

    /// `err`, with a uniqueness conflict (whichever constraint the driver named) replaced by
    /// this one.
    pub(crate) fn or(self, err: StoreError) -> StoreError {
        match err {
            StoreError::Conflict(_) => self.error(),
            other => other,
        }
    }
}

// ---------------------------------------------------------------- devices

/// [`StoreError::DeviceLimit`] when `owner` already has `limit` (or more) active devices.
pub(crate) fn check_device_limit(owner: &UserRecord, limit: u64, active: u64) -> Result<()> {
    if active >= limit {
        return Err(StoreError::DeviceLimit {
            user_id: owner.user_id.clone(),
            limit,
        });
    }
    Ok(())
}

/// Whether a revocation has anything to do: revoking a revoked device changes nothing.
pub(crate) fn needs_revoking(device: &DeviceRecord) -> bool {
    device.status != DeviceStatus::Revoked
}

/// The refusal the device's row alone decides for a key rotation: the device is revoked, or
/// its key is no longer the one the rotation was proven with.
pub(crate) fn rotation_blocked(
    device: &DeviceRecord,
    old_public_key: &[u8; 32],
) -> Option<RotateOutcome> {
    if device.status == DeviceStatus::Revoked {
        Some(RotateOutcome::Revoked)
    } else if device.public_key != *old_public_key {
        Some(RotateOutcome::KeyChanged)
    } else {
        None
    }
}

/// [`RotateOutcome::KeyReused`] when the new key appears `times_logged` times in the device's
/// key log: keys are never reused.
pub(crate) fn key_reused(times_logged: i64) -> Option<RotateOutcome> {
    (times_logged > 0).then_some(RotateOutcome::KeyReused)
}

/// [`RotateOutcome::TooSoon`] when `event` comes less than `min_interval_secs` after the
/// device's last rotation (`None`: never rotated, so not limited).
pub(crate) fn rotation_too_soon(
    last_rotation: Option<i64>,
    event: &DeviceKeyEvent,
    min_interval_secs: i64,
) -> Option<RotateOutcome> {
    let last_change_at = last_rotation?;
    (event.recorded_at < last_change_at.saturating_add(min_interval_secs))
        .then_some(RotateOutcome::TooSoon { last_change_at })
}

// ---------------------------------------------------------------- sessions

/// Why a session authenticated with `device_key` may not be stored for `device` (`None`: no
/// such device), in this order: unknown device, device of another user, revoked device, a
/// key the device no longer has.
pub(crate) fn check_session_device(
    session: &SessionRecord,
    device: Option<DeviceRecord>,
    device_key: &[u8; 32],
) -> Result<()> {
    let device = found(device, "device", &session.device_id)?;
    if device.user_id != session.user_id {
        return Err(StoreError::Invalid(format!(
            "device {} belongs to user {}, not {}",
            device.device_id, device.user_id, session.user_id
        )));
    }
    if device.status != DeviceStatus::Active {
        return Err(StoreError::DeviceRevoked {
            device_id: device.device_id,
        });
    }
    if device.public_key != *device_key {
        return Err(StoreError::DeviceKeyChanged {
            device_id: device.device_id,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- groups

/// [`StoreError::GroupLimit`] when `owner` already owns `limit` (or more) groups; `owned` is
/// the count read inside the creating transaction.
pub(crate) fn check_groups_owned(owner: &str, owned: i64, limit: u64) -> Result<()> {
    if u64::try_from(owned).unwrap_or(0) >= limit {
        return Err(StoreError::GroupLimit {
            device_id: owner.to_owned(),
            limit,
        });
    }
    Ok(())
}

/// Checks the roster of a new group: every member belongs to it, no device twice, exactly one
/// owner and it is the group's `owner_device`.
pub(crate) fn check_roster(group: &GroupRecord, members: &[GroupMember]) -> Result<()> {
    let mut seen = HashSet::new();
    let mut owners = 0;
    for member in members {
        if member.group_id != group.group_id {
            return Err(StoreError::Invalid(format!(
                "member {} names group {}, not {}",
                member.device_id, member.group_id, group.group_id
            )));
        }
        if !seen.insert(member.device_id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "device {} listed twice",
                member.device_id
            )));
        }
        if member.role == GroupRole::Owner {
            if member.device_id != group.owner_device {
                return Err(StoreError::Invalid(format!(
                    "only the owner device {} may have the owner role",
                    group.owner_device
                )));
            }
            owners += 1;
        }
    }
    if owners != 1 {
        return Err(StoreError::Invalid(format!(
            "the roster must list the owner {} with the owner role",
            group.owner_device
        )));
    }
    Ok(())
}

/// Refuses granting the owner role to a member of an existing group.
pub(crate) fn check_member_role(member: &GroupMember) -> Result<()> {
    if member.role == GroupRole::Owner {
        return Err(StoreError::Invalid(
            "a group has one owner, set when it is created".to_owned(),
        ));
    }
    Ok(())
}

/// The member row just written, read back in the same transaction.
pub(crate) fn written_member(row: Option<GroupMember>) -> Result<GroupMember> {
    row.ok_or_else(|| StoreError::Unavailable("group member vanished".to_owned()))
}

// ---------------------------------------------------------------- pairing

/// A pairing code must expire after it is issued.
pub(crate) fn check_pairing_times(pairing: &PairingRecord) -> Result<()> {
    if pairing.expires_at <= pairing.issued_at {
        return Err(StoreError::Invalid(format!(
            "pairing code expires ({}) before it is issued ({})",
            pairing.expires_at, pairing.issued_at
        )));
    }
    Ok(())
}

/// The issuing device (`None`: unknown) must exist and belong to the code's user.
pub(crate) fn check_issuer(issuer: Option<DeviceRecord>, pairing: &PairingRecord) -> Result<()> {
    let issuer = found(issuer, "device", &pairing.issuer_device_id)?;
    if issuer.user_id != pairing.user_id {
        return Err(StoreError::Invalid(format!(
            "device {} does not belong to user {}",
            issuer.device_id, pairing.user_id
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- offline queue

/// An envelope must expire after it is enqueued.
pub(crate) fn check_envelope(envelope: &NewEnvelope) -> Result<()> {
    if envelope.expires_at <= envelope.enqueued_at {
        return Err(StoreError::Invalid(
            "envelope expires before it is enqueued".to_owned(),
        ));
    }
    Ok(())
}

/// The envelope's recipients, each once, sorted: the order quotas are judged and copies
/// queued in (so envelope ids follow it on every backend).
pub(crate) fn recipients(envelope: &NewEnvelope) -> Vec<&str> {
    envelope
        .recipients
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::model::QueueLimits;

    fn device(status: DeviceStatus, key: u8) -> DeviceRecord {
        DeviceRecord {
            device_id: "d".into(),
            user_id: "u".into(),
            public_key: [key; 32],
            status,
            created_at: 1,
        }
    }

    fn event(recorded_at: i64) -> DeviceKeyEvent {
        DeviceKeyEvent {
            event_id: "e".into(),
            device_id: "d".into(),
            public_key: [9; 32],
            recorded_at,
            action: DeviceKeyEvent::ROTATE.into(),
        }
    }

    #[test]
    fn conflicts_name_what_is_taken() {
        let err = Taken::Session("s1").or(StoreError::Conflict("sessions_pkey".into()));
        assert_eq!(
            err,
            StoreError::Conflict("session s1 already exists".into())
        );
        let other = StoreError::Unavailable("down".into());
        assert_eq!(Taken::Session("s1").or(other.clone()), other);
        assert_eq!(
            Taken::Handle("al").error(),
            StoreError::Conflict("handle \"al\" is already taken".into())
        );
    }

    #[test]
    fn lookups_name_the_missing_row() {
        assert_eq!(found(Some(1), "user", "u").unwrap(), 1);
        assert!(matches!(
            found::<()>(None, "user", "u"),
            Err(StoreError::NotFound { what: "user", id }) if id == "u"
        ));
        assert!(updated(1, "session", "s").is_ok());
        assert!(matches!(
            updated(0, "session", "s"),
            Err(StoreError::NotFound {
                what: "session",
                ..
            })
        ));
    }

    #[test]
    fn rotation_refusals_come_in_order() {
        let active = device(DeviceStatus::Active, 1);
        assert_eq!(
            rotation_blocked(&device(DeviceStatus::Revoked, 2), &[1; 32]),
            Some(RotateOutcome::Revoked)
        );
        assert_eq!(
            rotation_blocked(&active, &[2; 32]),
            Some(RotateOutcome::KeyChanged)
        );
        assert_eq!(rotation_blocked(&active, &[1; 32]), None);
        assert_eq!(key_reused(1), Some(RotateOutcome::KeyReused));
        assert_eq!(key_reused(0), None);
        assert_eq!(rotation_too_soon(None, &event(5), 100), None);
        assert_eq!(
            rotation_too_soon(Some(10), &event(109), 100),
            Some(RotateOutcome::TooSoon { last_change_at: 10 })
        );
        assert_eq!(rotation_too_soon(Some(10), &event(110), 100), None);
        assert_eq!(rotation_too_soon(Some(10), &event(5), i64::MAX), {
            Some(RotateOutcome::TooSoon { last_change_at: 10 })
        });
    }

    #[test]
    fn device_limit_counts_active_devices() {
        let owner = UserRecord {
            user_id: "u".into(),
            handle: "h".into(),
            display_name: None,
            avatar_url: None,
            created_at: 1,
        };
        assert!(check_device_limit(&owner, 2, 1).is_ok());
        assert!(matches!(
            check_device_limit(&owner, 2, 2),
            Err(StoreError::DeviceLimit { limit: 2, .. })
        ));
        assert!(needs_revoking(&device(DeviceStatus::Active, 1)));
        assert!(!needs_revoking(&device(DeviceStatus::Revoked, 1)));
    }

    #[test]
    fn session_device_is_checked_in_order() {
        let session = SessionRecord {
            session_id: "s".into(),
            device_id: "d".into(),
            user_id: "u".into(),
            created_at: 1,
            expires_at: 2,
        };
        let check =
            |d: Option<DeviceRecord>, key: u8| check_session_device(&session, d, &[key; 32]);
        assert!(matches!(check(None, 1), Err(StoreError::NotFound { .. })));
        let mut foreign = device(DeviceStatus::Revoked, 2);
        foreign.user_id = "v".into();
        assert!(matches!(
            check(Some(foreign), 1),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            check(Some(device(DeviceStatus::Revoked, 2)), 1),
            Err(StoreError::DeviceRevoked { .. })
        ));
        assert!(matches!(
            check(Some(device(DeviceStatus::Active, 2)), 1),
            Err(StoreError::DeviceKeyChanged { .. })
        ));
        assert!(check(Some(device(DeviceStatus::Active, 1)), 1).is_ok());
    }

    #[test]
    fn pairing_issuer_must_be_the_users() {
        let pairing = PairingRecord {
            code: "c".into(),
            user_id: "u".into(),
            issuer_device_id: "d".into(),
            issued_at: 10,
            expires_at: 10,
            attempts: 0,
            redeemed_at: None,
            redeemed_device_id: None,
        };
        assert!(matches!(
            check_pairing_times(&pairing),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            check_issuer(None, &pairing),
            Err(StoreError::NotFound { what: "device", .. })
        ));
        let mut other = device(DeviceStatus::Active, 1);
        other.user_id = "v".into();
        assert!(matches!(
            check_issuer(Some(other), &pairing),
            Err(StoreError::Invalid(_))
        ));
        assert!(check_issuer(Some(device(DeviceStatus::Active, 1)), &pairing).is_ok());
    }

    #[test]
    fn envelope_recipients_are_deduplicated_and_sorted() {
        let envelope = NewEnvelope {
            recipients: vec!["c".into(), "a".into(), "c".into(), "b".into()],
            channel_id: 1,
            sender: "s".into(),
            order_key: 0,
            frame: vec![1],
            enqueued_at: 5,
            expires_at: 5,
            idempotency: None,
            limits: QueueLimits::UNBOUNDED,
        };
        assert_eq!(recipients(&envelope), ["a", "b", "c"]);
        assert!(matches!(
            check_envelope(&envelope),
            Err(StoreError::Invalid(_))
        ));
    }
}
