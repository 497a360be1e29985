//! Delivery of the outbox: one worker per active peer sends its events with
//! `POST <endpoint>/federation/events` over one HTTPS client (HTTP/2 when the peer offers it
//! in ALPN; the connection is kept and reused).
//!
//! Order: events of one (peer, channel) go out one at a time in outbox order; an event that
//! fails blocks its channel (the later events of that channel wait) until a retry succeeds,
//! while other channels go on. Retries back off exponentially (0.5 s doubling up to
//! `federation.max_backoff`) with jitter (a random 50–100 % of the step), per channel.
//!
//! Answers: 2xx (including the reference's `duplicate`) → delivered, deleted. A definitive
//! refusal (400, 404, 409, 410, 413, 422: the event itself is wrong for the peer) → dropped,
//! counted and ledgered, so one bad event does not hold its channel until it expires. Anything
//! else (network errors, timeouts, 401/403 — a key not yet pinned on the peer's side —, 408,
//! 429, 5xx) → retried. The receiver's event-id record makes a resend after a lost answer
//! harmless.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use commucat_keys::{OsRng, RngCore};
use commucat_store::{OutboxEvent, Store};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Counters, Federation};
use crate::clock::unix_now;
use crate::config::PeerStatus;
use crate::ledger::Ledger;

/// Events read from the outbox per round.
pub const BATCH: u32 = 64;
/// First retry pause.
pub const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// How long an idle worker sleeps before looking at its outbox again without a wake-up.
pub const IDLE_POLL: Duration = Duration::from_secs(30);
/// Longest one delivery request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest error text kept per event.
const MAX_ERROR_LEN: usize = 300;

/// Why the delivery clients could not be built.
#[derive(Debug, thiserror::Error)]
#[error("federation peer {domain}: {reason}")]
pub struct ClientError {
    /// The peer.
    pub domain: String,
    /// What failed.
    pub reason: String,
}

/// One delivery worker's state.
#[derive(Debug)]
pub struct Worker {
    federation: Arc<Federation>,
    store: Arc<dyn Store>,
    ledger: Ledger,
    domain: String,
    url: String,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

/// The workers for every active peer of `federation` (pending and blocked peers are never
/// contacted).
///
/// # Errors
/// A peer's `ca_file` cannot be read or holds no certificate, or the client cannot be built.
pub fn workers(
    federation: &Arc<Federation>,
    store: &Arc<dyn Store>,
    ledger: &Ledger,
) -> Result<Vec<Worker>, ClientError> {
    if !federation.enabled() {
        return Ok(Vec::new());
    }
    let mut workers = Vec::new();
    for peer in federation.peers() {
        if peer.config.status != PeerStatus::Active {
            continue;
        }
        let domain = peer.config.domain.clone();
        let client = client(&peer.config)?;
        let Some(wake) = federation.wake_handle(&domain) else {
            continue;
        };
        workers.push(Worker {
            federation: Arc::clone(federation),
            store: Arc::clone(store),
            ledger: ledger.clone(),
            url: format!("{}/federation/events", peer.config.endpoint),
            domain,
            client,
            wake,
        });
    }
    Ok(workers)
}

/// The HTTPS client for `peer`: verified TLS (the system roots, or only the peer's
/// `ca_file`), no redirects, bounded timeouts, connections kept for reuse.
///
/// # Errors
/// The `ca_file` cannot be read or holds no certificate, or the client cannot be built.
pub fn client(peer: &crate::config::PeerConfig) -> Result<reqwest::Client, ClientError> {
    let fail = |reason: String| ClientError {
        domain: peer.domain.clone(),
        reason,
    };
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90));
    if let Some(path) = &peer.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| fail(format!("ca_file {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| fail(format!("ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(fail(format!(
                "ca_file {} holds no certificate",
                path.display()
            )));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| fail(e.to_string()))
}

/// What one delivery attempt came to.
#[derive(Debug)]
enum Attempt {
    Delivered,
    Refused(u16, String),
    Retry(String),
}

/// Backoff of one channel.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

