//! The outer transports this server really serves, and a manager that ranks them per client
//! network from measured outcomes (seed 001, "Pluggable Transports").
//!
//! Every transport here is a way of carrying a `/connect` session that the listener actually
//! serves (see `docs/connect-modes.md`); each implements [`PluggableTransport`], which describes
//! it. Transports the seed lists but this server does not implement (REALITY, AmnesiaWG,
//! QUIC MASQUE, DNS tunnelling, Tor) are absent from every list: nothing is simulated.
//!
//! [`TransportManager`] records each `/connect` attempt's outcome (handshake completed or
//! failed, and how long it took) under the client's network ([`ranking::NetworkKey`]), ranks
//! the transports for a network by measured success, then speed, then preference, and counts
//! *censorship deflections*: a client network that completes a handshake on one transport
//! shortly after failing on another (see [`ranking`]). Only outcomes after a transport was
//! chosen (the HTTP request arrived) are seen; a connection cut during the TLS handshake names
//! no transport and is not counted.

pub mod ranking;
pub mod reality;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
pub use ranking::{NetworkKey, Ranking, Recorded, TransportRecord};

/// How hard a transport is to tell apart from ordinary traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResistanceLevel {
    /// TLS 1.3 to this server's own name: looks like HTTPS to a known host, no mimicry; the
    /// server name, the address and the traffic pattern are visible.
    Tls,
}

/// What a transport is good at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PerformanceProfile {
    /// Both directions on one stream at once.
    pub full_duplex: bool,
    /// Bytes on the wire per frame byte downstream, in percent (100 = binary; text encodings
    /// carry frames as base64 in text events).
    pub downstream_overhead_pct: u16,
}

/// One outer transport the server serves.
pub trait PluggableTransport: std::fmt::Debug + Send + Sync {
    /// The session label the `/connect` adapter passes for this transport (`binary/h2`, …).
    fn id(&self) -> &'static str;
    /// What carries it, for people (`HTTP/2 over TLS 1.3 over TCP`).
    fn carrier(&self) -> &'static str;
    /// How hard it is to tell apart.
    fn resistance(&self) -> ResistanceLevel;
    /// What it is good at.
    fn performance(&self) -> PerformanceProfile;
}

/// A `/connect` mode over one HTTP version, as the listener serves it.
#[derive(Debug, Clone, Copy)]
pub struct HttpConnect {
    id: &'static str,
    carrier: &'static str,
    full_duplex: bool,
    downstream_overhead_pct: u16,
}

impl PluggableTransport for HttpConnect {
    fn id(&self) -> &'static str {
        self.id
    }
    fn carrier(&self) -> &'static str {
        self.carrier
    }
    fn resistance(&self) -> ResistanceLevel {
        ResistanceLevel::Tls
    }
    fn performance(&self) -> PerformanceProfile {
        PerformanceProfile {
            full_duplex: self.full_duplex,
            downstream_overhead_pct: self.downstream_overhead_pct,
        }
    }
}

const fn http(
    id: &'static str,
    carrier: &'static str,
    full_duplex: bool,
    downstream_overhead_pct: u16,
) -> HttpConnect {
    HttpConnect {
        id,
        carrier,
        full_duplex,
        downstream_overhead_pct,
    }
}

/// Binary frames over HTTP/2.
pub const BINARY_H2: &str = "binary/h2";
/// Binary frames over HTTP/1.1 chunked bodies.
pub const BINARY_H1: &str = "binary/h1";
/// WebSocket over HTTP/2 (RFC 8441).
pub const WEBSOCKET_H2: &str = "websocket/h2";
/// WebSocket over HTTP/1.1 (RFC 6455 upgrade).
pub const WEBSOCKET_H1: &str = "websocket/h1";
/// Server-sent events downstream over HTTP/2.
pub const SSE_H2: &str = "sse/h2";
/// Server-sent events downstream over HTTP/1.1.
pub const SSE_H1: &str = "sse/h1";
/// NDJSON downstream over HTTP/2.
pub const NDJSON_H2: &str = "long-poll/h2";
/// NDJSON downstream over HTTP/1.1.
pub const NDJSON_H1: &str = "long-poll/h1";
/// Binary frames over HTTP/3 (QUIC).
pub const BINARY_H3: &str = "binary/h3";
/// Server-sent events downstream over HTTP/3.
pub const SSE_H3: &str = "sse/h3";
/// NDJSON downstream over HTTP/3.
pub const NDJSON_H3: &str = "long-poll/h3";

