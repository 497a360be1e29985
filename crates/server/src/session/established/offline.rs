//! Routing with the durable queue (replay is in [`super::replay`]).
//!
//! A frame for members who are not connected is committed to the store *before* the sender
//! gets its ACK; a frame handed to an online member that then cannot take it (its mailbox
//! overflowed, or it disconnected with the frame still queued in memory) is moved to the store
//! too. Every enqueue is checked against the offline quotas (frames and bytes per recipient,
//! per sender, in total) in the store's transaction; a refusal is an ERROR to the sender,
//! counted per bound and ledgered.

use std::sync::Arc;
use std::time::Duration;

use commucat_ccp::{Frame, FrameType, Problem, ProblemKind};
use commucat_link::ByteStream;
use commucat_store::{
    EnqueueOutcome, IdempotencyKey, NewEnvelope, QueueLimits, QuotaLimit, Refusal, StoreError,
};

use super::{End, Messaging, SessionTask, secs, unix_now};
use crate::config::Bound;
use crate::router::{Envelope, Handoff};

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
    /// Recipients over an offline quota: the frame was not stored for them.
    pub(crate) refused: Vec<Refusal>,
    /// The idempotency key was already stored: the frame was accepted before; nothing was
    /// delivered now.
    pub(crate) duplicate: bool,
}

/// Hands `frame` from `sender` to `recipients`: online ones through their mailboxes, the
/// others (with [`Offline::Queue`]) through the durable queue, committed before this returns.
/// A recipient that was online but could not take the frame is queued too, under the same
/// quotas; a refusal of either kind is in [`Routed::refused`] (and counted by the caller).
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
        match enqueue(m, &envelope, &absent, idempotency).await? {
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
    if !stragglers.is_empty()
        && let EnqueueOutcome::Stored { stored, refused } =
            enqueue(m, &envelope, &stragglers, None).await?
    {
        routed.refused.extend(refused);
        m.hub.nudge(stored.iter().map(String::as_str));
    }
    Ok(routed)
}

/// The offline quotas of `m`'s settings.
pub(crate) fn limits(m: &Messaging) -> QueueLimits {
    let bounds = &m.settings.bounds;
    QueueLimits {
        frames_per_recipient: m
            .settings
            .max_queue_per_device
            .min(bounds.offline_frames_per_device),
        bytes_per_recipient: bounds.offline_bytes_per_device,
        frames_per_sender: bounds.offline_frames_per_sender,
        bytes_per_sender: bounds.offline_bytes_per_sender,
        bytes_total: bounds.offline_bytes_total,
    }
}

/// The bound that refused a frame, as counted and ledgered.
pub(crate) const fn bound_of(limit: QuotaLimit) -> Bound {
    match limit {
        QuotaLimit::RecipientFrames => Bound::OfflineFramesPerDevice,
        QuotaLimit::RecipientBytes => Bound::OfflineBytesPerDevice,
        QuotaLimit::SenderFrames => Bound::OfflineFramesPerSender,
        QuotaLimit::SenderBytes => Bound::OfflineBytesPerSender,
        QuotaLimit::TotalBytes => Bound::OfflineBytesTotal,
    }
}

/// Recipients named in one ledger record of a refusal.
const LEDGER_RECIPIENTS: usize = 8;

