//! `GET /metrics`: the counters encoded by `prometheus-client`, in the Prometheus text format
//! 0.0.4 (the default) or OpenMetrics 1.0 text (when the scraper's `Accept` asks for
//! `application/openmetrics-text`, as Prometheus does).
//!
//! A registry is assembled per scrape from the metric handles (cheap clones of the same
//! atomics the event paths update) and the values read at scrape time (routing-table gauges,
//! ledger counters), so every family is listed in one place, in a fixed order.

use commucat_ccp::FrameType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::{Gauges, LedgerCounts, Metrics, PerFrameType};
use crate::config::Bound;

/// Content type of the Prometheus text format 0.0.4.
pub(crate) const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Content type of the OpenMetrics 1.0 text format.
pub(crate) const OPENMETRICS_TEXT: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition format of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: counters' `# TYPE` lines name the `_total` series.
    Prometheus,
    /// OpenMetrics 1.0 text: `# UNIT` lines, family names without `_total`, ends with `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it lists
    /// `application/openmetrics-text` (with a non-zero quality), else Prometheus text.
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of the format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => PROMETHEUS_TEXT,
            Self::OpenMetrics => OPENMETRICS_TEXT,
        }
    }
}

/// A counter family with one fixed label whose series are existing handles.
#[derive(Debug)]
struct Labeled {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    series: Vec<(&'static str, Counter)>,
}

impl Collector for Labeled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
        for (value, counter) in &self.series {
            let labels = [(self.label, *value)];
            counter.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4) of every counter; see [`Metrics::encode`].
    ///
    /// # Errors
    /// The encoder failed (it writes to a string; only a malformed metric makes it fail).
    pub fn render(
        &self,
        gauges: Gauges,
        ledger: LedgerCounts,
        sender_checked: &[FrameType],
    ) -> Result<String, std::fmt::Error> {
        self.encode(Format::Prometheus, gauges, ledger, sender_checked)
    }

    /// The exposition of every counter in `format`. `sender_checked`: the frame types whose
    /// sender fields the sessions check (the labels of `commucat_sender_mismatches_total`).
    ///
    /// # Errors
    /// The encoder failed (it writes to a string; only a malformed metric makes it fail).
    pub fn encode(
        &self,
        format: Format,
        gauges: Gauges,
        ledger: LedgerCounts,
        sender_checked: &[FrameType],
    ) -> Result<String, std::fmt::Error> {
        self.encode_with(format, gauges, ledger, sender_checked, |_| {})
    }

