//! The relay decision, in one place: a frame from a session goes to each recipient's mailbox
//! (live) or to the durable offline queue (absent, or could not take it), or is refused by an
//! offline quota. Sessions only pick the recipients and report the outcome to their client.
//!
//! # Path of a relayed frame
//!
//! 1. [`Hub::channel_targets`] (or `Hub::targets` with any choice: call participants,
//!    presence peers; [`Hub::targets_of`] for a given list): the recipients are picked under
//!    the hub's lock, and in the same acquisition every recipient's mailbox is looked up. This
//!    is the only acquisition of the hub's lock in the common case.
//! 2. [`Relay::durable`]: recipients without a mailbox are committed to the store (with the
//!    frame's idempotency key) *before* anything else, so the sender's ACK always follows a
//!    durable write and a duplicate (key already stored) is delivered to nobody. The others get
//!    the frame in their mailbox (no lock: the mailbox handles were copied in step 1).
//!    [`Relay::live`] does only the mailbox part, for live-only frames.
//! 3. Exceptional paths take the lock again: a recipient that connected while the frame was
//!    being stored (seen through [`Hub`]'s registration counter, read in step 1) is nudged to
//!    replay; a mailbox that overflowed is dropped from the tables, and the frame is queued
//!    for it like for an absent recipient (re-queue after overflow: nothing is lost).
//!
//! So a MSG to members that are connected, absent, or both, takes the hub's lock once unless
//! a recipient connects meanwhile or overflows (counted in the test
//! `relaying_a_frame_locks_the_tables_once`); before this service it took it three times
//! (membership, who is absent, delivery) and a fourth when someone was absent. The
//! idempotency window ([`super::dedup::Dedup`]) has its own lock. Call signaling and media
//! pick their route in the same acquisition too; a notice to a given list uses
//! [`Hub::targets_of`].
//!
//! The mailbox handles copied in step 1 stay valid while the frame is stored: a session that
//! ended meanwhile refuses the frame (its mailbox is closed) and it is queued; one that was
//! replaced takes it and, failing to write it, re-queues it when it ends — as with any frame
//! caught in a mailbox when its session goes.
//!
//! Every refusal by an offline quota is counted and ledgered through [`Refusals`] (once per
//! bound per frame), and returned so the session can answer its client; a store failure is a
//! [`RelayError`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use commucat_ccp::{Frame, FrameType};
use commucat_store::{
    EnqueueOutcome, IdempotencyKey, NewEnvelope, QueueLimits, QuotaLimit, Refusal, Store,
    StoreError,
};

use super::{Envelope, Handoff, Hub, Mailbox, Tables};
use crate::clock::{secs, unix_now};
use crate::config::Bound;

/// Frame types kept for members that are not connected. Typing hints, presence, membership
/// notices, call signaling and media are live-only.
#[must_use]
pub const fn queueable(frame_type: FrameType) -> bool {
    matches!(
        frame_type,
        FrameType::Msg
            | FrameType::KeyUpdate
            | FrameType::GroupEvent
            | FrameType::GroupCreate
            | FrameType::GroupInvite
    )
}

/// Why a frame could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The store could not queue the frame for recipients that are not connected; nothing was
    /// delivered.
    #[error("the frame could not be queued for offline members: {0}")]
    Queue(#[source] StoreError),
}

/// Where refusals by an offline quota are counted and ledgered (`Messaging::refuse`).
pub trait Refusals: Sync {
    /// Counts one refusal by `bound` of what `device` asked for.
    fn refuse(&self, bound: Bound, device: &str, detail: &str);
}

/// The offline queue's settings as the relay applies them.
#[derive(Debug, Clone, Copy)]
pub struct QueuePolicy {
    /// Quotas checked in the store's transaction.
    pub limits: QueueLimits,
    /// Lifetime of a queued frame.
    pub ttl: Duration,
    /// Lifetime of a stored idempotency key.
    pub dedup_window: Duration,
}

