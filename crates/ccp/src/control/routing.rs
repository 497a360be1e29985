//! ACK, JOIN, LEAVE, TYPING and PRESENCE.

use serde::{Deserialize, Serialize};

use super::UserInfo;

/// ACK: confirms one received sequence number, optionally echoing what it created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The acknowledged sequence number.
    pub ack: u64,
    /// Call the acknowledged frame belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// Group created or extended by the acknowledged frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Device invited by the acknowledged frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Whether the acknowledged call answer accepted the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<bool>,
    /// Reason carried by the acknowledged call frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Direction of the acknowledged call statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
}

impl Ack {
    /// A plain `{"ack":<sequence>}`.
    #[must_use]
    pub fn sequence(sequence: u64) -> Self {
        Self {
            ack: sequence,
            ..Self::default()
        }
    }
}

const fn default_true() -> bool {
    true
}

/// JOIN: declares membership of the frame's channel. From a client, `members` are devices to
/// add (merged with the current members); from the server, the complete member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// Member device ids.
    #[serde(default)]
    pub members: Vec<String>,
    /// `true`: the server relays (default). `false`: peers try a direct path first.
    #[serde(default = "default_true")]
    pub relay: bool,
    /// Group whose stored roster governs the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Channel display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// From the server, when `members` lists only part of a large channel (so the notice stays
    /// within the control-payload limit): how many members the channel has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<u64>,
}

/// LEAVE: from a client, leave the frame's channel (`{}`); from the server, `device` left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// The device that left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Alias of `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

impl Leave {
    /// The departing device, from `device` or `device_id`.
    #[must_use]
    pub fn resolved_device(&self) -> Option<&str> {
        self.device.as_deref().or(self.device_id.as_deref())
    }
}

/// TYPING: a typing hint routed like MSG. Deployed clients require a sender key (`device`,
/// `device_id` or `sender`) on what they receive; the server fills `device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// Sending device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Alias of `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Alias of `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// `true` while typing (default), `false` when stopped.
    #[serde(default = "default_true")]
    pub typing: bool,
    /// Milliseconds the hint stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Alias of `ttl_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Free-form label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Typing {
    /// The sender, from `device`, `device_id` or `sender`.
    #[must_use]
    pub fn resolved_device(&self) -> Option<&str> {
        self.device
            .as_deref()
            .or(self.device_id.as_deref())
            .or(self.sender.as_deref())
    }

    /// Validity in milliseconds, from `ttl_ms` or `expires_in` (default 3000).
    #[must_use]
    pub fn resolved_ttl_ms(&self) -> u64 {
        self.ttl_ms.or(self.expires_in).unwrap_or(3000)
    }
}

/// PRESENCE (client → server): the device's own availability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    /// Free-form state such as `"online"`, `"away"`, `"busy"`.
    pub state: String,
}

/// PRESENCE (server → client): a device's availability snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSnapshot {
    /// The device the snapshot describes (required by deployed clients).
    pub entity: String,
    /// `"online"`, `"offline"` or a client-chosen state.
    pub state: String,
    /// RFC 3339 expiry of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Owner profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
}

/// PRESENCE (server → client): an observed socket address of a channel peer, for hole punching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCandidate {
    /// The peer device (deployed clients require `entity` on every PRESENCE).
    pub entity: String,
    /// Channel the peers share.
    pub channel: u64,
    /// The peer device (specification name).
    pub peer: String,
    /// `ip:port` observed by the server.
    pub candidate: String,
    /// Presence state of the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}
