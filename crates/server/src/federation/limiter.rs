//! Inbound events per peer: a token bucket holding one minute's budget, refilled evenly. Keys
//! are configured peer domains only (checked before a token is taken), so the table is bounded
//! by the peer list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// A per-peer token bucket.
#[derive(Debug)]
pub struct PeerLimiter {
    /// Bucket size (`None`: unlimited).
    capacity: Option<f64>,
    /// Tokens per second.
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl PeerLimiter {
    /// `per_minute` events per peer and minute (0: unlimited).
    #[must_use]
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            capacity: (per_minute > 0).then_some(f64::from(per_minute)),
            rate: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `peer` at `now`.
    ///
    /// # Errors
    /// No token: whole seconds until one is back (at least 1).
    pub fn check(&self, peer: &str, now: Instant) -> Result<(), u64> {
        let Some(capacity) = self.capacity else {
            return Ok(());
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, updated) = buckets.entry(peer.to_owned()).or_insert((capacity, now));
        let elapsed = now.saturating_duration_since(*updated).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(capacity);
        *updated = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            // At most a minute: the bucket refills in that time.
            let wait =
                std::time::Duration::from_secs_f64(((1.0 - *tokens) / self.rate).clamp(0.0, 59.0));
            Err(wait.as_secs() + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_peer_has_its_own_budget_refilled_over_time() {
        let limiter = PeerLimiter::per_minute(2);
        let t = Instant::now();
        assert!(limiter.check("b.test", t).is_ok());
        assert!(limiter.check("b.test", t).is_ok());
        assert!(limiter.check("b.test", t).is_err());
        assert!(limiter.check("c.test", t).is_ok());
        assert!(limiter.check("b.test", t + Duration::from_secs(31)).is_ok());
        assert!(PeerLimiter::per_minute(0).check("b.test", t).is_ok());
    }
}