/// Every transport the listeners can serve, in the server's order of preference (used when
/// measurements do not separate them): duplex binary first, then WebSocket, then the text
/// modes; HTTP/2 before HTTP/3 (UDP is more often blocked) before HTTP/1.1 for binary. The
/// HTTP/3 ones are served, and listed, only with `server.http3` on ([`is_http3`]).
pub static CATALOG: [HttpConnect; 11] = [
    http(BINARY_H2, "HTTP/2 over TLS 1.3 over TCP", true, 100),
    http(BINARY_H3, "HTTP/3 over QUIC (TLS 1.3, UDP)", true, 100),
    http(
        WEBSOCKET_H2,
        "WebSocket over HTTP/2 (RFC 8441), TLS 1.3, TCP",
        true,
        100,
    ),
    http(
        WEBSOCKET_H1,
        "WebSocket over HTTP/1.1, TLS 1.3, TCP",
        true,
        100,
    ),
    http(
        BINARY_H1,
        "HTTP/1.1 chunked bodies over TLS 1.3 over TCP",
        true,
        100,
    ),
    http(
        SSE_H2,
        "server-sent events over HTTP/2, TLS 1.3, TCP",
        true,
        140,
    ),
    http(
        SSE_H1,
        "server-sent events over HTTP/1.1, TLS 1.3, TCP",
        true,
        140,
    ),
    http(
        NDJSON_H2,
        "NDJSON stream over HTTP/2, TLS 1.3, TCP",
        true,
        140,
    ),
    http(
        NDJSON_H1,
        "NDJSON stream over HTTP/1.1, TLS 1.3, TCP",
        true,
        140,
    ),
    http(
        SSE_H3,
        "server-sent events over HTTP/3 (QUIC, UDP)",
        true,
        140,
    ),
    http(
        NDJSON_H3,
        "NDJSON stream over HTTP/3 (QUIC, UDP)",
        true,
        140,
    ),
];

/// Whether transport `id` runs over HTTP/3.
#[must_use]
pub fn is_http3(id: &str) -> bool {
    id.ends_with("/h3")
}

/// A transport's standing for one network, best first in [`TransportManager::ranked`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TransportStanding {
    /// The transport's id.
    pub id: &'static str,
    /// What carries it.
    pub carrier: &'static str,
    /// How hard it is to tell apart.
    pub resistance: ResistanceLevel,
    /// What it is good at.
    pub performance: PerformanceProfile,
    /// Measured outcomes on the asking network, or over every network when that network has
    /// none on this transport.
    pub record: TransportRecord,
    /// Whether `record` is the network's own (false: the totals).
    pub measured_on_network: bool,
}

/// Settings of the manager (`[transport]`).
#[derive(Debug, Clone, Copy)]
pub struct ManagerSettings {
    /// Networks remembered at most.
    pub max_networks: usize,
    /// How soon after a failure a success on another transport counts as a deflection.
    pub deflection_window: Duration,
    /// Whether the HTTP/3 listener runs (`server.http3`): its transports are listed only then.
    pub http3: bool,
}

/// Ranks the served transports per client network and counts deflections.
#[derive(Debug, Clone)]
pub struct TransportManager {
    ranking: Arc<Mutex<Ranking>>,
    metrics: Arc<Metrics>,
    http3: bool,
}

impl TransportManager {
    /// A manager over [`CATALOG`].
    #[must_use]
    pub fn new(settings: ManagerSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            ranking: Arc::new(Mutex::new(Ranking::new(
                CATALOG.len(),
                settings.max_networks,
                settings.deflection_window,
            ))),
            metrics,
            http3: settings.http3,
        }
    }

    fn index(id: &str) -> Option<usize> {
        CATALOG.iter().position(|t| t.id() == id)
    }

    /// Records a `/connect` attempt on transport `id` from `remote` (a socket address as the
    /// listener prints it); unknown transports and unparsable addresses are not recorded.
    pub fn record(&self, remote: &str, id: &str, ok: bool, elapsed: Duration) {
        let (Some(index), Some(ip)) = (Self::index(id), parse_ip(remote)) else {
            return;
        };
        let recorded = self
            .ranking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(NetworkKey::of(ip), index, ok, elapsed, Instant::now());
        if let Recorded::Deflection { from } = recorded {
            self.metrics.censorship_deflection();
            tracing::info!(
                network = %NetworkKey::of(ip).addr(),
                from = CATALOG.get(from).map_or("?", |t| t.id()),
                to = id,
                "censorship deflection: a handshake completed on another transport after a failure"
            );
        }
    }

    /// The served transports, best first for the network of `client` (over every network when
    /// `client` is `None`).
    #[must_use]
    pub fn ranked(&self, client: Option<IpAddr>) -> Vec<TransportStanding> {
        let ranking = self.ranking.lock().unwrap_or_else(PoisonError::into_inner);
        ranking
            .ranked(client.map(NetworkKey::of))
            .into_iter()
            .filter_map(|ranked| {
                let transport = CATALOG
                    .get(ranked.index)
                    .filter(|t| self.http3 || !is_http3(t.id()))?;
                Some(TransportStanding {
                    id: transport.id(),
                    carrier: transport.carrier(),
                    resistance: transport.resistance(),
                    performance: transport.performance(),
                    record: ranked.record,
                    measured_on_network: ranked.measured_on_network,
                })
            })
            .collect()
    }
}

