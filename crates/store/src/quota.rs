//! Offline queue quotas, shared by the backends: which recipients a frame may be stored for,
//! and the changes to the `queue_usage` table a write makes.
//!
//! `queue_usage` holds one row per recipient (`kind = 'recipient'`), per sender
//! (`'sender'`) and one total row (`'total'`, id `''`), each with the entries and bytes
//! counted for the quotas. Backends update it in the same transaction as the queue rows and
//! serialise every queue write, so a check and the write it allows cannot interleave with
//! another.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Result, StoreError};
use crate::model::{QueueLimits, QueueUsage, QuotaLimit, Refusal, UsageScope};

/// `kind` of recipient rows.
pub(crate) const RECIPIENT: &str = "recipient";
/// `kind` of sender rows.
pub(crate) const SENDER: &str = "sender";
/// `kind` of the total row.
pub(crate) const TOTAL: &str = "total";

/// `(kind, id)` of the usage row a scope reads.
pub(crate) fn key<'a>(scope: UsageScope<'a>) -> (&'static str, &'a str) {
    match scope {
        UsageScope::Recipient(id) => (RECIPIENT, id),
        UsageScope::Sender(id) => (SENDER, id),
        UsageScope::Total => (TOTAL, ""),
    }
}

/// The `kind` constant of a usage row as read.
pub(crate) fn kind(kind: &str) -> Result<&'static str> {
    [RECIPIENT, SENDER, TOTAL]
        .into_iter()
        .find(|k| *k == kind)
        .ok_or_else(|| StoreError::Corrupt(format!("queue usage kind {kind:?}")))
}

/// A usage row as read: `(frames, bytes)` non-negative.
pub(crate) fn usage(frames: i64, bytes: i64) -> Result<QueueUsage> {
    let convert = |v: i64| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative queue usage {v}")))
    };
    Ok(QueueUsage {
        frames: convert(frames)?,
        bytes: convert(bytes)?,
    })
}

/// What the quotas allow for one frame of `size` bytes.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) stored: Vec<String>,
    pub(crate) refused: Vec<Refusal>,
}

/// Decides which `recipients` (deduplicated, in order) a frame of `size` bytes from a sender
/// with usage `sender` may be queued for, given each recipient's usage in `per_recipient`
/// (absent: none) and the `total`.
pub(crate) fn judge(
    recipients: &[&str],
    size: u64,
    per_recipient: &HashMap<String, QueueUsage>,
    sender: QueueUsage,
    total: QueueUsage,
    limits: &QueueLimits,
) -> Verdict {
    let mut stored = Vec::new();
    let mut refused = Vec::new();
    for &recipient in recipients {
        let used = per_recipient.get(recipient).copied().unwrap_or_default();
        let limit = if used.frames >= limits.frames_per_recipient {
            Some(QuotaLimit::RecipientFrames)
        } else if exceeds(used.bytes, size, limits.bytes_per_recipient) {
            Some(QuotaLimit::RecipientBytes)
        } else {
            None
        };
        match limit {
            Some(limit) => refused.push(Refusal {
                recipient: recipient.to_owned(),
                limit,
            }),
            None => stored.push(recipient.to_owned()),
        }
    }
    let copies = stored.len() as u64;
    let bytes = size.saturating_mul(copies);
    let shared = if sender.frames.saturating_add(copies) > limits.frames_per_sender {
        Some(QuotaLimit::SenderFrames)
    } else if exceeds(sender.bytes, bytes, limits.bytes_per_sender) {
        Some(QuotaLimit::SenderBytes)
    } else if exceeds(total.bytes, bytes, limits.bytes_total) {
        Some(QuotaLimit::TotalBytes)
    } else {
        None
    };
    if let Some(limit) = shared {
        refused.extend(
            stored
                .drain(..)
                .map(|recipient| Refusal { recipient, limit }),
        );
    }
    Verdict { stored, refused }
}

fn exceeds(used: u64, more: u64, limit: u64) -> bool {
    used.saturating_add(more) > limit
}

/// Parallel `kinds`, `ids`, `frames`, `bytes` columns of usage changes.
pub(crate) type Columns = (Vec<String>, Vec<String>, Vec<i64>, Vec<i64>);

