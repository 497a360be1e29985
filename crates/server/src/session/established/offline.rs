//! Routing with the durable queue, and replay of the queue on reconnect.
//!
//! A frame for members who are not connected is committed to the store *before* the sender
//! gets its ACK; a frame handed to an online member that then cannot take it (its mailbox
//! overflowed, or it disconnected with the frame still queued in memory) is moved to the store
//! too. On connect, the session writes the queue out in order, with fresh sequence numbers, and
//! deletes each batch (advancing the inbox offsets) after it has been written.

use std::sync::Arc;

use bytes::Bytes;
use ccp::{Frame, FrameType};
use commucat_link::ByteStream;
use commucat_store::{EnqueueOutcome, IdempotencyKey, NewEnvelope, StoreError};

use super::{End, Messaging, SessionTask, secs, unix_now};
use crate::router::{Envelope, Handoff};

/// Envelopes fetched and written per replay round (one store transaction each).
const REPLAY_BATCH: u32 = 64;

/// Frame types kept for members that are not connected. Typing hints, presence, membership
/// notices, call signaling and media are live-only.
#[must_use]
pub(crate) const fn queueable(frame_type: FrameType) -> bool {
    matches!(
        frame_type,
        FrameType::Msg
            | FrameType::KeyUpdate
            | FrameType::GroupEvent
            | FrameType::GroupCreate
            | FrameType::GroupInvite
    )
}

/// How a routed frame treats recipients that are not connected.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Offline<'a> {
    /// Live only: absent recipients miss it.
    Skip,
    /// Committed to their offline queue before the call returns; `idempotency` (a
    /// [`crate::router::dedup::frame_key`]) is recorded with it.
    Queue { idempotency: Option<&'a str> },
}

/// What routing did.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// Recipients whose offline queue was full: the frame was not stored for them.
    pub(crate) refused: Vec<String>,
    /// The idempotency key was already stored: the frame was accepted before; nothing was
    /// delivered now.
    pub(crate) duplicate: bool,
}

/// Hands `frame` from `sender` to `recipients`: online ones through their mailboxes, the
/// others (with [`Offline::Queue`]) through the durable queue, committed before this returns.
///
/// # Errors
/// The store failed to queue the frame for a recipient that is not connected.
pub(crate) async fn route(
    m: &Messaging,
    sender: &str,
    frame: &Frame,
    recipients: &[String],
    offline: Offline<'_>,
) -> Result<Routed, StoreError> {
    let envelope = Envelope {
        frame: frame.clone(),
        stamp: m.hub.next_stamp(),
        sender: Arc::from(sender),
    };
    let Offline::Queue { idempotency } = offline else {
        m.hub
            .deliver(recipients.iter().map(String::as_str), &envelope);
        return Ok(Routed::default());
    };
    let mut routed = Routed::default();
    let absent = m.hub.offline_among(recipients);
    if !absent.is_empty() {
        match enqueue(m, &envelope, &absent, idempotency, true).await? {
            EnqueueOutcome::Duplicate => {
                routed.duplicate = true;
                return Ok(routed);
            }
            EnqueueOutcome::Stored { stored, refused } => {
                routed.refused = refused;
                // Any of them may have connected (and replayed) meanwhile.
                m.hub.nudge(stored.iter().map(String::as_str));
            }
        }
    }
    let present = recipients
        .iter()
        .filter(|r| !absent.contains(r))
        .map(String::as_str);
    let stragglers: Vec<String> = m
        .hub
        .deliver(present, &envelope)
        .into_iter()
        .filter(|(_, outcome)| *outcome != Handoff::Queued)
        .map(|(device, _)| device)
        .collect();
    if !stragglers.is_empty() {
        // Accepted for them already (they were online): never refused for a full queue.
        enqueue(m, &envelope, &stragglers, None, false).await?;
        m.hub.nudge(stragglers.iter().map(String::as_str));
    }
    Ok(routed)
}