/// The IP of a socket address as the listener prints it (`1.2.3.4:5`, `[::1]:5`).
#[must_use]
pub fn parse_ip(remote: &str) -> Option<IpAddr> {
    remote
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| remote.parse::<IpAddr>())
        .ok()
}

/// The HTTP version under a `/connect` request, as far as transports differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.0 or HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
    /// HTTP/3.
    H3,
}

/// The transport id of a `/connect` mode (its label) over an HTTP version. (WebSocket over
/// HTTP/3 is not served: the HTTP/3 listener never selects it.)
#[must_use]
pub fn transport_id(mode_label: &str, version: HttpVersion) -> &'static str {
    use HttpVersion::{H1, H2, H3};
    match (mode_label, version) {
        ("binary", H2) => BINARY_H2,
        ("binary", H1) => BINARY_H1,
        ("binary", H3) => BINARY_H3,
        ("websocket", H2 | H3) => WEBSOCKET_H2,
        ("websocket", H1) => WEBSOCKET_H1,
        ("sse", H2) => SSE_H2,
        ("sse", H1) => SSE_H1,
        ("sse", H3) => SSE_H3,
        (_, H2) => NDJSON_H2,
        (_, H1) => NDJSON_H1,
        (_, H3) => NDJSON_H3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager() -> (TransportManager, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let manager = TransportManager::new(
            ManagerSettings {
                max_networks: 64,
                deflection_window: Duration::from_secs(60),
                http3: false,
            },
            Arc::clone(&metrics),
        );
        (manager, metrics)
    }

    #[test]
    fn catalog_ids_are_unique_and_mapped() {
        let mut ids: Vec<&str> = CATALOG.iter().map(PluggableTransport::id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
        for mode in ["binary", "websocket", "sse", "long-poll"] {
            for version in [HttpVersion::H1, HttpVersion::H2, HttpVersion::H3] {
                assert!(TransportManager::index(transport_id(mode, version)).is_some());
            }
        }
        // HTTP/3 transports are listed only when the HTTP/3 listener runs.
        let (m, _) = manager();
        assert_eq!(m.ranked(None).len(), CATALOG.len() - 3);
        assert!(m.ranked(None).iter().all(|t| !is_http3(t.id)));
    }

    #[test]
    fn deflection_counts_in_metrics_and_ranking_follows_outcomes() {
        let (m, metrics) = manager();
        m.record("198.51.100.7:4000", BINARY_H2, false, Duration::ZERO);
        m.record(
            "198.51.100.9:4001",
            WEBSOCKET_H1,
            true,
            Duration::from_millis(9),
        );
        assert_eq!(metrics.security().censorship_deflections, 1);
        let ranked = m.ranked(parse_ip("198.51.100.1"));
        assert_eq!(ranked[0].id, WEBSOCKET_H1);
        assert!(ranked[0].measured_on_network);
        assert_eq!(ranked.last().map(|t| t.id), Some(BINARY_H2));
        // Another network: the totals, not its own.
        let elsewhere = m.ranked(parse_ip("[2001:db8::1]:1"));
        assert_eq!(elsewhere[0].id, WEBSOCKET_H1);
        assert!(!elsewhere[0].measured_on_network);
        // Unknown transports and addresses are ignored.
        m.record("not an address", BINARY_H2, false, Duration::ZERO);
        m.record("198.51.100.7:1", "carrier-pigeon", false, Duration::ZERO);
        assert_eq!(metrics.security().censorship_deflections, 1);
    }
}
