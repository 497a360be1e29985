//! Outbound events: a frame for a member `device@peer` becomes one signed event (wire-compat
//! §13: one event per remote target device) queued in the durable outbox of its peer.

use commucat_ccp::Frame;
use commucat_store::{NewOutboxEvent, OutboxPush, Store, StoreError};

use super::Federation;
use super::event::{self, Event, RelayPayload};
use crate::clock::{secs, unix_now};
use crate::config::PeerStatus;

/// Why a frame could not be queued for a remote member.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The member's domain is not an active or pending peer.
    #[error("{domain} is not a peer this server sends to ({status})")]
    NotAllowed {
        /// The member's domain.
        domain: String,
        /// `blocked` or `unknown`.
        status: &'static str,
    },
    /// The peer's outbox holds `federation.outbox_per_peer` events already.
    #[error("the outbox of {domain} is full ({depth} events waiting)")]
    Full {
        /// The peer.
        domain: String,
        /// Events waiting.
        depth: u64,
    },
    /// The store failed.
    #[error("the federation outbox could not be written: {0}")]
    Store(#[from] StoreError),
    /// The event could not be built (a clock outside the calendar).
    #[error("the event could not be signed")]
    Sign,
}

/// Builds the signed event carrying `frame` from the local `sender` to `target`
/// (`device@peer`), created at `now_nanos`; returns the peer's domain, the event id and the
/// request body.
///
/// # Errors
/// [`OutboundError::NotAllowed`] for a target whose domain is not an active or pending peer.
pub fn build(
    federation: &Federation,
    sender: &str,
    target: &str,
    frame: &Frame,
    now_nanos: i64,
) -> Result<(String, String, Vec<u8>), OutboundError> {
    let peer = federation
        .remote_peer(target)
        .ok_or_else(|| OutboundError::NotAllowed {
            domain: target.rsplit_once('@').map_or("", |(_, d)| d).to_owned(),
            status: "unknown",
        })?;
    let domain = peer.config.domain.clone();
    if peer.config.status == PeerStatus::Blocked {
        return Err(OutboundError::NotAllowed {
            domain,
            status: "blocked",
        });
    }
    let payload = RelayPayload {
        channel: u64::from(frame.channel_id()),
        sequence: u64::from(frame.sequence()),
        payload: hex::encode(frame.to_bytes()),
        sender: Some(sender.to_owned()),
        target: target.to_owned(),
        peer_endpoint: None,
        peer_public_key: Some(federation.key().public_key_hex()),
    };
    let event_id = crate::registry::random_id();
    let event = Event {
        event_id: event_id.clone(),
        origin: federation.domain().to_owned(),
        created_at: event::format_created_at(now_nanos),
        payload: serde_json::to_value(&payload).map_err(|_| OutboundError::Sign)?,
        scope: domain.clone(),
    };
    let signed = event::sign(event, federation.key()).ok_or(OutboundError::Sign)?;
    let body = serde_json::to_vec(&signed).map_err(|_| OutboundError::Sign)?;
    Ok((domain, event_id, body))
}

/// Builds the event for `target` and queues it in its peer's outbox (bounded by
/// `federation.outbox_per_peer`, expiring after `federation.outbox_ttl`), then wakes the
/// peer's delivery worker. Returns the peer's domain.
///
/// # Errors
/// Not a peer this server sends to, the outbox is full, or the store failed.
pub async fn queue(
    federation: &Federation,
    store: &dyn Store,
    sender: &str,
    target: &str,
    frame: &Frame,
) -> Result<String, OutboundError> {
    let (peer, event_id, body) = build(
        federation,
        sender,
        target,
        frame,
        crate::clock::unix_nanos_now(),
    )?;
    let now = unix_now();
    let settings = federation.settings();
    let pushed = store
        .push_outbox(
            NewOutboxEvent {
                peer: peer.clone(),
                channel_id: frame.channel_id(),
                event_id,
                body,
                enqueued_at: now,
                expires_at: now.saturating_add(secs(settings.outbox_ttl)),
            },
            settings.outbox_per_peer,
        )
        .await?;
    match pushed {
        OutboxPush::Stored { .. } => {
            federation.wake(&peer);
            Ok(peer)
        }
        OutboxPush::Full { depth } => Err(OutboundError::Full {
            domain: peer,
            depth,
        }),
    }
}