    /// [`Metrics::encode`] with more families: `extra` registers them after the server's own
    /// (federation's, read at scrape time).
    ///
    /// # Errors
    /// The encoder failed (it writes to a string; only a malformed metric makes it fail).
    pub fn encode_with(
        &self,
        format: Format,
        gauges: Gauges,
        ledger: LedgerCounts,
        sender_checked: &[FrameType],
        extra: impl FnOnce(&mut Registry),
    ) -> Result<String, std::fmt::Error> {
        let mut registry = self.registry(gauges, ledger, sender_checked);
        extra(&mut registry);
        let mut out = String::new();
        match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        }
        Ok(out)
    }

    /// Every family, in exposition order. Help texts end without a period: the registry adds
    /// one (collectors' help texts carry their own).
    fn registry(
        &self,
        gauges: Gauges,
        ledger: LedgerCounts,
        sender_checked: &[FrameType],
    ) -> Registry {
        let mut r = Registry::default();
        r.register_collector(Box::new(Labeled {
            name: "commucat_handshakes",
            help: "Device handshakes by result.",
            label: "result",
            series: vec![
                ("ok", self.handshakes_ok.clone()),
                ("failed", self.handshakes_failed.clone()),
            ],
        }));
        r.register(
            "commucat_sessions_opened",
            "Established sessions started",
            self.sessions_opened.clone(),
        );
        r.register(
            "commucat_sessions_active",
            "Established sessions running now",
            self.sessions_active.clone(),
        );
        r.register(
            "commucat_frames_delivered",
            "Frames handed to a connected recipient's session, one per recipient",
            self.frames_delivered.clone(),
        );
        r.register(
            "commucat_connections_accepted",
            "TCP connections accepted",
            self.connections_accepted.clone(),
        );
        r.register(
            "commucat_connections_open",
            "TCP connections open now",
            self.connections_open.clone(),
        );
        r.register_collector(Box::new(by_type(
            "commucat_frames_received",
            "Frames received from clients (handshakes and established sessions), by type.",
            &self.frames_in,
            FrameType::ALL,
        )));
        r.register_collector(Box::new(by_type(
            "commucat_frames_sent",
            "Frames sent to clients (handshakes and established sessions), by type.",
            &self.frames_out,
            FrameType::ALL,
        )));
        r.register(
            "commucat_mailbox_frames",
            "Frames waiting in the mailboxes of connected sessions",
            ConstGauge::new(gauges.mailbox_frames),
        );
        r.register(
            "commucat_online_devices",
            "Devices with a connected session on this node",
            ConstGauge::new(gauges.online_devices),
        );
        r.register(
            "commucat_channels",
            "Channels held in this node's routing tables (freed once no member is connected)",
            ConstGauge::new(gauges.channels),
        );
        r.register_collector(Box::new(Labeled {
            name: "commucat_rate_limited",
            help: "Requests refused with 429, by limiter.",
            label: "limiter",
            series: vec![
                ("rest", self.rate_limited_rest.clone()),
                ("claim", self.rate_limited_claim.clone()),
                ("connect", self.rate_limited_connect.clone()),
            ],
        }));
        r.register(
            "commucat_handshake_replays_refused",
            "IK handshakes refused because their message-1 ephemeral had been accepted before",
            self.handshake_replays.clone(),
        );
        r.register(
            "commucat_ik_replay_evictions",
            "IK replay-cache entries dropped before their retention because the cache was full",
            self.ik_replay_evictions.clone(),
        );
        r.register(
            "commucat_ledger_records_written",
            "Audit ledger records written to the sink",
            ConstCounter::new(ledger.written),
        );
        r.register(
            "commucat_ledger_records_dropped",
            "Audit ledger records dropped because the queue was full",
            ConstCounter::new(ledger.dropped),
        );
        r.register(
            "commucat_p2p_assists",
            "Answers of /api/p2p/assist",
            self.p2p_assists.clone(),
        );
        r.register(
            "commucat_security_noise_handshakes",
            "Completed Noise handshakes",
            self.handshakes_ok.clone(),
        );
        r.register(
            "commucat_security_pq_handshakes",
            "Completed pq-hybrid handshakes (ML-KEM-768 exchange, ML-DSA-65 transcript signature).",
            self.pq_handshakes.clone(),
        );
        r.register(
            "commucat_security_censorship_deflections",
            "Client networks that completed a handshake on one transport shortly after failing on another.",
            self.censorship_deflections.clone(),
        );
        r.register(
            "commucat_security_fec_packets",
            "FEC symbols (source and repair) generated for sessions that negotiated fec.",
            self.fec_packets.clone(),
        );
        r.register_collector(Box::new(Labeled {
            name: "commucat_bound_refusals",
            help: "Requests refused because they would exceed a [bounds] setting, by bound.",
            label: "bound",
            series: Bound::ALL
                .iter()
                .filter_map(|&b| Some((b.name(), self.bound_refusals.handle(b)?.clone())))
                .collect(),
        }));
        r.register(
            "commucat_requeue_lost",
            "Undelivered frames of an ending session the store could not take after retrying",
            self.requeue_lost.clone(),
        );
        r.register_collector(Box::new(by_type(
            "commucat_sender_mismatches",
            "Frames refused because a sender field named another device, by type.",
            &self.sender_mismatches,
            sender_checked,
        )));
        r.register(
            "commucat_obf_sessions",
            "Completed handshakes whose session wraps frames in adaptive-obf packets.",
            self.obf_sessions.clone(),
        );
        r.register(
            "commucat_obf_integrity_failures",
            "adaptive-obf sessions ended because a wrapper failed its check (IntegrityCheckFailed).",
            self.obf_integrity_failures.clone(),
        );
        r.register(
            "commucat_calls_unanswered",
            "Calls ended because nobody answered within bounds.call_ring_timeout",
            self.calls_unanswered.clone(),
        );
        r.register_with_unit(
            "commucat_handshake_duration",
            "Time from the start of a /connect handshake to its final ACK",
            Unit::Seconds,
            self.handshake_latency.0.clone(),
        );
        r.register_with_unit(
            "commucat_relay_latency",
            "Time from a frame's arrival from its sender to its write to a connected recipient",
            Unit::Seconds,
            self.relay_latency.0.clone(),
        );
        r
    }
}

fn by_type(
    name: &'static str,
    help: &'static str,
    counts: &PerFrameType,
    types: &[FrameType],
) -> Labeled {
    Labeled {
        name,
        help,
        label: "type",
        series: types
            .iter()
            .filter_map(|&t| Some((t.label(), counts.handle(t)?.clone())))
            .collect(),
    }
}
