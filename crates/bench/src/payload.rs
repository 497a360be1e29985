//! MSG payloads that carry their send time and number, so the receiver can tell which message
//! arrived and when it left.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Smallest payload: an 8-byte timestamp and an 8-byte message number.
pub(crate) const MIN_PAYLOAD: usize = 16;

/// The run's clock: timestamps are nanoseconds since `epoch`, which every task shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds from the epoch to `at` (saturating).
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A payload of `size` bytes stamped with `sent_at` and message number `n` (the receiver
    /// reads the number; the send time of each number is in the sender's log, so a latency never
    /// depends on bytes from the network).
    pub(crate) fn payload(&self, size: usize, sent_at: Instant, n: u64) -> Bytes {
        let size = size.max(MIN_PAYLOAD);
        let mut out = BytesMut::with_capacity(size);
        out.put_u64_le(self.nanos(sent_at));
        out.put_u64_le(n);
        out.resize(size, 0);
        out.freeze()
    }

    /// The message number a payload carries, or `None` for a payload too short to carry one.
    pub(crate) fn number(payload: &[u8]) -> Option<u64> {
        let n: [u8; 8] = payload.get(8..16)?.try_into().ok()?;
        Some(u64::from_le_bytes(n))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn payload_carries_its_stamp_and_size() {
        let clock = Clock::start();
        let sent = Instant::now();
        let payload = clock.payload(4, sent, 7);
        assert_eq!(payload.len(), MIN_PAYLOAD);
        assert_eq!(clock.payload(300, sent, 7).len(), 300);
        let stamp: [u8; 8] = payload[..8].try_into().unwrap();
        assert_eq!(u64::from_le_bytes(stamp), clock.nanos(sent));
        let later = sent + Duration::from_millis(5);
        assert_eq!(clock.nanos(later) - clock.nanos(sent), 5_000_000);
        assert_eq!(Clock::number(&payload), Some(7));
        assert_eq!(Clock::number(b"0123456789abcde"), None);
    }
}
