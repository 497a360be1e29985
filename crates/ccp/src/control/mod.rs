//! Typed control payloads.
//!
//! Each type accepts both the key names of the specification and those of the deployed clients
//! (`commucat-proto` 1.0.41 and the terminal client built on it), ignores unknown keys, and keeps
//! 64-bit integers exact. Serialization writes the names the deployed clients parse.
//!
//! Parse a received control frame with [`crate::Frame::parse_control`]; build one with
//! [`crate::Frame::control`].

mod call;
mod group;
mod handshake;
mod routing;

use serde::{Deserialize, Serialize};

pub use call::{
    AudioCodec, AudioParameters, CallAnswer, CallEnd, CallEndReason, CallMediaDirection,
    CallMediaProfile, CallMode, CallOffer, CallRejectReason, CallStats, CallTransport,
    MAX_CALL_ID_LEN, MIN_CALL_ID_LEN, MediaStreamStats, TransportCandidate, TransportProtocol,
    VideoCodec, VideoParameters, VideoResolution,
};
pub use group::{GroupCreate, GroupInvite, GroupRole};
pub use handshake::{
    CertificateSummary, ClientAuth, HandshakeAck, HandshakeProofJson, Hello, PqBundle, PqContext,
    ServerAuth, SessionPayload,
};
pub use routing::{Ack, Join, Leave, PeerCandidate, PresenceSnapshot, PresenceUpdate, Typing};

/// A user profile as carried in HELLO hints, AUTH, ACK and presence snapshots.
///
/// The specification uses `id` and `user_id` as aliases, and servers send both; both are kept,
/// and [`UserInfo::resolved_id`] returns whichever is present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// User id (alias of `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Handle (nickname, unique per domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Avatar URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

impl UserInfo {
    /// A canonical profile as a server sends it: `id` and `user_id` both set.
    #[must_use]
    pub fn profile(
        id: impl Into<String>,
        handle: impl Into<String>,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Self {
        let id = id.into();
        Self {
            user_id: Some(id.clone()),
            id: Some(id),
            handle: Some(handle.into()),
            display_name,
            avatar_url,
        }
    }

    /// The user id, from `id` or its alias `user_id`.
    #[must_use]
    pub fn resolved_id(&self) -> Option<&str> {
        self.id.as_deref().or(self.user_id.as_deref())
    }

    /// Whether `id` and `user_id` are both present and disagree.
    #[must_use]
    pub fn has_conflicting_ids(&self) -> bool {
        matches!((&self.id, &self.user_id), (Some(a), Some(b)) if a != b)
    }
}

#[cfg(test)]
mod tests;
