//! The in-memory idempotency window: keys of frames relayed recently, so that a client resending
//! a frame it got no ACK for (after a reconnect) does not deliver it twice.
//!
//! The durable half lives in the store (`idempotency` table), written in the same transaction
//! as an offline envelope; this window covers frames that went only to online recipients.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default window when none is configured.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Most keys remembered at once; the oldest are forgotten first beyond that.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The idempotency key of a relayed frame: sender device, channel, the sender's sequence number
/// and a digest of the frame type and payload. A resend repeats all four; a new frame that
/// happens to reuse a sequence number after a reconnect has other bytes.
#[must_use]
pub fn frame_key(frame: &ccp::Frame) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[frame.frame_type().code()]);
    hasher.update(frame.payload());
    let digest = hasher.finalize();
    let short = digest.as_bytes().get(..16).unwrap_or_default();
    format!(
        "{}:{}:{}",
        frame.channel_id(),
        frame.sequence(),
        hex::encode(short)
    )
}

#[derive(Debug, Default)]
struct Window {
    keys: HashSet<(String, String)>,
    order: VecDeque<(Instant, (String, String))>,
}

/// Keys of recently relayed frames, per sender.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    inner: Mutex<Window>,
}

impl Dedup {
    /// A window remembering keys for `window`, at most `capacity` of them.
    #[must_use]
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Window::default()),
        }
    }

    /// How long keys are remembered.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Claims `key` for `sender`: `true` if it was not seen within the window (the frame is
    /// new and is now remembered), `false` for a resend.
    pub fn claim(&self, sender: &str, key: &str) -> bool {
        self.claim_at(sender, key, Instant::now())
    }

    fn claim_at(&self, sender: &str, key: &str, now: Instant) -> bool {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some((at, _)) = inner.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            if let Some((_, old)) = inner.order.pop_front() {
                inner.keys.remove(&old);
            }
        }
        let entry = (sender.to_owned(), key.to_owned());
        if inner.keys.contains(&entry) {
            return false;
        }
        while inner.order.len() >= self.capacity {
            match inner.order.pop_front() {
                Some((_, old)) => {
                    inner.keys.remove(&old);
                }
                None => break,
            }
        }
        inner.keys.insert(entry.clone());
        inner.order.push_back((now, entry));
        true
    }

    /// Forgets a claim whose frame was not accepted after all (so a resend is judged afresh).
    pub fn release(&self, sender: &str, key: &str) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = (sender.to_owned(), key.to_owned());
        if inner.keys.remove(&entry) {
            inner.order.retain(|(_, e)| *e != entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccp::{Frame, FrameType};

    #[test]
    fn resends_are_caught_within_the_window_only() {
        let dedup = Dedup::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(dedup.claim_at("a", "k", t0));
        assert!(!dedup.claim_at("a", "k", t0 + Duration::from_secs(9)));
        assert!(dedup.claim_at("b", "k", t0), "keys are per sender");
        assert!(dedup.claim_at("a", "k", t0 + Duration::from_secs(10)));
        dedup.release("a", "k");
        assert!(dedup.claim_at("a", "k", t0 + Duration::from_secs(11)));
    }

    #[test]
    fn capacity_forgets_the_oldest() {
        let dedup = Dedup::new(Duration::from_secs(100), 2);
        let t0 = Instant::now();
        assert!(dedup.claim_at("a", "1", t0));
        assert!(dedup.claim_at("a", "2", t0));
        assert!(dedup.claim_at("a", "3", t0));
        assert!(dedup.claim_at("a", "1", t0), "oldest was forgotten");
        assert!(!dedup.claim_at("a", "3", t0));
    }

    #[test]
    fn frame_keys_cover_channel_sequence_type_and_bytes() {
        let key = |ty, channel, seq, payload: &'static [u8]| {
            frame_key(&Frame::new(ty, channel, seq, payload).unwrap())
        };
        let base = key(FrameType::Msg, 7, 3, b"hi");
        assert_eq!(base, key(FrameType::Msg, 7, 3, b"hi"));
        assert!(base.starts_with("7:3:"));
        assert_ne!(base, key(FrameType::Msg, 7, 3, b"ho"));
        assert_ne!(base, key(FrameType::Msg, 8, 3, b"hi"));
        assert_ne!(base, key(FrameType::Msg, 7, 4, b"hi"));
        assert_ne!(base, key(FrameType::KeyUpdate, 7, 3, b"hi"));
    }
}
