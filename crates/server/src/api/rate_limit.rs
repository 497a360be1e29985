//! Per-IP rate limits: token buckets holding one minute's budget, refilled evenly.
//!
//! Three limiters (`[rate_limits]`): every REST request, pairing claims on top of that, and
//! `/connect` attempts (which do not count against the REST budget). Clients are keyed by IP
//! address, IPv6 ones by their /64 (one subscriber's prefix). A refused request answers 429
//! `application/problem+json` with `retry-after` (whole seconds until a token is back).
//!
//! The table is bounded: when it holds [`MAX_TRACKED`] clients, buckets that have refilled
//! completely (idle clients) are dropped; if none has, the oldest-refilled is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::problem::Problem;
use crate::listener::http::PeerAddr;

/// Most clients one limiter tracks at once.
pub(crate) const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One token-bucket limiter keyed by client address.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// Bucket size: the per-minute budget (`None`: unlimited).
    capacity: Option<f64>,
    /// Tokens per second.
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Refusal: when the next request would be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryAfter(pub Duration);

impl Limiter {
    /// A limiter admitting `per_minute` requests per minute per client (0: unlimited).
    #[must_use]
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        let capacity = (per_minute > 0).then_some(f64::from(per_minute));
        Self {
            capacity,
            rate: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` at `now`.
    ///
    /// # Errors
    /// No token left: how long until one is.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let Some(capacity) = self.capacity else {
            return Ok(());
        };
        let key = client_key(ip);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            self.prune(&mut buckets, capacity, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(RetryAfter(Duration::from_secs_f64(wait.max(0.0))))
        }
    }

    fn prune(&self, buckets: &mut HashMap<IpAddr, Bucket>, capacity: f64, now: Instant) {
        let full_after = Duration::from_secs_f64(capacity / self.rate);
        buckets.retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
        if buckets.len() >= MAX_TRACKED
            && let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(ip, _)| *ip)
        {
            buckets.remove(&oldest);
        }
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
    let now = Instant::now();
    let limits = &state.rest.rate_limits;
    let metrics = &state.sessions.hub().metrics;
    let path = request.uri().path();
    let refused = |counter: &AtomicU64, retry, what| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        too_many_requests(retry, what)
    };
    if path == "/connect" {
        if let Err(retry) = limits.connect.check(ip, now) {
            return refused(&metrics.rate_limited_connect, retry, "connection attempts");
        }
    } else if path.starts_with("/federation/") {
        if let Err(retry) = limits.federation.check(ip, now) {
            return refused(&metrics.rate_limited_rest, retry, "federation requests");
        }
    } else {
        if let Err(retry) = limits.rest.check(ip, now) {
            return refused(&metrics.rate_limited_rest, retry, "requests");
        }
        if is_claim(path)
            && let Err(retry) = limits.claim.check(ip, now)
        {
            return refused(&metrics.rate_limited_claim, retry, "pairing claims");
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn budget_per_client_then_even_refill() {
        let limiter = Limiter::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(A, t0), Ok(()));
        }
        let RetryAfter(wait) = limiter.check(A, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        // Another client has its own budget.
        assert_eq!(limiter.check(B, t0), Ok(()));
        // One token per 20 s comes back.
        assert!(limiter.check(A, t0 + Duration::from_secs(19)).is_err());
        assert_eq!(limiter.check(A, t0 + Duration::from_secs(21)), Ok(()));
        assert!(limiter.check(A, t0 + Duration::from_secs(22)).is_err());
        // The bucket never holds more than the budget.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.check(A, later), Ok(()));
        }
        assert!(limiter.check(A, later).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = Limiter::per_minute(0);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.check(A, now), Ok(()));
        }
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
        let limiter = Limiter::per_minute(1);
        let now = Instant::now();
        for i in 0..(u32::try_from(MAX_TRACKED).unwrap() + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            let _ = limiter.check(ip, now);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED);
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
