//! Counters of real events, exposed by `GET /metrics` ([`exposition`]: Prometheus text 0.0.4 or
//! OpenMetrics 1.0, encoded by the `prometheus-client` crate) and as JSON by
//! `GET /api/security-stats` ([`security`]).
//!
//! Each counter is one `prometheus-client` metric handle (an atomic add on the event's path);
//! nothing is sampled, estimated or invented. Features the server does not implement
//! (forward error correction, multipath sessions) have no event that could be counted: `/metrics` exports no series for them, and
//! [`SecuritySnapshot`], whose fields the deployed client requires, reports what is true of them
//! (none happened).

pub(crate) mod exposition;
mod security;
#[cfg(test)]
mod tests;

use std::time::Duration;

use commucat_ccp::FrameType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::Bound;

pub(crate) use exposition::Format;
pub(crate) use security::SecuritySnapshot;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram over [`LATENCY_BUCKETS`] (seconds).
#[derive(Debug, Clone)]
pub struct Histogram(prometheus_client::metrics::histogram::Histogram);

impl Default for Histogram {
    fn default() -> Self {
        Self(prometheus_client::metrics::histogram::Histogram::new(
            LATENCY_BUCKETS,
        ))
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        self.0.observe(value.as_secs_f64());
    }
}

/// Frames counted per wire code.
#[derive(Debug)]
pub struct PerFrameType([Counter; 256]);

impl Default for PerFrameType {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Counter::default()))
    }
}

impl PerFrameType {
    /// Counts one frame of `frame_type`.
    pub fn count(&self, frame_type: FrameType) {
        if let Some(counter) = self.0.get(usize::from(frame_type.code())) {
            counter.inc();
        }
    }

    /// Frames counted for `frame_type`.
    #[must_use]
    pub fn get(&self, frame_type: FrameType) -> u64 {
        self.handle(frame_type).map_or(0, Counter::get)
    }

    fn handle(&self, frame_type: FrameType) -> Option<&Counter> {
        self.0.get(usize::from(frame_type.code()))
    }
}

/// Refusals counted per [`Bound`].
#[derive(Debug)]
pub struct BoundRefusals([Counter; Bound::ALL.len()]);

impl Default for BoundRefusals {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Counter::default()))
    }
}

impl BoundRefusals {
    /// Counts one refusal by `bound`.
    pub fn count(&self, bound: Bound) {
        if let Some(counter) = self.0.get(bound.index()) {
            counter.inc();
        }
    }

    /// Refusals by `bound` so far.
    #[must_use]
    pub fn get(&self, bound: Bound) -> u64 {
        self.handle(bound).map_or(0, Counter::get)
    }

