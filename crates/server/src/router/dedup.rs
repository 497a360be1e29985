//! The in-memory idempotency window: keys of frames relayed recently, so that a client resending
//! a frame it got no ACK for (after a reconnect) does not deliver it twice.
//!
//! The durable half lives in the store (`idempotency` table), written in the same transaction
//! as an offline envelope; this window covers frames that went only to online recipients.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::RngCore;

/// Default window when none is configured.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Most keys remembered at once; the oldest are forgotten first beyond that.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The idempotency key of a relayed frame: sender device, channel, the sender's sequence number
/// and a digest of the frame type and payload. A resend repeats all four; a new frame that
/// happens to reuse a sequence number after a reconnect has other bytes.
#[must_use]
pub fn frame_key(frame: &commucat_ccp::Frame) -> String {
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

/// One remembered claim: 128 bits of a keyed BLAKE3 over the sender and the key. Fixed size, so
/// claiming allocates nothing and compares 16 bytes instead of two strings; keyed with a secret
/// of the process, so clients cannot choose frames whose entries collide (in the set's buckets
/// or, with 2^-128 odds otherwise, at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    lo: u64,
    hi: u64,
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly random: the low half is the hash.
        state.write_u64(self.lo);
    }
}

/// Passes an [`Entry`]'s own bits through as its hash.
#[derive(Debug, Default)]
struct EntryHasher(u64);

impl Hasher for EntryHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct Window {
    keys: HashSet<Entry, BuildHasherDefault<EntryHasher>>,
    order: VecDeque<(Instant, Entry)>,
}

/// Keys of recently relayed frames, per sender.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    secret: [u8; 32],
    inner: Mutex<Window>,
}

impl Dedup {
    /// A window remembering keys for `window`, at most `capacity` of them.
    #[must_use]
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            secret: {
                let mut secret = [0; 32];
                rand_core::OsRng.fill_bytes(&mut secret);
                secret
            },
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
        let entry = self.entry(sender, key);
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
        inner.keys.insert(entry);
        inner.order.push_back((now, entry));
        true
    }

    /// The entry remembering `key` of `sender` (computed before taking the lock).
    fn entry(&self, sender: &str, key: &str) -> Entry {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hasher.update(
            &u64::try_from(sender.len())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        hasher.update(sender.as_bytes());
        hasher.update(key.as_bytes());
        let digest = hasher.finalize();
        let bytes = digest.as_bytes();
        let half = |at: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(bytes.get(at..at + 8).unwrap_or(&[0; 8]));
            u64::from_le_bytes(word)
        };
        Entry {
            lo: half(0),
            hi: half(8),
        }
    }

    /// Forgets a claim whose frame was not accepted after all (so a resend is judged afresh).
    pub fn release(&self, sender: &str, key: &str) {
        let entry = self.entry(sender, key);
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.keys.remove(&entry) {
            inner.order.retain(|(_, e)| *e != entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commucat_ccp::{Frame, FrameType};

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
    fn sender_and_key_are_not_confused() {
        let dedup = Dedup::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(dedup.claim_at("ab", "c", t0));
        assert!(dedup.claim_at("a", "bc", t0));
        assert!(!dedup.claim_at("ab", "c", t0));
        dedup.release("a", "bc");
        assert!(dedup.claim_at("a", "bc", t0));
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
