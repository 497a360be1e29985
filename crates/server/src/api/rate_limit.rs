//! Per-IP rate limits: GCRA (the `governor` crate) with one minute's budget as the burst,
//! replenished evenly (one request every `60 / per_minute` seconds).
//!
//! Three limiters (`[rate_limits]`): every REST request, pairing claims on top of that, and
//! `/connect` attempts (which do not count against the REST budget). Clients are keyed by IP
//! address, IPv6 ones by their /64 (one subscriber's prefix). A refused request answers 429
//! `application/problem+json` with `retry-after` (whole seconds until a request is admitted).
//!
//! Client addresses are chosen by the clients, so the state is bounded: [`sweep`] drops, every
//! [`SWEEP_INTERVAL`], clients whose budget has refilled (governor's `retain_recent`), and the
//! store ([`BoundedStore`]) never holds more than [`MAX_TRACKED`] clients: when full, the
//! sixteenth of them closest to a full budget is dropped first (they come back with a full
//! budget, which they nearly had).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;

use super::problem::Problem;
use super::{AppState, RestSettings};
use crate::listener::http::PeerAddr;

/// Most clients one limiter tracks at once.
pub(crate) const MAX_TRACKED: usize = 65_536;
/// How often [`sweep`] drops the clients whose budget has refilled.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// GCRA state per client (its theoretical arrival time), at most [`MAX_TRACKED`] of them.
#[derive(Debug, Default)]
pub(crate) struct BoundedStore {
    tats: Mutex<HashMap<IpAddr, Nanos>>,
}

impl BoundedStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Nanos>> {
        self.tats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops the sixteenth of `tats` with the earliest arrival times (the most refilled budgets).
fn evict_most_refilled(tats: &mut HashMap<IpAddr, Nanos>) {
    let mut times: Vec<Nanos> = tats.values().copied().collect();
    let cut = times.len() / 16;
    let (_, threshold, _) = times.select_nth_unstable(cut);
    let threshold = *threshold;
    tats.retain(|_, tat| *tat > threshold);
}

impl StateStore for BoundedStore {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut tats = self.lock();
        if let Some(tat) = tats.get_mut(key) {
            let (outcome, next) = f(Some(*tat))?;
            *tat = next;
            return Ok(outcome);
        }
        let (outcome, next) = f(None)?;
        if tats.len() >= MAX_TRACKED {
            evict_most_refilled(&mut tats);
        }
        tats.insert(*key, next);
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.lock().retain(|_, tat| *tat > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.lock().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

type Gcra<C> = RateLimiter<IpAddr, BoundedStore, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One GCRA limiter keyed by client address.
#[derive(Debug)]
pub(crate) struct Limiter<C: Clock = DefaultClock> {
    /// `None`: unlimited.
    gcra: Option<Gcra<C>>,
}

/// Refusal: when the next request would be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryAfter(pub Duration);

impl Limiter {
    /// A limiter admitting `per_minute` requests per minute per client (0: unlimited).
    #[must_use]
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter admitting `per_minute` requests per minute per client (0: unlimited), timed
    /// by `clock`.
    #[must_use]
    pub(crate) fn with_clock(per_minute: u32, clock: C) -> Self {
        Self {
            gcra: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::new(Quota::per_minute(n), BoundedStore::default(), clock)),
        }
    }

    /// Admits one request from `ip`.
    ///
    /// # Errors
    /// Its budget is spent: how long until a request is admitted.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        let Some(gcra) = &self.gcra else {
            return Ok(());
        };
        gcra.check_key(&client_key(ip))
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(gcra.clock().now())))
    }

    /// Drops the clients whose budget has refilled.
    pub(crate) fn retain_recent(&self) {
        if let Some(gcra) = &self.gcra {
            gcra.retain_recent();
            gcra.shrink_to_fit();
        }
    }

    /// Clients tracked now.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn tracked(&self) -> usize {
        self.gcra.as_ref().map_or(0, RateLimiter::len)
    }
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as
/// IPv4).
#[must_use]
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// The limiters of the server.
#[derive(Debug)]
pub(crate) struct RateLimits {
    /// Every REST request.
    pub rest: Limiter,
    /// Pairing claims (besides the REST budget).
    pub claim: Limiter,
    /// `/connect` attempts.
    pub connect: Limiter,
    /// Requests to `/federation/*` per address (instead of the REST budget), four times
    /// `federation.events_per_minute`: peer domains post far more than a client's REST calls;
    /// each peer is limited again, by domain, once its signature verified.
    pub federation: Limiter,
}

impl RateLimits {
    /// The limiters `settings` asks for.
    #[must_use]
    pub(crate) fn new(
        settings: &crate::config::RateLimitSettings,
        federation_per_minute: u32,
    ) -> Self {
        Self {
            rest: Limiter::per_minute(settings.rest_per_minute),
            claim: Limiter::per_minute(settings.claim_per_minute),
            connect: Limiter::per_minute(settings.connect_per_minute),
            // Four peers' budget per address: several peer domains may share one.
            federation: Limiter::per_minute(federation_per_minute.saturating_mul(4)),
        }
    }
}

