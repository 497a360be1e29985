//! Counters of real events, rendered as Prometheus text for `GET /metrics` and as JSON for
//! `GET /api/security-stats`.
//!
//! Each counter is one relaxed atomic add on the event's path; nothing is sampled, estimated
//! or invented. Features the server does not implement (post-quantum handshakes, forward error
//! correction, multipath sessions, censorship detection) have no event that could be counted:
//! `/metrics` exports no series for them, and [`SecuritySnapshot`], whose fields the deployed
//! client requires, reports what is true of them (none happened).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use commucat_ccp::FrameType;

use crate::config::Bound;
use serde::Serialize;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram of fixed buckets (cumulative only when rendered).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket of [`LATENCY_BUCKETS`], plus one for larger values.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of all observations, microseconds.
    sum_micros: AtomicU64,
    /// Number of observations.
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        if let Some(last) = self.buckets.last() {
            cumulative += last.load(Ordering::Relaxed);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let sum = sum as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// Frames counted per wire code.
#[derive(Debug)]
pub struct PerFrameType([AtomicU64; 256]);

impl Default for PerFrameType {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl PerFrameType {
    /// Counts one frame of `frame_type`.
    pub fn count(&self, frame_type: FrameType) {
        if let Some(slot) = self.0.get(usize::from(frame_type.code())) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frames counted for `frame_type`.
    #[must_use]
    pub fn get(&self, frame_type: FrameType) -> u64 {
        self.0
            .get(usize::from(frame_type.code()))
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Device handshakes that ended with the final ACK (each is one completed Noise handshake).
    pub handshakes_ok: AtomicU64,
    /// Device handshakes that failed (any reason, including timeouts).
    pub handshakes_failed: AtomicU64,
    /// Completed handshakes that established a `pq-hybrid` session (ML-KEM-768 exchange and
    /// ML-DSA-65 transcript signature verified); a subset of `handshakes_ok`.
    pub pq_handshakes: AtomicU64,
    /// Established sessions started.
    pub sessions_opened: AtomicU64,
    /// Established sessions running now.
    pub sessions_active: AtomicI64,
    /// Frames handed to a connected recipient's session (one per recipient).
    pub frames_delivered: AtomicU64,
    /// TCP connections accepted.
    pub connections_accepted: AtomicU64,
    /// TCP connections open now.
    pub connections_open: AtomicI64,
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
    pub p2p_assists: AtomicU64,
    /// Requests refused with 429, by limiter.
    pub rate_limited_rest: AtomicU64,
    /// Claims refused with 429.
    pub rate_limited_claim: AtomicU64,
    /// `/connect` attempts refused with 429.
    pub rate_limited_connect: AtomicU64,
    /// Requests refused because they would exceed a `[bounds]` setting, by bound.
    pub bound_refusals: BoundRefusals,
    /// Undelivered frames of an ending session that the store could not take even after
    /// retrying (their senders had been ACKed).
    pub requeue_lost: AtomicU64,
    /// IK handshakes refused because their message-1 ephemeral had been accepted before.
    pub handshake_replays: AtomicU64,
    /// IK replay-cache entries dropped before their retention ended because the cache was full.
    pub ik_replay_evictions: AtomicU64,
    /// Frames refused because a sender field named another device, by type.
    pub sender_mismatches: PerFrameType,
    /// Calls ended because nobody answered within `bounds.call_ring_timeout`.
    pub calls_unanswered: AtomicU64,
}

/// Refusals counted per [`Bound`].
#[derive(Debug)]
pub struct BoundRefusals([AtomicU64; Bound::ALL.len()]);

impl Default for BoundRefusals {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl BoundRefusals {
    /// Counts one refusal by `bound`.
    pub fn count(&self, bound: Bound) {
        if let Some(slot) = self.0.get(bound.index()) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals by `bound` so far.
    #[must_use]
    pub fn get(&self, bound: Bound) -> u64 {
        self.0
            .get(bound.index())
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }
}

/// Decrements a gauge when dropped.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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

/// The security counters as JSON (`GET /api/security-stats`, and the `security` section of
/// `/api/p2p/assist`). The deployed client requires every field with its type, so the fields of
/// features the server does not implement stay, documented as not measured, with the value
/// that is true of this server; `/metrics` has no series for them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SecuritySnapshot {
    /// Completed Noise handshakes (XK or IK, ending with the final ACK).
    pub noise_handshakes: u64,
    /// Completed handshakes that established a `pq-hybrid` session (hybrid ML-KEM-768 key
    /// exchange, ML-DSA-65 transcript signature verified).
    pub pq_handshakes: u64,
    /// Not measured: the server implements no forward error correction and sends no FEC
    /// packets: always 0.
    pub fec_packets: u64,
    /// Not measured: every session runs over its one `/connect` stream; no session is
    /// multipath: always 0. (`/api/p2p/assist` answers are advice and are not counted here.)
    pub multipath_sessions: u64,
    /// Paths per session: 1 once a session has been established (each runs over its one
    /// `/connect` stream), 0 before.
    pub average_paths: f64,
    /// Not measured: the server detects no censorship and switches no transport: always 0.
    pub censorship_deflections: u64,
}

impl Metrics {
    /// Counts a handshake outcome; a successful one also records how long it took.
    pub fn handshake(&self, ok: bool, elapsed: Duration) {
        if ok {
            self.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            self.handshake_latency.observe(elapsed);
        } else {
            self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a completed `pq-hybrid` handshake (also counted by [`Metrics::handshake`]).
    pub fn pq_handshake(&self) {
        self.pq_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session start; the session counts as active until the guard is dropped.
    #[must_use]
    pub fn session_started(&self) -> GaugeGuard<'_> {
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.sessions_active.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(&self.sessions_active)
    }

    /// Counts an accepted connection; it counts as open until the guard is dropped.
    #[must_use]
    pub fn connection_accepted(&self) -> GaugeGuard<'_> {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(&self.connections_open)
    }

    /// Counts frames handed to connected recipients.
    pub fn delivered(&self, frames: u64) {
        if frames > 0 {
            self.frames_delivered.fetch_add(frames, Ordering::Relaxed);
        }
    }

    /// Counts one `/api/p2p/assist` answer.
    pub fn p2p_assist(&self) {
        self.p2p_assists.fetch_add(1, Ordering::Relaxed);
    }

    /// The security counters now.
    #[must_use]
    pub fn security(&self) -> SecuritySnapshot {
        let sessions = self.sessions_opened.load(Ordering::Relaxed);
        SecuritySnapshot {
            noise_handshakes: self.handshakes_ok.load(Ordering::Relaxed),
            pq_handshakes: self.pq_handshakes.load(Ordering::Relaxed),
            fec_packets: 0,
            multipath_sessions: 0,
            average_paths: if sessions == 0 { 0.0 } else { 1.0 },
            censorship_deflections: 0,
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter. `sender_checked`: the
    /// frame types whose sender fields the sessions check (the labels of
    /// `commucat_sender_mismatches_total`).
    #[must_use]
    pub fn render(
        &self,
        gauges: Gauges,
        ledger: LedgerCounts,
        sender_checked: &[FrameType],
    ) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        let gauge = |c: &AtomicI64| c.load(Ordering::Relaxed).to_string();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "commucat_handshakes_total",
            "counter",
            "Device handshakes by result.",
            &[
                ("{result=\"ok\"}", get(&self.handshakes_ok)),
                ("{result=\"failed\"}", get(&self.handshakes_failed)),
            ],
        );
        family(
            "commucat_sessions_opened_total",
            "counter",
            "Established sessions started.",
            &[("", get(&self.sessions_opened))],
        );
        family(
            "commucat_sessions_active",
            "gauge",
            "Established sessions running now.",
            &[("", gauge(&self.sessions_active))],
        );
        family(
            "commucat_frames_delivered_total",
            "counter",
            "Frames handed to a connected recipient's session, one per recipient.",
            &[("", get(&self.frames_delivered))],
        );
        family(
            "commucat_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
            &[("", get(&self.connections_accepted))],
        );
        family(
            "commucat_connections_open",
            "gauge",
            "TCP connections open now.",
            &[("", gauge(&self.connections_open))],
        );
        let by_type = |counts: &PerFrameType| -> Vec<(String, String)> {
            FrameType::ALL
                .iter()
                .map(|t| {
                    (
                        format!("{{type=\"{}\"}}", t.label()),
                        counts.get(*t).to_string(),
                    )
                })
                .collect()
        };
        let frames_in = by_type(&self.frames_in);
        let frames_out = by_type(&self.frames_out);
        family(
            "commucat_frames_received_total",
            "counter",
            "Frames received from clients (handshakes and established sessions), by type.",
            &as_refs(&frames_in),
        );
        family(
            "commucat_frames_sent_total",
            "counter",
            "Frames sent to clients (handshakes and established sessions), by type.",
            &as_refs(&frames_out),
        );
        family(
            "commucat_mailbox_frames",
            "gauge",
            "Frames waiting in the mailboxes of connected sessions.",
            &[("", gauges.mailbox_frames.to_string())],
        );
        family(
            "commucat_online_devices",
            "gauge",
            "Devices with a connected session on this node.",
            &[("", gauges.online_devices.to_string())],
        );
        family(
            "commucat_channels",
            "gauge",
            "Channels held in this node's routing tables (freed once no member is connected).",
            &[("", gauges.channels.to_string())],
        );
        family(
            "commucat_rate_limited_total",
            "counter",
            "Requests refused with 429, by limiter.",
            &[
                ("{limiter=\"rest\"}", get(&self.rate_limited_rest)),
                ("{limiter=\"claim\"}", get(&self.rate_limited_claim)),
                ("{limiter=\"connect\"}", get(&self.rate_limited_connect)),
            ],
        );
        family(
            "commucat_handshake_replays_refused_total",
            "counter",
            "IK handshakes refused because their message-1 ephemeral had been accepted before.",
            &[("", get(&self.handshake_replays))],
        );
        family(
            "commucat_ik_replay_evictions_total",
            "counter",
            "IK replay-cache entries dropped before their retention because the cache was full.",
            &[("", get(&self.ik_replay_evictions))],
        );
        family(
            "commucat_ledger_records_written_total",
            "counter",
            "Audit ledger records written to the sink.",
            &[("", ledger.written.to_string())],
        );
        family(
            "commucat_ledger_records_dropped_total",
            "counter",
            "Audit ledger records dropped because the queue was full.",
            &[("", ledger.dropped.to_string())],
        );
        family(
            "commucat_p2p_assists_total",
            "counter",
            "Answers of /api/p2p/assist.",
            &[("", get(&self.p2p_assists))],
        );
        family(
            "commucat_security_noise_handshakes_total",
            "counter",
            "Completed Noise handshakes.",
            &[("", get(&self.handshakes_ok))],
        );
        family(
            "commucat_security_pq_handshakes_total",
            "counter",
            "Completed pq-hybrid handshakes (ML-KEM-768 exchange, ML-DSA-65 transcript signature).",
            &[("", get(&self.pq_handshakes))],
        );
        let refusals: Vec<(String, String)> = Bound::ALL
            .iter()
            .map(|&bound| {
                (
                    format!("{{bound=\"{}\"}}", bound.name()),
                    self.bound_refusals.get(bound).to_string(),
                )
            })
            .collect();
        family(
            "commucat_bound_refusals_total",
            "counter",
            "Requests refused because they would exceed a [bounds] setting, by bound.",
            &as_refs(&refusals),
        );
        family(
            "commucat_requeue_lost_total",
            "counter",
            "Undelivered frames of an ending session the store could not take after retrying.",
            &[("", get(&self.requeue_lost))],
        );
        let mismatches: Vec<(String, String)> = sender_checked
            .iter()
            .map(|&t| {
                (
                    format!("{{type=\"{}\"}}", t.label()),
                    self.sender_mismatches.get(t).to_string(),
                )
            })
            .collect();
        family(
            "commucat_sender_mismatches_total",
            "counter",
            "Frames refused because a sender field named another device, by type.",
            &as_refs(&mismatches),
        );
        family(
            "commucat_calls_unanswered_total",
            "counter",
            "Calls ended because nobody answered within bounds.call_ring_timeout.",
            &[("", get(&self.calls_unanswered))],
        );
        self.handshake_latency.render(
            &mut out,
            "commucat_handshake_duration_seconds",
            "Time from the start of a /connect handshake to its final ACK.",
        );
        self.relay_latency.render(
            &mut out,
            "commucat_relay_latency_seconds",
            "Time from a frame's arrival from its sender to its write to a connected recipient.",
        );
        out
    }
}

fn as_refs(samples: &[(String, String)]) -> Vec<(&str, String)> {
    samples
        .iter()
        .map(|(labels, value)| (labels.as_str(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::default();
        m.handshake(true, Duration::from_millis(3));
        m.handshake(true, Duration::from_secs(10));
        m.pq_handshake();
        m.handshake(false, Duration::from_millis(1));
        m.frames_in.count(FrameType::Msg);
        m.frames_out.count(FrameType::Ack);
        m.frames_out.count(FrameType::Ack);
        m.p2p_assist();
        m.p2p_assist();
        m.bound_refusals.count(Bound::ChannelMembers);
        m.sender_mismatches.count(FrameType::CallOffer);
        m.calls_unanswered.fetch_add(1, Ordering::Relaxed);
        {
            let _a = m.session_started();
            let _b = m.session_started();
            let _c = m.connection_accepted();
            m.delivered(3);
            assert_eq!(m.sessions_active.load(Ordering::Relaxed), 2);
        }
        let text = m.render(
            Gauges {
                mailbox_frames: 4,
                online_devices: 1,
                channels: 3,
            },
            LedgerCounts {
                written: 7,
                dropped: 2,
            },
            &[FrameType::CallOffer, FrameType::Typing],
        );
        for line in [
            "# TYPE commucat_handshakes_total counter",
            "commucat_handshakes_total{result=\"ok\"} 2",
            "commucat_handshakes_total{result=\"failed\"} 1",
            "commucat_sessions_opened_total 2",
            "# TYPE commucat_sessions_active gauge",
            "commucat_sessions_active 0",
            "commucat_frames_delivered_total 3",
            "commucat_connections_accepted_total 1",
            "commucat_connections_open 0",
            "commucat_frames_received_total{type=\"msg\"} 1",
            "commucat_frames_sent_total{type=\"ack\"} 2",
            "commucat_frames_sent_total{type=\"msg\"} 0",
            "commucat_mailbox_frames 4",
            "commucat_channels 3",
            "# TYPE commucat_ledger_records_written_total counter",
            "commucat_ledger_records_written_total 7",
            "commucat_ledger_records_dropped_total 2",
            "commucat_security_noise_handshakes_total 2",
            "commucat_p2p_assists_total 2",
            "# TYPE commucat_handshake_duration_seconds histogram",
            "commucat_handshake_duration_seconds_bucket{le=\"0.0025\"} 0",
            "commucat_handshake_duration_seconds_bucket{le=\"0.005\"} 1",
            "commucat_handshake_duration_seconds_bucket{le=\"2.5\"} 1",
            "commucat_handshake_duration_seconds_bucket{le=\"+Inf\"} 2",
            "commucat_handshake_duration_seconds_sum 10.003",
            "commucat_handshake_duration_seconds_count 2",
            "commucat_relay_latency_seconds_count 0",
            "commucat_bound_refusals_total{bound=\"channel_members\"} 1",
            "commucat_bound_refusals_total{bound=\"calls_per_session\"} 0",
            "commucat_sender_mismatches_total{type=\"call_offer\"} 1",
            "commucat_sender_mismatches_total{type=\"typing\"} 0",
            "commucat_calls_unanswered_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l == "commucat_security_pq_handshakes_total 1"),
            "{text}"
        );
        for unmeasured in ["fec_packets", "multipath", "average_paths", "censorship"] {
            assert!(!text.contains(unmeasured), "{unmeasured} exported:\n{text}");
        }
        let security = m.security();
        assert_eq!(
            (
                security.noise_handshakes,
                security.pq_handshakes,
                security.multipath_sessions,
                security.average_paths
            ),
            (2, 1, 0, 1.0)
        );
    }
}