/// The recipients of one frame with their mailboxes, looked up in one acquisition of the hub's
/// lock.
#[derive(Debug, Default)]
pub struct Targets {
    /// Online recipients and their mailboxes.
    live: Vec<(String, Mailbox)>,
    /// Recipients without a session on this node.
    absent: Vec<String>,
    /// The hub's registration counter when the mailboxes were looked up.
    registrations: u64,
}

impl Targets {
    /// Takes out the recipients without a session here that `pick` selects (members of
    /// other domains, which are never connected to this node).
    pub fn take_absent(&mut self, mut pick: impl FnMut(&str) -> bool) -> Vec<String> {
        let (taken, kept): (Vec<String>, Vec<String>) = std::mem::take(&mut self.absent)
            .into_iter()
            .partition(|d| pick(d));
        self.absent = kept;
        taken
    }

    /// Whether there is nobody to relay to.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.absent.is_empty()
    }
}

/// What a durable relay did.
#[derive(Debug, Default)]
pub struct Routed {
    /// Recipients over an offline quota: the frame was not stored for them (already counted).
    pub refused: Vec<Refusal>,
    /// The idempotency key was already stored: the frame was accepted before; nothing was
    /// delivered now.
    pub duplicate: bool,
}

impl Hub {
    /// Runs `pick` on the tables and looks up the mailboxes of the recipients it names, under
    /// one acquisition of the lock. `pick` returns its own result with the recipients.
    pub(crate) fn targets<T>(
        &self,
        pick: impl FnOnce(&mut Tables) -> (T, Vec<String>),
    ) -> (T, Targets) {
        let mut tables = self.lock();
        let (picked, recipients) = pick(&mut tables);
        let mut targets = Targets {
            live: Vec::with_capacity(recipients.len()),
            absent: Vec::new(),
            registrations: self.registrations.load(Ordering::SeqCst),
        };
        for device in recipients {
            match tables.online.get(&device) {
                Some(mailbox) => targets.live.push((device, mailbox.clone())),
                None => targets.absent.push(device),
            }
        }
        (picked, targets)
    }

    /// `recipients` with their mailboxes, looked up in one acquisition of the lock.
    #[must_use]
    pub fn targets_of(&self, recipients: &[String]) -> Targets {
        self.targets(|_| ((), recipients.to_vec())).1
    }

    /// The members of `channel` other than `sender` with their mailboxes, in one acquisition
    /// of the lock; `None` if `sender` is not a member.
    #[must_use]
    pub fn channel_targets(&self, channel: u32, sender: &str) -> Option<Targets> {
        let (member, targets) =
            self.targets(|t| match t.channels.members_if_member(channel, sender) {
                Some(members) => (true, members.into_iter().filter(|m| m != sender).collect()),
                None => (false, Vec::new()),
            });
        member.then_some(targets)
    }

    /// Whether a session registered since `targets` were looked up.
    fn registered_since(&self, targets: &Targets) -> bool {
        self.registrations.load(Ordering::SeqCst) != targets.registrations
    }

    /// Hands `envelope` to the looked-up mailboxes; returns the recipients that could not take
    /// it (their mailbox overflowed, or their session ended meanwhile).
    fn hand_over(&self, live: Vec<(String, Mailbox)>, envelope: &Envelope) -> Vec<String> {
        let mut queued = 0_u64;
        let mut stragglers = Vec::new();
        for (device, mailbox) in live {
            match self.hand_to(&device, &mailbox, envelope) {
                Handoff::Queued => queued += 1,
                Handoff::Offline | Handoff::Overflow => stragglers.push(device),
            }
        }
        self.metrics.delivered(queued);
        stragglers
    }
}

/// The relay service: the hub, the durable queue and its policy, and where refusals go.
#[derive(Clone, Copy)]
pub struct Relay<'a> {
    /// Routing tables.
    pub hub: &'a Hub,
    /// The durable offline queue.
    pub store: &'a dyn Store,
    /// Quotas and lifetimes of queued frames.
    pub policy: QueuePolicy,
    /// Counts and ledgers quota refusals.
    pub refusals: &'a dyn Refusals,
    /// The other nodes of the deployment (`None` on a single node): recipients absent here
    /// may be served there.
    pub remote: Option<&'a dyn super::remote::Remote>,
}