impl Worker {
    /// The peer this worker delivers to.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Delivers until the task is aborted.
    pub async fn run(self) {
        let mut backoff: HashMap<u32, Backoff> = HashMap::new();
        loop {
            let batch = match self
                .store
                .outbox_batch(&self.domain, unix_now(), BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(peer = %self.domain, error = %e, "federation outbox unreadable; retrying");
                    self.pause(Some(Instant::now() + Duration::from_secs(1)))
                        .await;
                    continue;
                }
            };
            if batch.is_empty() {
                backoff.clear();
                self.federation.set_next_attempt(&self.domain, None);
                self.pause(None).await;
                continue;
            }
            let mut blocked: HashSet<u32> = HashSet::new();
            let mut progressed = false;
            for event in batch {
                let channel = event.channel_id;
                if blocked.contains(&channel) {
                    continue;
                }
                if backoff
                    .get(&channel)
                    .is_some_and(|b| b.until > Instant::now())
                {
                    blocked.insert(channel);
                    continue;
                }
                match self.attempt(&event).await {
                    Attempt::Delivered => {
                        Counters::bump(&self.federation.counters.sent);
                        if let Some(seconds) = age_seconds(&event.body) {
                            self.federation.counters.delivered_after(seconds);
                        }
                        self.finish(&event).await;
                        backoff.remove(&channel);
                        progressed = true;
                    }
                    Attempt::Refused(status, detail) => {
                        Counters::bump(&self.federation.counters.dropped);
                        tracing::warn!(peer = %self.domain, event_id = %event.event_id, status, %detail, "peer refused a federation event; dropped");
                        self.ledger.record("federation", || {
                            serde_json::json!({
                                "direction": "outbound",
                                "peer": self.domain,
                                "event_id": event.event_id,
                                "status": status,
                                "detail": detail,
                                "outcome": "dropped",
                            })
                        });
                        self.finish(&event).await;
                        backoff.remove(&channel);
                        progressed = true;
                    }
                    Attempt::Retry(error) => {
                        Counters::bump(&self.federation.counters.retries);
                        tracing::debug!(peer = %self.domain, event_id = %event.event_id, %error, "federation delivery failed; will retry");
                        if let Err(e) = self
                            .store
                            .outbox_failed(event.outbox_id, &error, unix_now())
                            .await
                        {
                            tracing::warn!(peer = %self.domain, error = %e, "could not record a failed delivery");
                        }
                        let failures = backoff.get(&channel).map_or(0, |b| b.failures) + 1;
                        let pause = self.backoff_for(failures);
                        backoff.insert(
                            channel,
                            Backoff {
                                failures,
                                until: Instant::now() + pause,
                            },
                        );
                        blocked.insert(channel);
                    }
                }
            }
            let next = backoff.values().map(|b| b.until).min();
            self.federation
                .set_next_attempt(&self.domain, next.map(unix_at));
            if !progressed {
                self.pause(next).await;
            }
        }
    }

    /// Deletes a delivered or dropped event (a failure only means it is sent again, and the
    /// receiver's event-id record answers `duplicate`).
    async fn finish(&self, event: &OutboxEvent) {
        if let Err(e) = self.store.outbox_done(event.outbox_id).await {
            tracing::warn!(peer = %self.domain, event_id = %event.event_id, error = %e, "could not delete a delivered federation event; it will be sent again");
        }
    }

    /// Waits for a wake-up, or until `until` (or [`IDLE_POLL`]).
    async fn pause(&self, until: Option<Instant>) {
        let deadline = until.unwrap_or_else(|| Instant::now() + IDLE_POLL);
        let _ = tokio::time::timeout_at(deadline, self.wake.notified()).await;
    }

    /// The pause after the `failures`-th failure in a row: exponential, capped, jittered.
    fn backoff_for(&self, failures: u32) -> Duration {
        let cap = self.federation.settings().max_backoff;
        let step = BASE_BACKOFF
            .checked_mul(1_u32 << failures.saturating_sub(1).min(20))
            .unwrap_or(cap)
            .min(cap);
        // A random 50–100 % of the step.
        let jitter = f64::from(OsRng.next_u32() % 1000) / 2000.0 + 0.5;
        step.mul_f64(jitter)
    }

    async fn attempt(&self, event: &OutboxEvent) -> Attempt {
        let sent = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(event.body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::Retry(clip(&format!("{e:#}"))),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        let detail = response.text().await.unwrap_or_default();
        let detail = clip(&format!("{status}: {detail}"));
        match status.as_u16() {
            400 | 404 | 409 | 410 | 413 | 422 => Attempt::Refused(status.as_u16(), detail),
            _ => Attempt::Retry(detail),
        }
    }
}

/// The unix time (seconds, rounded up) of the instant `at`.
fn unix_at(at: Instant) -> i64 {
    let ahead = at.saturating_duration_since(Instant::now());
    unix_now().saturating_add(
        i64::try_from(ahead.as_secs())
            .unwrap_or(i64::MAX)
            .saturating_add(1),
    )
}

/// The signed `created_at` of an event body, as seconds before now; `None` if the body does
/// not carry one (the outbox holds only bodies this server signed, so it always does).
fn age_seconds(body: &[u8]) -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct Created {
        created_at: String,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        event: Created,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    let created = super::event::created_at_nanos(&body.event.created_at)?;
    #[allow(clippy::cast_precision_loss)]
    let seconds = crate::clock::unix_nanos_now().saturating_sub(created) as f64 / 1e9;
    Some(seconds)
}

/// `text` cut to [`MAX_ERROR_LEN`] bytes (at a character boundary).
fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}
