//! Inbound events per peer: GCRA (the `governor` crate, as the REST limits) with one minute's
//! budget as the burst, replenished evenly. Keys are configured peer domains only (checked
//! before a token is taken), so the table is bounded by the peer list.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

type Gcra<C> =
    RateLimiter<String, HashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A GCRA limiter keyed by peer domain.
#[derive(Debug)]
pub struct PeerLimiter<C: Clock = DefaultClock> {
    /// `None`: unlimited.
    gcra: Option<Gcra<C>>,
}

impl PeerLimiter {
    /// `per_minute` events per peer and minute (0: unlimited).
    #[must_use]
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock> PeerLimiter<C> {
    /// As [`PeerLimiter::per_minute`], on `clock`.
    #[must_use]
    pub fn with_clock(per_minute: u32, clock: C) -> Self {
        Self {
            gcra: NonZeroU32::new(per_minute).map(|n| {
                RateLimiter::new(Quota::per_minute(n), HashMapStateStore::default(), clock)
            }),
        }
    }

    /// Takes a token for `peer`.
    ///
    /// # Errors
    /// No token: whole seconds until one is back (at least 1).
    pub fn check(&self, peer: &str) -> Result<(), u64> {
        let Some(gcra) = &self.gcra else {
            return Ok(());
        };
        gcra.check_key(&peer.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(gcra.clock().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn each_peer_has_its_own_budget_refilled_over_time() {
        let clock = FakeRelativeClock::default();
        let limiter = PeerLimiter::with_clock(2, clock.clone());
        assert!(limiter.check("b.test").is_ok());
        assert!(limiter.check("b.test").is_ok());
        // One event every 30 s: the next is admitted in 30 s.
        assert_eq!(limiter.check("b.test"), Err(30));
        assert!(limiter.check("c.test").is_ok());
        clock.advance(Duration::from_secs(31));
        assert!(limiter.check("b.test").is_ok());
        assert!(PeerLimiter::per_minute(0).check("b.test").is_ok());
    }
}