/// Every `every`, drops from each limiter the clients whose budget has refilled, until the
/// task is aborted.
pub(crate) async fn sweep(rest: Arc<RestSettings>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let limits = &rest.rate_limits;
        for limiter in [&limits.rest, &limits.claim, &limits.connect] {
            limiter.retain_recent();
        }
    }
}

/// 429 problem with `retry-after` in whole seconds (at least 1).
#[must_use]
pub(crate) fn too_many_requests(retry: RetryAfter, what: &str) -> Response {
    let secs = retry.0.as_secs_f64().ceil().max(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = secs.min(86_400.0) as u64;
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many {what} from this address; retry in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn is_claim(path: &str) -> bool {
    matches!(path, "/api/pair/claim" | "/api/pairing/claim")
}

/// Middleware: applies the limiter of the request's path to its client address. Requests
/// without a known peer address (in-process tests) are not limited.
pub(crate) async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(PeerAddr(peer)) = request.extensions().get::<PeerAddr>().copied() else {
        return next.run(request).await;
    };
    let ip = peer.ip();
    let limits = &state.rest.rate_limits;
    let metrics = &state.sessions.hub().metrics;
    let path = request.uri().path();
    let refused = |counter: &Counter, retry, what| {
        counter.inc();
        too_many_requests(retry, what)
    };
    if path == "/connect" {
        if let Err(retry) = limits.connect.check(ip) {
            return refused(&metrics.rate_limited_connect, retry, "connection attempts");
        }
    } else if path.starts_with("/federation/") {
        if let Err(retry) = limits.federation.check(ip) {
            return refused(&metrics.rate_limited_rest, retry, "federation requests");
        }
    } else {
        if let Err(retry) = limits.rest.check(ip) {
            return refused(&metrics.rate_limited_rest, retry, "requests");
        }
        if is_claim(path)
            && let Err(retry) = limits.claim.check(ip)
        {
            return refused(&metrics.rate_limited_claim, retry, "pairing claims");
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use governor::clock::FakeRelativeClock;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn budget_per_client_then_even_refill() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(3, clock.clone());
        for _ in 0..3 {
            assert_eq!(limiter.check(A), Ok(()));
        }
        let RetryAfter(wait) = limiter.check(A).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        // Another client has its own budget.
        assert_eq!(limiter.check(B), Ok(()));
        // One request per 20 s comes back.
        clock.advance(Duration::from_secs(19));
        assert_eq!(limiter.check(A), Err(RetryAfter(Duration::from_secs(1))));
        clock.advance(Duration::from_secs(2));
        assert_eq!(limiter.check(A), Ok(()));
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check(A).is_err());
        // The budget never grows past one minute's worth.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(limiter.check(A), Ok(()));
        }
        assert!(limiter.check(A).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = Limiter::per_minute(0);
        for _ in 0..10_000 {
            assert_eq!(limiter.check(A), Ok(()));
        }
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn refilled_clients_are_swept() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(60, clock.clone());
        for i in 0..100u32 {
            limiter.check(IpAddr::V4(Ipv4Addr::from(i))).unwrap();
        }
        limiter.check(A).unwrap();
        assert_eq!(limiter.tracked(), 101);
        // Nothing has refilled yet: a sweep keeps everyone.
        limiter.retain_recent();
        assert_eq!(limiter.tracked(), 101);
        // After a minute all budgets are full again except A's, which keeps spending.
        clock.advance(Duration::from_secs(61));
        for _ in 0..30 {
            limiter.check(A).unwrap();
        }
        limiter.retain_recent();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(one), client_key(two));
        assert_ne!(client_key(one), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), A);
    }

    #[test]
    fn the_table_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(1, clock.clone());
        limiter.check(A).unwrap();
        // Every address spends its budget within the same minute; none is swept.
        for i in 0..(u32::try_from(MAX_TRACKED).unwrap() + 10) {
            clock.advance(Duration::from_micros(1));
            let _ = limiter.check(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert!(limiter.tracked() <= MAX_TRACKED);
        // The earliest clients were the ones dropped; the latest still have no budget.
        assert_eq!(limiter.check(A), Ok(()));
        assert!(
            limiter
                .check(IpAddr::V4(Ipv4Addr::from(
                    0x0a00_0000 + u32::try_from(MAX_TRACKED).unwrap() + 9
                )))
                .is_err()
        );
    }

    #[test]
    fn refusal_is_a_problem_with_retry_after() {
        let response = too_many_requests(RetryAfter(Duration::from_millis(1500)), "requests");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            super::super::problem::PROBLEM_JSON
        );
    }
}
