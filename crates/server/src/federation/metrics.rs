//! The federation families of `GET /metrics` (`commucat_federation_*`), registered in the
//! server's `prometheus-client` registry at each scrape, so they are in both text formats
//! (Prometheus 0.0.4 and OpenMetrics 1.0).

use commucat_store::OutboxStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the delivery-latency buckets: from a loopback round trip to an
/// outage of a few minutes (`+Inf` is implied).
pub const DELIVERY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Counters of the federation traffic (`commucat_federation_*`).
#[derive(Debug)]
pub struct Counters {
    /// Events delivered to a peer (2xx answer).
    pub sent: Counter,
    /// Inbound events accepted and delivered locally.
    pub received: Counter,
    /// Inbound events refused (any problem answer).
    pub refused: Counter,
    /// Inbound events already seen (answered `duplicate`).
    pub duplicates: Counter,
    /// Outbound events a peer refused for good, dropped from the outbox.
    pub dropped: Counter,
    /// Failed delivery attempts (retried).
    pub retries: Counter,
    /// Time from an outbound event's `created_at` (when it was signed and queued) to the
    /// peer's 2xx answer: the outbox wait, retries and the request itself.
    pub delivery_latency: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            sent: Counter::default(),
            received: Counter::default(),
            refused: Counter::default(),
            duplicates: Counter::default(),
            dropped: Counter::default(),
            retries: Counter::default(),
            delivery_latency: Histogram::new(DELIVERY_BUCKETS),
        }
    }
}

/// The outbox depth per peer, read at scrape time: a gauge family with a `peer` label, left
/// out while nothing is queued (a family without samples is not valid text).
#[derive(Debug)]
struct OutboxDepth(Vec<(String, u64)>);

impl Collector for OutboxDepth {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "commucat_federation_outbox_depth",
            "Events waiting for a peer.",
            None,
            MetricType::Gauge,
        )?;
        for (peer, depth) in &self.0 {
            let labels = [("peer", peer.as_str())];
            ConstGauge::new(i64::try_from(*depth).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &Counter) {
        counter.inc();
    }

    /// Records a delivery `seconds` after the event was created (a negative value, from a
    /// clock step, counts as zero).
    pub fn delivered_after(&self, seconds: f64) {
        self.delivery_latency.observe(seconds.max(0.0));
    }

    /// Registers every federation family in `registry`, with the outbox depth per peer when
    /// `outbox` could be read. Help texts end without a period (the registry adds one).
    pub fn register(&self, registry: &mut Registry, outbox: Option<&[OutboxStats]>) {
        for (name, help, counter) in [
            (
                "commucat_federation_events_sent",
                "Events delivered to peer domains",
                &self.sent,
            ),
            (
                "commucat_federation_events_received",
                "Events from peer domains delivered here",
                &self.received,
            ),
            (
                "commucat_federation_events_refused",
                "Events from peer domains refused",
                &self.refused,
            ),
            (
                "commucat_federation_events_duplicate",
                "Events from peer domains seen before",
                &self.duplicates,
            ),
            (
                "commucat_federation_events_dropped",
                "Outbound events a peer refused for good",
                &self.dropped,
            ),
            (
                "commucat_federation_delivery_retries",
                "Failed deliveries to peer domains (retried)",
                &self.retries,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register_with_unit(
            "commucat_federation_delivery_latency",
            "Time from an outbound event's creation to the peer's 2xx answer",
            Unit::Seconds,
            self.delivery_latency.clone(),
        );
        let depth = outbox
            .unwrap_or_default()
            .iter()
            .map(|o| (o.peer.clone(), o.depth))
            .collect();
        registry.register_collector(Box::new(OutboxDepth(depth)));
    }
}