impl std::fmt::Debug for Relay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Relay<'_> {
    fn envelope(&self, sender: &str, frame: &Frame) -> Envelope {
        Envelope {
            frame: frame.clone(),
            stamp: self.hub.next_stamp(),
            sender: Arc::from(sender),
        }
    }

    /// Hands `frame` from `sender` to the connected `targets`; absent ones miss it (live-only
    /// frames: typing, presence, notices, call signaling and media). Returns how many
    /// mailboxes took it.
    pub fn live(&self, sender: &str, frame: &Frame, targets: Targets) -> usize {
        let envelope = self.envelope(sender, frame);
        if let Some(remote) = self.remote
            && !targets.absent.is_empty()
        {
            remote.forward(&targets.absent, &envelope);
        }
        let offered = targets.live.len();
        let missed = self.hub.hand_over(targets.live, &envelope);
        offered - missed.len()
    }

    /// Tells the nodes serving `devices` elsewhere that frames were queued for them.
    pub async fn ring(&self, devices: &[String]) {
        if let Some(remote) = self.remote
            && !devices.is_empty()
        {
            remote.ring(devices).await;
        }
    }

    /// Hands `frame` from `sender` to `targets`: absent ones through the durable queue, first
    /// (with `idempotency`, a [`super::dedup::frame_key`]), then connected ones through their
    /// mailboxes; a connected one that could not take it is queued too, under the same quotas.
    /// Everything is committed before this returns. Refusals are counted here and returned.
    ///
    /// # Errors
    /// The store failed to queue the frame: for absent recipients (then nothing was
    /// delivered), or for recipients that could not take it live (the others have it).
    pub async fn durable(
        &self,
        sender: &str,
        frame: &Frame,
        targets: Targets,
        idempotency: Option<&str>,
    ) -> Result<Routed, RelayError> {
        let envelope = self.envelope(sender, frame);
        let mut routed = Routed::default();
        if !targets.absent.is_empty() {
            match self.enqueue(&envelope, &targets.absent, idempotency).await {
                Ok(EnqueueOutcome::Duplicate) => {
                    routed.duplicate = true;
                    return Ok(routed);
                }
                Ok(EnqueueOutcome::Stored { stored, refused }) => {
                    routed.refused = refused;
                    // Any of them may have connected (and replayed) meanwhile.
                    if self.hub.registered_since(&targets) {
                        self.hub.nudge(stored.iter().map(String::as_str));
                    }
                    // Those connected to another node replay there.
                    self.ring(&stored).await;
                }
                Err(e) => return Err(RelayError::Queue(e)),
            }
        }
        let stragglers = self.hub.hand_over(targets.live, &envelope);
        if stragglers.is_empty() {
            return Ok(routed);
        }
        // Re-queue after an overflow: their sessions end as slow consumers and replay it.
        if let EnqueueOutcome::Stored { stored, refused } = self
            .enqueue(&envelope, &stragglers, None)
            .await
            .map_err(RelayError::Queue)?
        {
            routed.refused.extend(refused);
            self.hub.nudge(stored.iter().map(String::as_str));
        }
        Ok(routed)
    }

    async fn enqueue(
        &self,
        envelope: &Envelope,
        recipients: &[String],
        idempotency: Option<&str>,
    ) -> Result<EnqueueOutcome, StoreError> {
        let now = unix_now();
        let sender = envelope.sender.to_string();
        let frame = envelope.frame.with_sequence(0).to_bytes().to_vec();
        let outcome = self
            .store
            .enqueue(NewEnvelope {
                recipients: recipients.to_vec(),
                channel_id: envelope.frame.channel_id(),
                order_key: envelope.stamp,
                frame,
                enqueued_at: now,
                expires_at: now.saturating_add(secs(self.policy.ttl)),
                idempotency: idempotency.map(|key| IdempotencyKey {
                    scope: sender.clone(),
                    key: key.to_owned(),
                    expires_at: now.saturating_add(secs(self.policy.dedup_window)),
                }),
                limits: self.policy.limits,
                sender,
            })
            .await?;
        if let EnqueueOutcome::Stored { refused, .. } = &outcome {
            let what = format!("offline {} frame", envelope.frame.frame_type());
            self.count_refusals(&envelope.sender, refused, &what);
        }
        Ok(outcome)
    }

    /// Counts and ledgers the refusals of one frame from `sender`: once per bound that refused
    /// it (a frame refused for many recipients is one refusal, not one per recipient).
    fn count_refusals(&self, sender: &str, refused: &[Refusal], what: &str) {
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
            self.refusals.refuse(
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

    /// Moves frames a session took but could not deliver into its device's offline queue (in
    /// their original order), under the same quotas as any frame; returns how many were
    /// queued. Live-only frames are dropped. The senders of these frames were ACKed long ago,
    /// so a store that is busy or briefly unreachable is waited for (with backoff, up to
    /// [`REQUEUE_PATIENCE`] for the whole batch) rather than given up on. A frame refused by a
    /// quota, or that the store still could not take after that, is not kept anywhere else:
    /// the loss is counted (`commucat_requeue_lost_total`, or a bound refusal), logged, and for
    /// quotas ledgered — never silent.
    pub async fn requeue(&self, device: &str, leftovers: Vec<Envelope>) -> usize {
        let mut queued = 0;
        let recipient = [device.to_owned()];
        let deadline = tokio::time::Instant::now() + REQUEUE_PATIENCE;
        for envelope in leftovers
            .into_iter()
            .filter(|e| queueable(e.frame.frame_type()))
        {
            match self
                .enqueue_patiently(&envelope, &recipient, deadline)
                .await
            {
                Ok(EnqueueOutcome::Stored { stored, refused }) => {
                    queued += stored.len();
                    if let Some(refusal) = refused.first() {
                        tracing::warn!(%device, sender = %envelope.sender, bound = bound_of(refusal.limit).name(), "undelivered frame refused by an offline quota; it is lost");
                    }
                }
                Ok(EnqueueOutcome::Duplicate) => {}
                Err(e) => {
                    self.hub.metrics.requeue_lost.inc();
                    tracing::error!(%device, error = %e, "could not queue an undelivered frame; it is lost");
                }
            }
        }
        queued
    }

    /// [`Self::enqueue`], retried with backoff (50 ms doubling to 1 s) while the store answers
    /// `Unavailable`, until `deadline`.
    async fn enqueue_patiently(
        &self,
        envelope: &Envelope,
        recipient: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<EnqueueOutcome, StoreError> {
        let mut pause = Duration::from_millis(50);
        loop {
            match self.enqueue(envelope, recipient, None).await {
                Err(StoreError::Unavailable(reason)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %reason, "store unavailable while queueing an undelivered frame; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }
}

/// Longest time one [`Relay::requeue`] keeps retrying while the store is unavailable (for all
/// its frames together, so an ending session's cleanup is never held up longer).
pub const REQUEUE_PATIENCE: Duration = Duration::from_secs(30);

/// Recipients named in one ledger record of a refusal.
const LEDGER_RECIPIENTS: usize = 8;

/// The bound that refused a frame, as counted and ledgered.
#[must_use]
pub const fn bound_of(limit: QuotaLimit) -> Bound {
    match limit {
        QuotaLimit::RecipientFrames => Bound::OfflineFramesPerDevice,
        QuotaLimit::RecipientBytes => Bound::OfflineBytesPerDevice,
        QuotaLimit::SenderFrames => Bound::OfflineFramesPerSender,
        QuotaLimit::SenderBytes => Bound::OfflineBytesPerSender,
        QuotaLimit::TotalBytes => Bound::OfflineBytesTotal,
    }
}

#[cfg(test)]
mod tests;
