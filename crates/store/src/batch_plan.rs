//! What one group-commit transaction writes for a batch of enqueues, decided without a database
//! (both backends read the rows this needs, call [`plan`], and write what it returns).
//!
//! The batch is judged envelope by envelope in arrival order, each against the usage left by
//! the ones before it, so a batch gives every caller the answer it would have had from its own
//! transaction in that order: an envelope whose idempotency key is taken (in the store, or by an
//! earlier envelope of the batch) is a duplicate; one refused for every recipient writes nothing,
//! not even its key; the others are queued for the recipients the quotas allow.

use std::collections::{HashMap, HashSet};

use crate::model::{EnqueueOutcome, IdempotencyKey, NewEnvelope, QueueUsage, UsageScope};
use crate::quota::{self, Delta};
use crate::rules;

/// The usage rows and idempotency keys a batch is judged against, as read in its transaction.
#[derive(Debug, Default)]
pub(crate) struct Current {
    /// Usage per `(kind, id)` (see [`quota::key`]); an absent row is no usage.
    pub(crate) usage: HashMap<(&'static str, String), QueueUsage>,
    /// Stored idempotency keys `(scope, key)` with their expiry.
    pub(crate) keys: HashMap<(String, String), i64>,
}

/// The rows one batch writes, and each caller's answer.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// One answer per envelope, in batch order.
    pub(crate) outcomes: Vec<EnqueueOutcome>,
    /// Indexes (into the batch) of the envelopes stored, in batch order: one payload row each.
    pub(crate) payloads: Vec<usize>,
    /// Queue rows `(recipient, position in payloads)`, in the order their ids are assigned.
    pub(crate) queue: Vec<(String, usize)>,
    /// Idempotency keys to record, with the time they are recorded at.
    pub(crate) keys: Vec<(IdempotencyKey, i64)>,
    /// Usage added by the stored copies.
    pub(crate) delta: Delta,
}

/// The usage keys a batch reads: every recipient, every sender and the total.
pub(crate) fn usage_keys(batch: &[NewEnvelope]) -> (Vec<String>, Vec<String>) {
    let mut recipients = HashSet::new();
    let mut senders = HashSet::new();
    for envelope in batch {
        recipients.extend(envelope.recipients.iter().cloned());
        senders.insert(envelope.sender.clone());
    }
    (
        recipients.into_iter().collect(),
        senders.into_iter().collect(),
    )
}

/// The idempotency keys a batch carries, as `(scopes, keys)` columns.
pub(crate) fn key_columns(batch: &[NewEnvelope]) -> (Vec<String>, Vec<String>) {
    batch
        .iter()
        .filter_map(|envelope| envelope.idempotency.as_ref())
        .map(|key| (key.scope.clone(), key.key.clone()))
        .unzip()
}

/// Judges `batch` against `current`, in order.
pub(crate) fn plan(batch: &[NewEnvelope], mut current: Current) -> Plan {
    let mut out = Plan::default();
    // Keys recorded by earlier envelopes of this batch.
    let mut recorded: HashSet<(String, String)> = HashSet::new();
    for (index, envelope) in batch.iter().enumerate() {
        if let Some(key) = &envelope.idempotency {
            let id = (key.scope.clone(), key.key.clone());
            let live = current
                .keys
                .get(&id)
                .is_some_and(|&expires_at| expires_at > envelope.enqueued_at);
            if live || recorded.contains(&id) {
                out.outcomes.push(EnqueueOutcome::Duplicate);
                continue;
            }
        }
        let recipients = rules::recipients(envelope);
        let mut per_recipient = HashMap::new();
        for &recipient in &recipients {
            per_recipient.insert(
                recipient.to_owned(),
                used(&current, UsageScope::Recipient(recipient)),
            );
        }
        let sender = used(&current, UsageScope::Sender(&envelope.sender));
        let total = used(&current, UsageScope::Total);
        let (size, bytes) = quota::size_of(&envelope.frame);
        let quota::Verdict { stored, refused } = quota::judge(
            &recipients,
            size,
            &per_recipient,
            sender,
            total,
            &envelope.limits,
        );
        if !stored.is_empty() {
            if let Some(key) = &envelope.idempotency {
                recorded.insert((key.scope.clone(), key.key.clone()));
                out.keys.push((key.clone(), envelope.enqueued_at));
            }
            let payload = out.payloads.len();
            out.payloads.push(index);
            for recipient in &stored {
                out.queue.push((recipient.clone(), payload));
                add(&mut current, UsageScope::Recipient(recipient), size);
                add(&mut current, UsageScope::Sender(&envelope.sender), size);
                add(&mut current, UsageScope::Total, size);
            }
            out.delta.add_queued(&stored, &envelope.sender, bytes);
        }
        out.outcomes
            .push(EnqueueOutcome::Stored { stored, refused });
    }
    out
}