/// Counts and ledgers the refusals of one frame from `sender`: once per bound that refused it
/// (a frame refused for many recipients is one refusal, not one per recipient).
fn count_refusals(m: &Messaging, sender: &str, refused: &[Refusal], what: &str) {
    let mut seen: Vec<QuotaLimit> = Vec::new();
    for refusal in refused {
        if seen.contains(&refusal.limit) {
            continue;
        }
        seen.push(refusal.limit);
        let recipients: Vec<&str> = refused
            .iter()
            .filter(|r| r.limit == refusal.limit)
            .map(|r| r.recipient.as_str())
            .collect();
        // The ledger line stays small whatever the fan-out.
        let named = recipients.len().min(LEDGER_RECIPIENTS);
        m.refuse(
            bound_of(refusal.limit),
            sender,
            &format!(
                "{what} for {} recipient(s): {}{}",
                recipients.len(),
                recipients.get(..named).unwrap_or_default().join(", "),
                if named < recipients.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        );
    }
}

async fn enqueue(
    m: &Messaging,
    envelope: &Envelope,
    recipients: &[String],
    idempotency: Option<&str>,
) -> Result<EnqueueOutcome, StoreError> {
    let now = unix_now();
    let sender = envelope.sender.to_string();
    let frame = envelope.frame.with_sequence(0).to_bytes().to_vec();
    let outcome = m
        .store
        .enqueue(NewEnvelope {
            recipients: recipients.to_vec(),
            channel_id: envelope.frame.channel_id(),
            order_key: envelope.stamp,
            frame,
            enqueued_at: now,
            expires_at: now.saturating_add(secs(m.settings.offline_ttl)),
            idempotency: idempotency.map(|key| IdempotencyKey {
                scope: sender.clone(),
                key: key.to_owned(),
                expires_at: now.saturating_add(secs(m.settings.dedup_window)),
            }),
            limits: limits(m),
            sender,
        })
        .await?;
    if let EnqueueOutcome::Stored { refused, .. } = &outcome {
        let what = format!("offline {} frame", envelope.frame.frame_type());
        count_refusals(m, &envelope.sender, refused, &what);
    }
    Ok(outcome)
}

/// Moves frames a session took but could not deliver into its device's offline queue (in their
/// original order), under the same quotas as any frame; returns how many were queued.
/// Live-only frames are dropped. The senders of these frames were ACKed long ago, so a store
/// that is busy or briefly unreachable is waited for (with backoff, up to [`REQUEUE_PATIENCE`]
/// for the whole batch) rather than given up on. A frame refused by a quota, or that the store still
/// could not take after that, is not kept anywhere else: the loss is counted
/// (`commucat_requeue_lost_total`, or a bound refusal), logged, and for quotas ledgered —
/// never silent.
pub(crate) async fn requeue(m: &Messaging, device: &str, leftovers: Vec<Envelope>) -> usize {
    let mut queued = 0;
    let recipient = [device.to_owned()];
    let deadline = tokio::time::Instant::now() + REQUEUE_PATIENCE;
    for envelope in leftovers
        .into_iter()
        .filter(|e| queueable(e.frame.frame_type()))
    {
        match enqueue_patiently(m, &envelope, &recipient, deadline).await {
            Ok(EnqueueOutcome::Stored { stored, refused }) => {
                queued += stored.len();
                if let Some(refusal) = refused.first() {
                    tracing::warn!(%device, sender = %envelope.sender, bound = bound_of(refusal.limit).name(), "undelivered frame refused by an offline quota; it is lost");
                }
            }
            Ok(EnqueueOutcome::Duplicate) => {}
            Err(e) => {
                m.hub
                    .metrics
                    .requeue_lost
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(%device, error = %e, "could not queue an undelivered frame; it is lost");
            }
        }
    }
    queued
}

/// Longest time one [`requeue`] keeps retrying while the store is unavailable (for all its
/// frames together, so an ending session's cleanup is never held up longer).
pub(crate) const REQUEUE_PATIENCE: Duration = Duration::from_secs(30);

/// [`enqueue`], retried with backoff (50 ms doubling to 1 s) while the store answers
/// `Unavailable`, until `deadline`.
async fn enqueue_patiently(
    m: &Messaging,
    envelope: &Envelope,
    recipient: &[String],
    deadline: tokio::time::Instant,
) -> Result<EnqueueOutcome, StoreError> {
    let mut pause = Duration::from_millis(50);
    loop {
        match enqueue(m, envelope, recipient, None).await {
            Err(StoreError::Unavailable(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %reason, "store unavailable while queueing an undelivered frame; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

impl<S: ByteStream> SessionTask<S> {
    /// Reports recipients a frame was not stored for: one ERROR per title, `Offline Queue
    /// Full` for the frame count of a recipient, `Offline Quota Exceeded` for bytes and the
    /// sender's and total quotas (the refusals were counted when the store refused them).
    pub(super) async fn reject_queue_full(
        &mut self,
        frame: &Frame,
        refused: Vec<Refusal>,
    ) -> Result<(), End> {
        let (full, over): (Vec<_>, Vec<_>) = refused
            .into_iter()
            .partition(|r| r.limit == QuotaLimit::RecipientFrames);
        if !full.is_empty() {
            let recipients: Vec<String> = full.into_iter().map(|r| r.recipient).collect();
            let problem = Problem::new(ProblemKind::OfflineQueueFull)
                .with_detail(format!(
                    "the offline queue of {} is full ({} frames); the frame was not stored for them",
                    recipients.join(", "),
                    limits(&self.m).frames_per_recipient
                ))
                .with_extension("recipients", recipients);
            self.reject_problem(frame, problem).await?;
        }
        if let Some(first) = over.first() {
            let bound = bound_of(first.limit);
            let recipients: Vec<String> = over.into_iter().map(|r| r.recipient).collect();
            let problem = Problem::new(ProblemKind::OfflineQuotaExceeded)
                .with_detail(format!(
                    "storing the frame for {} would exceed bounds.{}; it was not stored for them",
                    recipients.join(", "),
                    bound.name()
                ))
                .with_extension("recipients", recipients)
                .with_extension("bound", bound.name());
            self.reject_problem(frame, problem).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stored_kinds_are_queued() {
        for t in commucat_ccp::FrameType::ALL {
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
}
