//! MSG payloads that carry their send time, so the receiver measures end-to-end latency.

use std::time::{Duration, Instant};

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

    /// A payload of `size` bytes stamped with `sent_at` and message number `n`.
    pub(crate) fn payload(&self, size: usize, sent_at: Instant, n: u64) -> Bytes {
        let size = size.max(MIN_PAYLOAD);
        let mut out = BytesMut::with_capacity(size);
        out.put_u64_le(self.nanos(sent_at));
        out.put_u64_le(n);
        out.resize(size, 0);
        out.freeze()
    }

    /// Time since the payload's stamp, or `None` for a payload too short to carry one.
    pub(crate) fn latency(&self, payload: &[u8], now: Instant) -> Option<Duration> {
        let stamp: [u8; 8] = payload.get(..8)?.try_into().ok()?;
        let sent = u64::from_le_bytes(stamp);
        Some(Duration::from_nanos(self.nanos(now).saturating_sub(sent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_its_stamp_and_size() {
        let clock = Clock::start();
        let sent = Instant::now();
        let payload = clock.payload(4, sent, 7);
        assert_eq!(payload.len(), MIN_PAYLOAD);
        assert_eq!(clock.payload(300, sent, 7).len(), 300);
        let later = sent + Duration::from_millis(5);
        let latency = clock.latency(&payload, later).unwrap();
        assert!(latency >= Duration::from_millis(5) && latency < Duration::from_millis(6));
        assert_eq!(clock.latency(b"short", later), None);
    }
}