async fn enqueue(
    m: &Messaging,
    envelope: &Envelope,
    recipients: &[String],
    idempotency: Option<&str>,
    bounded: bool,
) -> Result<EnqueueOutcome, StoreError> {
    let now = unix_now();
    let sender = envelope.sender.to_string();
    m.store
        .enqueue(NewEnvelope {
            recipients: recipients.to_vec(),
            channel_id: envelope.frame.channel_id(),
            order_key: envelope.stamp,
            frame: envelope.frame.with_sequence(0).to_bytes().to_vec(),
            enqueued_at: now,
            expires_at: now.saturating_add(secs(m.settings.offline_ttl)),
            idempotency: idempotency.map(|key| IdempotencyKey {
                scope: sender.clone(),
                key: key.to_owned(),
                expires_at: now.saturating_add(secs(m.settings.dedup_window)),
            }),
            max_per_recipient: if bounded {
                m.settings.max_queue_per_device
            } else {
                u64::MAX
            },
            sender,
        })
        .await
}

/// Moves frames a session took but could not deliver into its device's offline queue (in their
/// original order); returns how many were queued. Live-only frames are dropped.
pub(crate) async fn requeue(m: &Messaging, device: &str, leftovers: Vec<Envelope>) -> usize {
    let mut queued = 0;
    let recipient = [device.to_owned()];
    for envelope in leftovers
        .into_iter()
        .filter(|e| queueable(e.frame.frame_type()))
    {
        match enqueue(m, &envelope, &recipient, None, false).await {
            Ok(_) => queued += 1,
            Err(e) => {
                tracing::error!(%device, error = %e, "could not queue an undelivered frame; it is lost");
            }
        }
    }
    queued
}

/// The frame stored in an envelope.
fn decode(stored: Vec<u8>) -> Option<Frame> {
    let bytes = Bytes::from(stored);
    match Frame::decode(&bytes) {
        Ok(Some((frame, used))) if used == bytes.len() => Some(frame),
        _ => None,
    }
}

impl<S: ByteStream> SessionTask<S> {
    /// Writes the device's offline queue in order and deletes what was written. A store
    /// failure stops the replay (what is left stays queued for the next one); a connection
    /// failure ends the session.
    pub(super) async fn replay(&mut self) -> Result<(), End> {
        loop {
            let batch = match self
                .m
                .store
                .pending_envelopes(&self.device_id, unix_now(), REPLAY_BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(device = %self.device_id, error = %e, "offline queue unavailable; replay postponed");
                    return Ok(());
                }
            };
            if batch.is_empty() {
                break;
            }
            let mut written = Vec::with_capacity(batch.len());
            let mut failure = None;
            for envelope in batch {
                let id = envelope.envelope_id;
                match decode(envelope.frame) {
                    Some(frame) => {
                        if let Err(end) = self.send_resequenced(&frame).await {
                            failure = Some(end);
                            break;
                        }
                    }
                    None => {
                        tracing::warn!(device = %self.device_id, envelope = id, "undecodable envelope dropped");
                    }
                }
                written.push(id);
            }
            if let Err(e) = self
                .m
                .store
                .mark_delivered(&self.device_id, &written, unix_now())
                .await
            {
                tracing::warn!(device = %self.device_id, error = %e, "could not mark envelopes delivered; they will be replayed again");
                return failure.map_or(Ok(()), Err);
            }
            if let Some(end) = failure {
                return Err(end);
            }
        }
        if let Err(e) = self.m.store.purge_expired_envelopes(unix_now()).await {
            tracing::debug!(error = %e, "purging expired envelopes failed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stored_kinds_are_queued() {
        for t in ccp::FrameType::ALL {
            let expected = matches!(
                t,
                FrameType::Msg
                    | FrameType::KeyUpdate
                    | FrameType::GroupEvent
                    | FrameType::GroupCreate
                    | FrameType::GroupInvite
            );
            assert_eq!(queueable(*t), expected, "{t}");
        }
        assert!(!queueable(FrameType::VoiceFrame));
        assert!(!queueable(FrameType::VideoFrame));
    }

    #[test]
    fn envelopes_decode_only_whole_frames() {
        let frame = Frame::new(FrameType::Msg, 7, 0, &b"hi"[..]).unwrap();
        let bytes = frame.to_bytes().to_vec();
        assert_eq!(decode(bytes.clone()), Some(frame));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode(trailing), None);
        assert_eq!(decode(bytes[..3].to_vec()), None);
    }
}