fn used(current: &Current, scope: UsageScope<'_>) -> QueueUsage {
    let (kind, id) = quota::key(scope);
    current
        .usage
        .get(&(kind, id.to_owned()))
        .copied()
        .unwrap_or_default()
}

fn add(current: &mut Current, scope: UsageScope<'_>, size: u64) {
    let (kind, id) = quota::key(scope);
    let slot = current.usage.entry((kind, id.to_owned())).or_default();
    slot.frames = slot.frames.saturating_add(1);
    slot.bytes = slot.bytes.saturating_add(size);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::model::{QueueLimits, QuotaLimit};

    fn envelope(sender: &str, recipients: &[&str], key: Option<&str>) -> NewEnvelope {
        NewEnvelope {
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            channel_id: 1,
            sender: sender.to_owned(),
            order_key: 1,
            frame: vec![0; 10],
            enqueued_at: 100,
            expires_at: 200,
            idempotency: key.map(|key| IdempotencyKey {
                scope: sender.to_owned(),
                key: key.to_owned(),
                expires_at: 150,
            }),
            limits: QueueLimits {
                frames_per_recipient: 2,
                ..QueueLimits::UNBOUNDED
            },
        }
    }

    #[test]
    fn each_envelope_sees_the_usage_of_the_ones_before_it() {
        let batch = [
            envelope("a", &["r"], None),
            envelope("b", &["r", "s"], None),
            envelope("c", &["r", "s"], None),
        ];
        let plan = plan(&batch, Current::default());
        // r has room for two: the third envelope is refused for r only.
        match &plan.outcomes[2] {
            EnqueueOutcome::Stored { stored, refused } => {
                assert_eq!(stored, &["s"]);
                assert_eq!(refused[0].recipient, "r");
                assert_eq!(refused[0].limit, QuotaLimit::RecipientFrames);
            }
            EnqueueOutcome::Duplicate => panic!("not a duplicate"),
        }
        assert_eq!(plan.payloads, [0, 1, 2]);
        let queue: Vec<_> = plan.queue.iter().map(|(r, p)| (r.as_str(), *p)).collect();
        assert_eq!(queue, [("r", 0), ("r", 1), ("s", 1), ("s", 2)]);
    }

    #[test]
    fn refused_envelopes_record_no_key_and_repeated_keys_are_duplicates() {
        let mut current = Current::default();
        current.usage.insert(
            ("recipient", "full".to_owned()),
            QueueUsage {
                frames: 2,
                bytes: 0,
            },
        );
        current.keys.insert(("a".to_owned(), "old".to_owned()), 90);
        current
            .keys
            .insert(("a".to_owned(), "live".to_owned()), 120);
        let batch = [
            envelope("a", &["full"], Some("k1")),
            envelope("a", &["free"], Some("k1")),
            envelope("a", &["free"], Some("k1")),
            envelope("a", &["free"], Some("old")),
            envelope("a", &["free"], Some("live")),
        ];
        let plan = plan(&batch, current);
        assert!(
            matches!(&plan.outcomes[0], EnqueueOutcome::Stored { stored, .. } if stored.is_empty())
        );
        assert!(
            matches!(&plan.outcomes[1], EnqueueOutcome::Stored { stored, .. } if stored == &["free"])
        );
        assert_eq!(plan.outcomes[2], EnqueueOutcome::Duplicate);
        // An expired stored key counts as absent.
        assert!(
            matches!(&plan.outcomes[3], EnqueueOutcome::Stored { stored, .. } if stored == &["free"])
        );
        assert_eq!(plan.outcomes[4], EnqueueOutcome::Duplicate);
        let keys: Vec<_> = plan.keys.iter().map(|(k, _)| k.key.as_str()).collect();
        assert_eq!(keys, ["k1", "old"]);
        assert_eq!(plan.payloads, [1, 3]);
    }
}
