//! The checks of an inbound `POST /federation/events`, sans-IO: what the body says, whether
//! its origin may send, whether it is authentic, fresh and meant for this domain, and which
//! local device and frame it carries. Delivery (live or queued), the replay record and the
//! answer are the HTTP handler's.
//!
//! Order, and why: the body must parse (400 `InvalidRequest`); the origin must be a peer that
//! is not blocked or pending (403 `UnknownPeer` / `PeerBlocked` / `PeerPending`); the digest
//! and signature must verify with a key accepted from the origin (its pinned key, or after a
//! rotation the new key and the previous one in its grace period; 403 `InvalidSignature`) — before
//! anything else is believed; the scope must be this domain (400 `InvalidScope`); `created_at`
//! must be within the replay window (400 `StaleEvent`) so the remembered event ids bound
//! replays; then the payload (400 `InvalidPayload`), its target's domain (400
//! `InvalidTarget`) and the frame inside.

use bytes::Bytes;
use commucat_ccp::{Frame, FrameType};

use super::Federation;
use super::event::{self, RelayPayload, SignedEvent};
use crate::config::PeerStatus;

/// How far in the future an event's `created_at` may be (clock skew between domains).
pub const MAX_FUTURE_SKEW_NANOS: i64 = 300 * 1_000_000_000;

/// An inbound event that passed every check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The sending domain.
    pub origin: String,
    /// The event's id (unique per origin).
    pub event_id: String,
    /// The local device it is for (bare id).
    pub target: String,
    /// The sending device as `device@origin`, when the event names it.
    pub sender: String,
    /// The frame to deliver.
    pub frame: Frame,
}

/// Why an inbound event was refused: the problem answered and ledgered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Problem title (the reference's names where it has one).
    pub title: &'static str,
    /// What exactly.
    pub detail: String,
    /// The claimed origin, once known.
    pub origin: Option<String>,
}

impl Refusal {
    fn new(status: u16, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            origin: None,
        }
    }

    fn from(mut self, origin: &str) -> Self {
        self.origin = Some(origin.to_owned());
        self
    }
}

/// Frame types a peer may relay to a local device.
#[must_use]
pub const fn relayable(frame_type: FrameType) -> bool {
    matches!(
        frame_type,
        FrameType::Msg
            | FrameType::Typing
            | FrameType::KeyUpdate
            | FrameType::GroupEvent
            | FrameType::Presence
    )
}

/// Parses and checks `body` against `federation` at `now_nanos` (nanoseconds since the epoch);
/// `max_frame_len` bounds the carried frame.
///
/// # Errors
/// The refusal to answer.
pub fn check(
    federation: &Federation,
    body: &[u8],
    now_nanos: i64,
    max_frame_len: usize,
) -> Result<Checked, Refusal> {
    let signed: SignedEvent = serde_json::from_slice(body)
        .map_err(|e| Refusal::new(400, "InvalidRequest", format!("not a signed event: {e}")))?;
    let origin = signed.event.origin.to_ascii_lowercase();
    let Some(peer) = federation.peer(&origin) else {
        return Err(Refusal::new(
            403,
            "UnknownPeer",
            format!("{origin:?} is not a peer of {}", federation.domain()),
        )
        .from(&origin));
    };
    match peer.config.status {
        PeerStatus::Active => {}
        PeerStatus::Blocked => {
            return Err(
                Refusal::new(403, "PeerBlocked", format!("peer {origin} is blocked")).from(&origin),
            );
        }
        PeerStatus::Pending => {
            return Err(Refusal::new(
                403,
                "PeerPending",
                format!("peer {origin} is pending: no key is pinned for it yet"),
            )
            .from(&origin));
        }
    }
    let keys = federation.accepted_keys(&origin, now_nanos.div_euclid(1_000_000_000));
    if keys.is_empty() {
        return Err(
            Refusal::new(403, "PeerPending", format!("no key is pinned for {origin}"))
                .from(&origin),
        );
    }
    // Any accepted key: after a rotation, the new one and the previous one in its grace period.
    let mut verified = Err(event::VerifyError::BadSignature);
    for key in &keys {
        verified = event::verify(&signed, key);
        if verified.is_ok() {
            break;
        }
    }
    verified.map_err(|e| {
        Refusal::new(403, "InvalidSignature", format!("event from {origin}: {e}")).from(&origin)
    })?;
    let scope = signed.event.scope.to_ascii_lowercase();
    if scope != federation.domain() {
        return Err(Refusal::new(
            400,
            "InvalidScope",
            format!(
                "the event is for {scope:?}, this is {}",
                federation.domain()
            ),
        )
        .from(&origin));
    }
    let window = i64::try_from(federation.settings().replay_window.as_nanos()).unwrap_or(i64::MAX);
    let created = event::created_at_nanos(&signed.event.created_at).unwrap_or(0);
    if created < now_nanos.saturating_sub(window)
        || created > now_nanos.saturating_add(MAX_FUTURE_SKEW_NANOS)
    {
        return Err(Refusal::new(
            400,
            "StaleEvent",
            format!(
                "created_at {} is outside the accepted window (replay window {} s)",
                signed.event.created_at,
                federation.settings().replay_window.as_secs()
            ),
        )
        .from(&origin));
    }
    let payload: RelayPayload = serde_json::from_value(signed.event.payload.clone())
        .map_err(|e| Refusal::new(400, "InvalidPayload", format!("{e}")).from(&origin))?;
    let Some((device, domain)) = payload.target.rsplit_once('@') else {
        return Err(Refusal::new(
            400,
            "InvalidTarget",
            format!("target {:?} is not device@domain", payload.target),
        )
        .from(&origin));
    };
    if !domain.eq_ignore_ascii_case(federation.domain()) || device.is_empty() {
        return Err(Refusal::new(
            400,
            "InvalidTarget",
            format!(
                "target {:?} is not a device of {}",
                payload.target,
                federation.domain()
            ),
        )
        .from(&origin));
    }
    let frame = decode_frame(&payload.payload, max_frame_len)
        .map_err(|detail| Refusal::new(400, "InvalidPayload", detail).from(&origin))?;
    let sender = payload
        .sender
        .as_deref()
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("unknown@{origin}"), |s| qualified(s, &origin));
    Ok(Checked {
        origin,
        event_id: signed.event.event_id,
        target: device.to_owned(),
        sender,
        frame,
    })
}

/// `device@origin` for a sender named bare or already qualified by its own domain.
fn qualified(sender: &str, origin: &str) -> String {
    match sender.rsplit_once('@') {
        Some((_, domain)) if domain.eq_ignore_ascii_case(origin) => sender.to_owned(),
        _ => format!("{sender}@{origin}"),
    }
}

/// Decodes the hex CCP-1 frame of a relay payload: exactly one whole frame of a relayable type.
fn decode_frame(hex_frame: &str, max_frame_len: usize) -> Result<Frame, String> {
    let bytes = hex::decode(hex_frame).map_err(|e| format!("payload is not hex: {e}"))?;
    let bytes = Bytes::from(bytes);
    match Frame::decode_with_limit(&bytes, max_frame_len) {
        Ok(Some((frame, used))) if used == bytes.len() => {
            if relayable(frame.frame_type()) {
                Ok(frame)
            } else {
                Err(format!(
                    "a {} frame is not relayed across domains",
                    frame.frame_type()
                ))
            }
        }
        Ok(Some(_)) => Err("payload holds more than one frame".to_owned()),
        Ok(None) => Err("payload holds a truncated frame".to_owned()),
        Err(e) => Err(format!("payload is not a CCP-1 frame: {e}")),
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
