//! Replay cache of IK message-1 ephemerals.
//!
//! An IK handshake is complete after the server's message 2, and neither message 1 nor the
//! HELLO proof carries a server nonce: a HELLO captured on the way (for example at a
//! TLS-terminating proxy) and sent again would yield a working session for a client that does
//! not use `noise-transport`. Every honest message 1 starts with a fresh 32-byte ephemeral key,
//! so the server remembers the ephemerals it has accepted and refuses one it sees again.
//!
//! Bounded by `bounds.ik_replay_entries` entries (about 100 bytes each) and
//! `bounds.ik_replay_retention`:
//! - an entry is dropped once it is older than the retention;
//! - when the cache is full, the oldest entry is dropped first (counted in
//!   `commucat_ik_replay_evictions_total`: a non-zero rate means the retention is not reached).
//!
//! With Redis presence the nodes also share the accepted ephemerals (`SET NX EX` with the same
//! retention), so a HELLO accepted by one node is refused by the others.
//!
//! What remains (docs/operations.md): a HELLO replayed after its entry was dropped (and, across
//! nodes, after the retention or while Redis is unreachable) is accepted.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::router::presence::Presence;

/// Length of the ephemeral public key that opens an IK message 1.
pub const EPHEMERAL_LEN: usize = 32;

/// The marker of `message_one` in the deployment's shared registry: `ik:<hex ephemeral>`
/// (`None` for a message too short to hold an ephemeral).
#[must_use]
pub fn marker(message_one: &[u8]) -> Option<String> {
    message_one
        .get(..EPHEMERAL_LEN)
        .map(|ephemeral| format!("ik:{}", hex::encode(ephemeral)))
}

/// Outcome of [`ReplayCache::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// First time seen; remembered now.
    Fresh,
    /// Fresh, but the cache was full and dropped its oldest entry to remember it.
    FreshEvicting,
    /// Seen before within the retention: a replay.
    Replayed,
}

/// The ephemerals of accepted IK message 1s, oldest first.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    retention: Duration,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    seen: HashSet<[u8; EPHEMERAL_LEN]>,
    order: VecDeque<([u8; EPHEMERAL_LEN], Instant)>,
}

impl ReplayCache {
    /// A cache of at most `capacity` entries (at least 1) kept for `retention`.
    #[must_use]
    pub fn new(capacity: usize, retention: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            retention,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// Remembers the ephemeral that opens `message_one` at `now`; whether it was new. A
    /// message shorter than an ephemeral is never a valid message 1 and is reported fresh
    /// (the Noise layer refuses it).
    pub fn admit(&self, message_one: &[u8], now: Instant) -> Admission {
        let Some(ephemeral) = message_one
            .get(..EPHEMERAL_LEN)
            .and_then(|e| <[u8; EPHEMERAL_LEN]>::try_from(e).ok())
        else {
            return Admission::Fresh;
        };
        let mut entries = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.expire(now, self.retention);
        if entries.seen.contains(&ephemeral) {
            return Admission::Replayed;
        }
        let mut admission = Admission::Fresh;
        while entries.order.len() >= self.capacity {
            entries.pop_oldest();
            admission = Admission::FreshEvicting;
        }
        entries.seen.insert(ephemeral);
        entries.order.push_back((ephemeral, now));
        admission
    }

    /// How long an entry is kept.
    #[must_use]
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Entries held now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .order
            .len()
    }

    /// Whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Entries {
    fn expire(&mut self, now: Instant, retention: Duration) {
        while self
            .order
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= retention)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((ephemeral, _)) = self.order.pop_front() {
            self.seen.remove(&ephemeral);
        }
    }
}

/// Whether the IK `message_one` is new: not in `cache` and, when the deployment shares a
/// registry, not recorded there by another node. Counts replays and early evictions in
/// `metrics`. A registry that cannot answer does not stop the handshake (this node's cache
/// still applies); the outage is logged.
pub async fn admit(
    cache: &ReplayCache,
    shared: Option<&dyn Presence>,
    metrics: &Metrics,
    message_one: &[u8],
) -> bool {
    let mut fresh = match cache.admit(message_one, Instant::now()) {
        Admission::Fresh => true,
        Admission::FreshEvicting => {
            metrics.ik_replay_evictions.inc();
            true
        }
        Admission::Replayed => false,
    };
    if fresh && let (Some(registry), Some(marker)) = (shared, marker(message_one)) {
        match registry.mark_once(&marker, cache.retention()).await {
            Ok(new) => fresh = new,
            Err(e) => tracing::warn!(error = %e, "shared IK replay cache unavailable"),
        }
    }
    if !fresh {
        metrics.handshake_replays.inc();
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u8) -> Vec<u8> {
        let mut m = vec![n; EPHEMERAL_LEN];
        m.extend_from_slice(b"encrypted static and payload");
        m
    }

    #[test]
    fn a_second_sighting_is_a_replay() {
        let cache = ReplayCache::new(8, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(cache.admit(&message(1), t0), Admission::Fresh);
        assert_eq!(cache.admit(&message(1), t0), Admission::Replayed);
        assert_eq!(cache.admit(&message(2), t0), Admission::Fresh);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn entries_expire_after_the_retention() {
        let cache = ReplayCache::new(8, Duration::from_secs(60));
        let t0 = Instant::now();
        cache.admit(&message(1), t0);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(cache.admit(&message(1), later), Admission::Replayed);
        let expired = t0 + Duration::from_secs(60);
        assert_eq!(cache.admit(&message(1), expired), Admission::Fresh);
    }

    #[test]
    fn a_full_cache_drops_its_oldest_entry() {
        let cache = ReplayCache::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(cache.admit(&message(1), t0), Admission::Fresh);
        assert_eq!(cache.admit(&message(2), t0), Admission::Fresh);
        assert_eq!(cache.admit(&message(3), t0), Admission::FreshEvicting);
        assert_eq!(cache.len(), 2);
        // The oldest went; the newer ones are still refused.
        assert_eq!(cache.admit(&message(2), t0), Admission::Replayed);
        assert_eq!(cache.admit(&message(3), t0), Admission::Replayed);
        assert_eq!(cache.admit(&message(1), t0), Admission::FreshEvicting);
    }

    #[test]
    fn short_messages_are_not_remembered() {
        let cache = ReplayCache::new(2, Duration::from_secs(60));
        assert_eq!(cache.admit(&[1, 2, 3], Instant::now()), Admission::Fresh);
        assert!(cache.is_empty());
    }
}