/// Changes to `queue_usage`, keyed `(kind, id)` in a fixed order.
#[derive(Debug, Default)]
pub(crate) struct Delta(BTreeMap<(&'static str, String), (i64, i64)>);

impl Delta {
    /// One copy of a frame of `bytes` queued for each of `recipients` from `sender`.
    #[cfg(test)]
    pub(crate) fn queued(recipients: &[String], sender: &str, bytes: i64) -> Self {
        let mut delta = Self::default();
        delta.add_queued(recipients, sender, bytes);
        delta
    }

    /// Adds one copy of a frame of `bytes` queued for each of `recipients` from `sender`.
    pub(crate) fn add_queued(&mut self, recipients: &[String], sender: &str, bytes: i64) {
        for recipient in recipients {
            self.entry(recipient, sender, bytes, 1);
        }
    }

    /// Queue entries `(recipient, sender, bytes)` removed (delivered or expired).
    pub(crate) fn freed<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str, i64)>) -> Self {
        let mut delta = Self::default();
        for (recipient, sender, bytes) in entries {
            delta.entry(recipient, sender, bytes, -1);
        }
        delta
    }

    /// One queue entry of `bytes` for `recipient` from `sender` added (`sign` 1) or removed
    /// (`sign` -1).
    fn entry(&mut self, recipient: &str, sender: &str, bytes: i64, sign: i64) {
        for key in [
            (RECIPIENT, recipient.to_owned()),
            (SENDER, sender.to_owned()),
            (TOTAL, String::new()),
        ] {
            let slot = self.0.entry(key).or_insert((0, 0));
            slot.0 += sign;
            slot.1 += sign * bytes;
        }
    }

    /// The changes as parallel `kinds`, `ids`, `frames`, `bytes` columns.
    #[cfg(test)]
    pub(crate) fn columns(&self) -> Columns {
        self.select(|_| true)
    }

    /// The additions (rows may be new: an upsert) and the removals (rows exist: an update),
    /// apart, since a row inserted with negative counts would break the table's checks before
    /// any conflict is resolved.
    pub(crate) fn split(&self) -> (Columns, Columns) {
        (
            self.select(|&(f, b)| f >= 0 && b >= 0),
            self.select(|&(f, b)| f < 0 || b < 0),
        )
    }

    fn select(&self, keep: impl Fn(&(i64, i64)) -> bool) -> Columns {
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((kind, id), (frames, bytes)) in self.0.iter().filter(|(_, v)| keep(v)) {
            columns.0.push((*kind).to_owned());
            columns.1.push(id.clone());
            columns.2.push(*frames);
            columns.3.push(*bytes);
        }
        columns
    }
}

/// What delivering a batch of envelopes to one recipient changes: the usage it frees and, per
/// channel, the highest delivered envelope id (the recipient's inbox offset moves up to it).
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub(crate) delta: Delta,
    pub(crate) last_per_channel: BTreeMap<i64, i64>,
}

impl Delivery {
    /// One delivered entry of `bytes` from `sender` on `channel_id`.
    pub(crate) fn entry(
        &mut self,
        recipient: &str,
        envelope_id: i64,
        channel_id: i64,
        sender: &str,
        bytes: i64,
    ) {
        self.delta.entry(recipient, sender, bytes, -1);
        let last = self
            .last_per_channel
            .entry(channel_id)
            .or_insert(envelope_id);
        *last = (*last).max(envelope_id);
    }
}

/// A frame's length as stored.
pub(crate) fn size_of(frame: &[u8]) -> (u64, i64) {
    let size = frame.len() as u64;
    (size, i64::try_from(size).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(frames: u64, bytes: u64) -> QueueUsage {
        QueueUsage { frames, bytes }
    }

    #[test]
    fn recipients_are_refused_before_shared_quotas() {
        let limits = QueueLimits {
            frames_per_recipient: 2,
            bytes_per_recipient: 100,
            frames_per_sender: 10,
            bytes_per_sender: 1_000,
            bytes_total: 10_000,
        };
        let mut per = HashMap::new();
        per.insert("full".to_owned(), used(2, 10));
        per.insert("heavy".to_owned(), used(1, 95));
        let v = judge(
            &["full", "heavy", "free"],
            10,
            &per,
            QueueUsage::default(),
            QueueUsage::default(),
            &limits,
        );
        assert_eq!(v.stored, ["free"]);
        let limits_of: Vec<_> = v.refused.iter().map(|r| r.limit).collect();
        assert_eq!(
            limits_of,
            [QuotaLimit::RecipientFrames, QuotaLimit::RecipientBytes]
        );
        // Two copies of 10 bytes would pass the sender's 1 000 bytes only with 980 used.
        let v = judge(&["a", "b"], 10, &per, used(0, 981), used(0, 0), &limits);
        assert!(v.stored.is_empty());
        assert!(v.refused.iter().all(|r| r.limit == QuotaLimit::SenderBytes));
        let v = judge(&["a"], 10, &per, used(10, 0), used(0, 0), &limits);
        assert_eq!(v.refused[0].limit, QuotaLimit::SenderFrames);
        let v = judge(&["a"], 10, &per, used(0, 0), used(0, 9_991), &limits);
        assert_eq!(v.refused[0].limit, QuotaLimit::TotalBytes);
        let v = judge(&["a"], 10, &per, used(9, 990), used(0, 9_990), &limits);
        assert_eq!(v.stored, ["a"]);
    }

    #[test]
    fn delivery_keeps_the_highest_id_per_channel() {
        let mut d = Delivery::default();
        d.entry("bob", 7, 1, "alice", 5);
        d.entry("bob", 3, 1, "alice", 5);
        d.entry("bob", 4, 2, "carol", 2);
        assert_eq!(
            d.last_per_channel.into_iter().collect::<Vec<_>>(),
            [(1, 7), (2, 4)]
        );
        let (_, ids, frames, bytes) = d.delta.columns();
        assert_eq!(ids, ["bob", "alice", "carol", ""]);
        assert_eq!(frames, [-3, -2, -1, -3]);
        assert_eq!(bytes, [-12, -10, -2, -12]);
    }

    #[test]
    fn deltas_add_up_per_key() {
        let mut d = Delta::queued(&["bob".into(), "carol".into()], "alice", 5);
        d.entry("bob", "alice", 7, -1);
        let freed = Delta::freed([("bob", "alice", 7)]);
        assert_eq!(freed.columns().2, [-1, -1, -1]);
        let (kinds, ids, frames, bytes) = d.columns();
        assert_eq!(kinds, ["recipient", "recipient", "sender", "total"]);
        assert_eq!(ids, ["bob", "carol", "alice", ""]);
        assert_eq!(frames, [0, 1, 1, 1]);
        assert_eq!(bytes, [-2, 5, 3, 3]);
    }
}