    fn handle(&self, bound: Bound) -> Option<&Counter> {
        self.0.get(bound.index())
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Device handshakes that ended with the final ACK (each is one completed Noise handshake).
    pub handshakes_ok: Counter,
    /// Device handshakes that failed (any reason, including timeouts).
    pub handshakes_failed: Counter,
    /// Completed handshakes that established a `pq-hybrid` session (ML-KEM-768 exchange and
    /// ML-DSA-65 transcript signature verified); a subset of `handshakes_ok`.
    pub pq_handshakes: Counter,
    /// FEC symbols (source and repair) the server generated for sessions that negotiated `fec`.
    pub fec_packets: Counter,
    /// Established sessions started.
    pub sessions_opened: Counter,
    /// Established sessions running now.
    pub sessions_active: Gauge,
    /// Frames handed to a connected recipient's session (one per recipient).
    pub frames_delivered: Counter,
    /// TCP connections accepted.
    pub connections_accepted: Counter,
    /// TCP connections open now.
    pub connections_open: Gauge,
    /// Frames received from clients, by type: handshake frames (HELLO, AUTH) and those of
    /// established sessions.
    pub frames_in: PerFrameType,
    /// Frames sent to clients, by type: handshake frames (AUTH, ACK, ERROR) and those of
    /// established sessions.
    pub frames_out: PerFrameType,
    /// Time from the start of a `/connect` handshake to its final ACK (successful ones).
    pub handshake_latency: Histogram,
    /// Time from a frame's arrival from its sender to its write to a connected recipient.
    pub relay_latency: Histogram,
    /// `/api/p2p/assist` answers.
    pub p2p_assists: Counter,
    /// REST requests refused with 429.
    pub rate_limited_rest: Counter,
    /// Claims refused with 429.
    pub rate_limited_claim: Counter,
    /// `/connect` attempts refused with 429.
    pub rate_limited_connect: Counter,
    /// Requests refused because they would exceed a `[bounds]` setting, by bound.
    pub bound_refusals: BoundRefusals,
    /// Undelivered frames of an ending session that the store could not take even after
    /// retrying (their senders had been ACKed).
    pub requeue_lost: Counter,
    /// IK handshakes refused because their message-1 ephemeral had been accepted before.
    pub handshake_replays: Counter,
    /// IK replay-cache entries dropped before their retention ended because the cache was full.
    pub ik_replay_evictions: Counter,
    /// Frames refused because a sender field named another device, by type.
    pub sender_mismatches: PerFrameType,
    /// Calls ended because nobody answered within `bounds.call_ring_timeout`.
    pub calls_unanswered: Counter,
    /// Client networks that completed a handshake on one transport shortly after failing on
    /// another (`crate::transport`).
    pub censorship_deflections: Counter,
    /// Completed handshakes whose session wraps frames in `adaptive-obf` packets.
    pub obf_sessions: Counter,
    /// `adaptive-obf` sessions ended because a wrapper failed its check
    /// (`IntegrityCheckFailed`).
    pub obf_integrity_failures: Counter,
}

/// Decrements a gauge when dropped.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Values read from the routing tables when the metrics are rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Frames waiting in the mailboxes of connected sessions.
    pub mailbox_frames: u64,
    /// Devices with a registered (online) session.
    pub online_devices: u64,
    /// Channel entries in the routing tables.
    pub channels: u64,
}

/// The audit ledger's counters ([`crate::ledger::Ledger::written`] and
/// [`crate::ledger::Ledger::dropped`]), read when the metrics are rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerCounts {
    /// Records written to the sink.
    pub written: u64,
    /// Records dropped because the queue was full.
    pub dropped: u64,
}

impl LedgerCounts {
    /// The counters of `ledger` now (zero when it is off).
    #[must_use]
    pub fn of(ledger: &crate::ledger::Ledger) -> Self {
        Self {
            written: ledger.written(),
            dropped: ledger.dropped(),
        }
    }
}

impl Metrics {
    /// Counts a handshake outcome; a successful one also records how long it took.
    pub fn handshake(&self, ok: bool, elapsed: Duration) {
        if ok {
            self.handshakes_ok.inc();
            self.handshake_latency.observe(elapsed);
        } else {
            self.handshakes_failed.inc();
        }
    }

    /// Counts a completed handshake of an `adaptive-obf` session.
    pub fn obf_session(&self) {
        self.obf_sessions.inc();
    }

    /// Counts a completed `pq-hybrid` handshake (also counted by [`Metrics::handshake`]).
    pub fn pq_handshake(&self) {
        self.pq_handshakes.inc();
    }

    /// Counts a session start; the session counts as active until the guard is dropped.
    #[must_use]
    pub fn session_started(&self) -> GaugeGuard<'_> {
        self.sessions_opened.inc();
        self.sessions_active.inc();
        GaugeGuard(&self.sessions_active)
    }

    /// Counts an accepted connection; it counts as open until the guard is dropped.
    #[must_use]
    pub fn connection_accepted(&self) -> GaugeGuard<'_> {
        self.connections_accepted.inc();
        self.connections_open.inc();
        GaugeGuard(&self.connections_open)
    }

    /// Counts frames handed to connected recipients.
    pub fn delivered(&self, frames: u64) {
        if frames > 0 {
            self.frames_delivered.inc_by(frames);
        }
    }

    /// Counts one censorship deflection.
    pub fn censorship_deflection(&self) {
        self.censorship_deflections.inc();
    }

    /// Counts one `/api/p2p/assist` answer.
    pub fn p2p_assist(&self) {
        self.p2p_assists.inc();
    }
}
