//! Raw rows as every SQL backend returns them, and their checked conversion into records.
//!
//! Column types are portable: TEXT → `String`, INTEGER/BIGINT → `i64`, BLOB/BYTEA → `Vec<u8>`.

use crate::error::StoreError;
use crate::model::{
    DeviceKeyEvent, DeviceRecord, DeviceStatus, GroupMember, GroupRecord, GroupRole, InboxOffset,
    QueuedEnvelope, SessionRecord, UserRecord,
};

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub(crate) user_id: String,
    pub(crate) handle: String,
    pub(crate) display_name: Option<String>,
    pub(crate) avatar_url: Option<String>,
    pub(crate) created_at: i64,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        Self {
            user_id: row.user_id,
            handle: row.handle,
            display_name: row.display_name,
            avatar_url: row.avatar_url,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeviceRow {
    pub(crate) device_id: String,
    pub(crate) user_id: String,
    pub(crate) public_key: Vec<u8>,
    pub(crate) status: String,
    pub(crate) created_at: i64,
}

impl TryFrom<DeviceRow> for DeviceRecord {
    type Error = StoreError;

    fn try_from(row: DeviceRow) -> Result<Self, StoreError> {
        let public_key = key32(&row.public_key, "device", &row.device_id)?;
        let status = DeviceStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "device {}: unknown status {:?}",
                row.device_id, row.status
            ))
        })?;
        Ok(Self {
            device_id: row.device_id,
            user_id: row.user_id,
            public_key,
            status,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyEventRow {
    pub(crate) event_id: String,
    pub(crate) device_id: String,
    pub(crate) public_key: Vec<u8>,
    pub(crate) recorded_at: i64,
    pub(crate) action: String,
}

impl TryFrom<KeyEventRow> for DeviceKeyEvent {
    type Error = StoreError;

    fn try_from(row: KeyEventRow) -> Result<Self, StoreError> {
        let public_key = key32(&row.public_key, "key event", &row.event_id)?;
        Ok(Self {
            event_id: row.event_id,
            device_id: row.device_id,
            public_key,
            recorded_at: row.recorded_at,
            action: row.action,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub(crate) session_id: String,
    pub(crate) device_id: String,
    pub(crate) user_id: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
}

impl From<SessionRow> for SessionRecord {
    fn from(row: SessionRow) -> Self {
        Self {
            session_id: row.session_id,
            device_id: row.device_id,
            user_id: row.user_id,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GroupRow {
    pub(crate) group_id: String,
    pub(crate) owner_device: String,
    pub(crate) name: Option<String>,
    pub(crate) relay: i64,
    pub(crate) created_at: i64,
}

impl TryFrom<GroupRow> for GroupRecord {
    type Error = StoreError;

    fn try_from(row: GroupRow) -> Result<Self, StoreError> {
        let relay = match row.relay {
            0 => false,
            1 => true,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "group {}: relay flag {other}",
                    row.group_id
                )));
            }
        };
        Ok(Self {
            group_id: row.group_id,
            owner_device: row.owner_device,
            name: row.name,
            relay,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberRow {
    pub(crate) group_id: String,
    pub(crate) device_id: String,
    pub(crate) role: String,
    pub(crate) joined_at: i64,
}

impl TryFrom<MemberRow> for GroupMember {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> Result<Self, StoreError> {
        let role = GroupRole::parse(&row.role).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "group {} member {}: unknown role {:?}",
                row.group_id, row.device_id, row.role
            ))
        })?;
        Ok(Self {
            group_id: row.group_id,
            device_id: row.device_id,
            role,
            joined_at: row.joined_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EnvelopeRow {
    pub(crate) envelope_id: i64,
    pub(crate) recipient: String,
    pub(crate) channel_id: i64,
    pub(crate) sender: String,
    pub(crate) order_key: i64,
    pub(crate) frame: Vec<u8>,
    pub(crate) enqueued_at: i64,
    pub(crate) expires_at: i64,
}

impl TryFrom<EnvelopeRow> for QueuedEnvelope {
    type Error = StoreError;

    fn try_from(row: EnvelopeRow) -> Result<Self, StoreError> {
        Ok(Self {
            channel_id: channel(row.channel_id, "envelope", row.envelope_id)?,
            envelope_id: row.envelope_id,
            recipient: row.recipient,
            sender: row.sender,
            order_key: row.order_key,
            frame: row.frame,
            enqueued_at: row.enqueued_at,
            expires_at: row.expires_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OffsetRow {
    pub(crate) device_id: String,
    pub(crate) channel_id: i64,
    pub(crate) last_envelope_id: i64,
    pub(crate) updated_at: i64,
}

impl TryFrom<OffsetRow> for InboxOffset {
    type Error = StoreError;

    fn try_from(row: OffsetRow) -> Result<Self, StoreError> {
        Ok(Self {
            channel_id: channel(row.channel_id, "inbox offset", row.last_envelope_id)?,
            device_id: row.device_id,
            last_envelope_id: row.last_envelope_id,
            updated_at: row.updated_at,
        })
    }
}

/// A stored channel id as `u32`.
fn channel(value: i64, what: &str, id: i64) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} {id}: channel id {value} out of range")))
}

/// Converts a list of rows, failing on the first one that does not decode.
pub(crate) fn decode_all<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// Converts a `COUNT(*)` (always non-negative) into `u64`.
pub(crate) fn count(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative count {value}")))
}

fn key32(bytes: &[u8], what: &str, id: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "{what} {id}: public_key is {} bytes, expected 32",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn row(public_key: Vec<u8>, status: &str) -> DeviceRow {
        DeviceRow {
            device_id: "d".into(),
            user_id: "u".into(),
            public_key,
            status: status.into(),
            created_at: 1,
        }
    }

    #[test]
    fn device_row_decodes() {
        let record = DeviceRecord::try_from(row(vec![7; 32], "revoked")).unwrap();
        assert_eq!(record.public_key, [7; 32]);
        assert_eq!(record.status, DeviceStatus::Revoked);
    }

    #[test]
    fn short_key_is_corrupt() {
        let err = DeviceRecord::try_from(row(vec![7; 31], "active")).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(m) if m.contains("31 bytes")));
    }

    #[test]
    fn unknown_status_is_corrupt() {
        let err = DeviceRecord::try_from(row(vec![7; 32], "banned")).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(m) if m.contains("banned")));
    }

    #[test]
    fn group_rows_decode_checked() {
        let row = |relay, role: &str| {
            (
                GroupRow {
                    group_id: "g".into(),
                    owner_device: "d".into(),
                    name: None,
                    relay,
                    created_at: 1,
                },
                MemberRow {
                    group_id: "g".into(),
                    device_id: "d".into(),
                    role: role.into(),
                    joined_at: 1,
                },
            )
        };
        let (group, member) = row(1, "admin");
        assert!(GroupRecord::try_from(group).unwrap().relay);
        assert_eq!(
            GroupMember::try_from(member).unwrap().role,
            GroupRole::Admin
        );
        let (group, member) = row(2, "king");
        assert!(matches!(
            GroupRecord::try_from(group),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            GroupMember::try_from(member),
            Err(StoreError::Corrupt(m)) if m.contains("king")
        ));
    }

    #[test]
    fn out_of_range_channel_is_corrupt() {
        assert_eq!(channel(7, "x", 1).unwrap(), 7);
        assert!(matches!(channel(-1, "x", 1), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            channel(i64::from(u32::MAX) + 1, "x", 1),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn negative_count_is_corrupt() {
        assert_eq!(count(3).unwrap(), 3);
        assert!(matches!(count(-1), Err(StoreError::Corrupt(_))));
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PairingRow {
    pub(crate) code: String,
    pub(crate) user_id: String,
    pub(crate) issuer_device_id: String,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) attempts: i64,
    pub(crate) redeemed_at: Option<i64>,
    pub(crate) redeemed_device_id: Option<String>,
}

impl TryFrom<PairingRow> for crate::model::PairingRecord {
    type Error = StoreError;

    fn try_from(row: PairingRow) -> Result<Self, StoreError> {
        Ok(Self {
            attempts: u32::try_from(row.attempts).map_err(|_| {
                StoreError::Corrupt(format!(
                    "pairing code {} has {} attempts",
                    row.code, row.attempts
                ))
            })?,
            code: row.code,
            user_id: row.user_id,
            issuer_device_id: row.issuer_device_id,
            issued_at: row.issued_at,
            expires_at: row.expires_at,
            redeemed_at: row.redeemed_at,
            redeemed_device_id: row.redeemed_device_id,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FriendRow {
    pub(crate) friend_user_id: String,
    pub(crate) handle: Option<String>,
    pub(crate) alias: Option<String>,
}

impl From<FriendRow> for crate::model::FriendRecord {
    fn from(row: FriendRow) -> Self {
        Self {
            user_id: row.friend_user_id,
            handle: row.handle,
            alias: row.alias,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub(crate) outbox_id: i64,
    pub(crate) peer: String,
    pub(crate) channel_id: i64,
    pub(crate) event_id: String,
    pub(crate) body: Vec<u8>,
    pub(crate) enqueued_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) attempts: i64,
    pub(crate) last_error: Option<String>,
}

impl TryFrom<OutboxRow> for crate::model::OutboxEvent {
    type Error = StoreError;

    fn try_from(row: OutboxRow) -> Result<Self, StoreError> {
        Ok(Self {
            channel_id: channel(row.channel_id, "outbox event", row.outbox_id)?,
            outbox_id: row.outbox_id,
            peer: row.peer,
            event_id: row.event_id,
            body: row.body,
            enqueued_at: row.enqueued_at,
            expires_at: row.expires_at,
            attempts: count(row.attempts)?,
            last_error: row.last_error,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OutboxStatsRow {
    pub(crate) peer: String,
    pub(crate) depth: i64,
    pub(crate) oldest: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_attempt_at: Option<i64>,
}

impl TryFrom<OutboxStatsRow> for crate::model::OutboxStats {
    type Error = StoreError;

    fn try_from(row: OutboxStatsRow) -> Result<Self, StoreError> {
        Ok(Self {
            depth: count(row.depth)?,
            peer: row.peer,
            oldest_enqueued_at: row.oldest,
            last_error: row.last_error,
            last_attempt_at: row.last_attempt_at,
        })
    }
}

/// Checks a federation event before it is queued.
pub(crate) fn check_outbox_event(event: &crate::model::NewOutboxEvent) -> Result<(), StoreError> {
    if event.expires_at <= event.enqueued_at {
        return Err(StoreError::Invalid(format!(
            "outbox event {} expires ({}) before it is queued ({})",
            event.event_id, event.expires_at, event.enqueued_at
        )));
    }
    if event.peer.is_empty() {
        return Err(StoreError::Invalid(
            "outbox event without a peer".to_owned(),
        ));
    }
    Ok(())
}

/// Checks a registry row before it is written.
pub(crate) fn check_peer(peer: &crate::model::FederationPeer) -> Result<(), StoreError> {
    check_peer_status(&peer.status)?;
    if peer.domain.is_empty() || peer.endpoint.is_empty() {
        return Err(StoreError::Invalid(
            "a federation peer needs a domain and an endpoint".to_owned(),
        ));
    }
    Ok(())
}

/// Checks a registry status.
pub(crate) fn check_peer_status(status: &str) -> Result<(), StoreError> {
    if crate::model::PEER_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "federation peer status {status:?} is not one of active, pending, blocked"
        )))
    }
}
