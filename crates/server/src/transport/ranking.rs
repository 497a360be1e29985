//! Per-network transport statistics, the ranking built from them, and the detection of
//! censorship deflections — sans I/O: every call takes the time it happened at.
//!
//! A *network* is the client's address truncated to a /24 (IPv4) or a /48 (IPv6): clients
//! behind the same access network tend to meet the same filtering, and the truncation keeps one
//! client from spreading its history over many keys.
//!
//! A *deflection* is a connection from a network that completes its handshake on one transport
//! within [`Ranking::deflection_window`] of a failed attempt from the same network on another
//! transport: the client (or its user) moved to another transport after a failed path. Each
//! failure is matched at most once.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hashlink::LruCache;

/// Failed attempts remembered per network for deflection matching.
pub const FAILURES_PER_NETWORK: usize = 8;

/// Weight of the newest sample in the handshake-latency average (1/8).
const LATENCY_WEIGHT_SHIFT: u32 = 3;

/// The network a client address belongs to (a /24 or a /48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkKey(IpAddr);

impl NetworkKey {
    /// The network of `addr`.
    #[must_use]
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Self(IpAddr::from([a, b, c, 0]))
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of(IpAddr::V4(v4)),
                None => {
                    let mut octets = v6.octets();
                    for byte in octets.iter_mut().skip(6) {
                        *byte = 0;
                    }
                    Self(IpAddr::from(octets))
                }
            },
        }
    }

    /// The network's address (host bits zero).
    #[must_use]
    pub const fn addr(self) -> IpAddr {
        self.0
    }
}

/// Outcomes of one transport on one network (or over all networks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransportRecord {
    /// Handshakes completed.
    pub successes: u64,
    /// Attempts that failed after the transport was chosen.
    pub failures: u64,
    /// Average handshake time of the successful attempts (exponentially weighted), if any;
    /// whole milliseconds in JSON (`latency_ms`).
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Option<Duration>,
}

impl TransportRecord {
    fn record(&mut self, ok: bool, elapsed: Duration) {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.latency = Some(match self.latency {
                None => elapsed,
                Some(avg) => {
                    avg - avg / (1 << LATENCY_WEIGHT_SHIFT) + elapsed / (1 << LATENCY_WEIGHT_SHIFT)
                }
            });
        } else {
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// Share of successful attempts with one success and one failure assumed beforehand
    /// (Laplace), so a transport never tried ranks at 0.5 and one failure does not sink a
    /// transport for good.
    #[must_use]
    pub fn success_score(&self) -> f64 {
        #[allow(clippy::cast_precision_loss, reason = "a score, not a count")]
        let (ok, all) = (
            self.successes as f64,
            (self.successes + self.failures) as f64,
        );
        (ok + 1.0) / (all + 2.0)
    }
}

fn as_millis<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

#[derive(Debug)]
struct NetworkStats {
    /// Per transport, indexed like the catalog given to [`Ranking::new`].
    records: Vec<TransportRecord>,
    /// Recent failures not yet matched by a deflection: (transport index, when).
    failures: VecDeque<(usize, Instant)>,
}

/// The statistics of every recently seen network, bounded by an LRU.
#[derive(Debug)]
pub struct Ranking {
    networks: LruCache<NetworkKey, NetworkStats>,
    totals: Vec<TransportRecord>,
    window: Duration,
}

/// What one recorded attempt meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing beyond the statistics.
    Plain,
    /// A success that follows a failure on another transport from the same network.
    Deflection {
        /// The transport that had failed (catalog index).
        from: usize,
    },
}

impl Ranking {
    /// Statistics for `transports` transports (catalog indices `0..transports`), remembering
    /// at most `max_networks` networks (least recently seen dropped first) and matching
    /// failures to successes within `window`.
    #[must_use]
    pub fn new(transports: usize, max_networks: usize, window: Duration) -> Self {
        Self {
            networks: LruCache::new(max_networks.max(1)),
            totals: vec![TransportRecord::default(); transports],
            window,
        }
    }

    /// The deflection window.
    #[must_use]
    pub const fn deflection_window(&self) -> Duration {
        self.window
    }

    /// Networks remembered now.
    #[must_use]
    pub fn networks(&self) -> usize {
        self.networks.len()
    }

    /// Records an attempt on `transport` (catalog index) from `network` at `now`.
    pub fn record(
        &mut self,
        network: NetworkKey,
        transport: usize,
        ok: bool,
        elapsed: Duration,
        now: Instant,
    ) -> Recorded {
        if transport >= self.totals.len() {
            return Recorded::Plain;
        }
        if let Some(total) = self.totals.get_mut(transport) {
            total.record(ok, elapsed);
        }
        let transports = self.totals.len();
        let stats = match self.networks.get_mut(&network) {
            Some(stats) => stats,
            None => {
                self.networks.insert(
                    network,
                    NetworkStats {
                        records: vec![TransportRecord::default(); transports],
                        failures: VecDeque::new(),
                    },
                );
                match self.networks.get_mut(&network) {
                    Some(stats) => stats,
                    None => return Recorded::Plain,
                }
            }
        };
        if let Some(record) = stats.records.get_mut(transport) {
            record.record(ok, elapsed);
        }
        let window = self.window;
        stats
            .failures
            .retain(|(_, at)| now.saturating_duration_since(*at) <= window);
        if !ok {
            if stats.failures.len() == FAILURES_PER_NETWORK {
                stats.failures.pop_front();
            }
            stats.failures.push_back((transport, now));
            return Recorded::Plain;
        }
        // A success: the failures on other transports are answered by it (counted once).
        let from = stats
            .failures
            .iter()
            .rev()
            .find(|(failed, _)| *failed != transport)
            .map(|(failed, _)| *failed);
        match from {
            Some(from) => {
                stats.failures.clear();
                Recorded::Deflection { from }
            }
            None => {
                stats.failures.retain(|(failed, _)| *failed != transport);
                Recorded::Plain
            }
        }
    }

    #[cfg(test)]
    /// The record of each transport for `network` (all zero for an unknown network).
    #[must_use]
    pub fn records(&self, network: NetworkKey) -> Vec<TransportRecord> {
        self.networks.peek(&network).map_or_else(
            || vec![TransportRecord::default(); self.totals.len()],
            |s| s.records.clone(),
        )
    }

    #[cfg(test)]
    /// The record of each transport over every network since start.
    #[must_use]
    pub fn totals(&self) -> &[TransportRecord] {
        &self.totals
    }

    /// The transports ordered best first for `network`: by success score on that network
    /// (judged on the totals where the network has no attempts on a transport, and on the
    /// totals alone for `None`), then by average handshake time, then by the catalog's own
    /// order (its preference). Each comes with the record it was judged on.
    #[must_use]
    pub fn ranked(&self, network: Option<NetworkKey>) -> Vec<Ranked> {
        let local = network.and_then(|n| self.networks.peek(&n));
        let mut order: Vec<Ranked> = self
            .totals
            .iter()
            .enumerate()
            .map(|(index, total)| {
                let own = local.and_then(|stats| stats.records.get(index)).copied();
                match own.filter(|r| r.successes.saturating_add(r.failures) > 0) {
                    Some(record) => Ranked {
                        index,
                        record,
                        measured_on_network: true,
                    },
                    None => Ranked {
                        index,
                        record: *total,
                        measured_on_network: false,
                    },
                }
            })
            .collect();
        order.sort_by(|a, b| {
            let (ra, rb) = (a.record, b.record);
            rb.success_score()
                .total_cmp(&ra.success_score())
                .then_with(|| match (ra.latency, rb.latency) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                })
                .then_with(|| a.index.cmp(&b.index))
        });
        order
    }
}

/// One transport's place in [`Ranking::ranked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranked {
    /// Catalog index.
    pub index: usize,
    /// The record it was judged on.
    pub record: TransportRecord,
    /// Whether `record` is the network's own (false: the totals over every network).
    pub measured_on_network: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(last: u8) -> NetworkKey {
        NetworkKey::of(IpAddr::from([10, 1, last, 7]))
    }

    const MS: Duration = Duration::from_millis(1);

    fn order(r: &Ranking, last: u8) -> Vec<usize> {
        r.ranked(Some(net(last))).iter().map(|t| t.index).collect()
    }

    #[test]
    fn networks_truncate_addresses() {
        assert_eq!(
            NetworkKey::of(IpAddr::from([192, 0, 2, 200])).addr(),
            IpAddr::from([192, 0, 2, 0])
        );
        let v6: IpAddr = "2001:db8:aa:bb::1".parse().unwrap_or(IpAddr::from([0; 16]));
        assert_eq!(
            NetworkKey::of(v6).addr(),
            "2001:db8:aa::"
                .parse::<IpAddr>()
                .unwrap_or(IpAddr::from([1; 16]))
        );
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap_or(IpAddr::from([0; 16]));
        assert_eq!(NetworkKey::of(mapped).addr(), IpAddr::from([192, 0, 2, 0]));
    }

    #[test]
    fn failure_then_success_elsewhere_is_one_deflection() {
        let t0 = Instant::now();
        let mut r = Ranking::new(3, 16, Duration::from_secs(60));
        assert_eq!(r.record(net(1), 0, false, MS, t0), Recorded::Plain);
        assert_eq!(r.record(net(1), 0, false, MS, t0 + MS), Recorded::Plain);
        assert_eq!(
            r.record(net(1), 2, true, MS, t0 + 2 * MS),
            Recorded::Deflection { from: 0 }
        );
        // Matched once: the next success is plain.
        assert_eq!(r.record(net(1), 2, true, MS, t0 + 3 * MS), Recorded::Plain);
    }

    #[test]
    fn retry_on_the_same_transport_or_another_network_is_not_a_deflection() {
        let t0 = Instant::now();
        let mut r = Ranking::new(3, 16, Duration::from_secs(60));
        r.record(net(1), 1, false, MS, t0);
        assert_eq!(r.record(net(1), 1, true, MS, t0 + MS), Recorded::Plain);
        r.record(net(1), 1, false, MS, t0 + 2 * MS);
        assert_eq!(r.record(net(2), 0, true, MS, t0 + 3 * MS), Recorded::Plain);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut r = Ranking::new(2, 16, Duration::from_secs(60));
        r.record(net(1), 0, false, MS, t0);
        assert_eq!(
            r.record(net(1), 1, true, MS, t0 + Duration::from_secs(61)),
            Recorded::Plain
        );
    }

    #[test]
    fn remembered_networks_and_failures_are_bounded() {
        let t0 = Instant::now();
        let mut r = Ranking::new(2, 4, Duration::from_secs(60));
        for i in 0..=255u8 {
            for _ in 0..100 {
                r.record(net(i), 0, false, MS, t0);
            }
        }
        assert_eq!(r.networks(), 4);
        assert!(
            r.networks
                .iter()
                .all(|(_, s)| s.failures.len() <= FAILURES_PER_NETWORK)
        );
        // The least recently seen network was dropped: its history is gone.
        assert_eq!(r.records(net(0)), vec![TransportRecord::default(); 2]);
        assert_eq!(r.records(net(255))[0].failures, 100);
        assert_eq!(r.totals()[0].failures, 25_600);
    }

    #[test]
    fn ranking_prefers_success_then_speed_then_catalog_order() {
        let t0 = Instant::now();
        let mut r = Ranking::new(3, 16, Duration::from_secs(60));
        // Untried everywhere: catalog order.
        assert_eq!(order(&r, 1), vec![0, 1, 2]);
        // Transport 0 fails on network 1, transport 2 succeeds there.
        for _ in 0..5 {
            r.record(net(1), 0, false, MS, t0);
            r.record(net(1), 2, true, 30 * MS, t0);
        }
        assert_eq!(order(&r, 1)[0], 2);
        assert_eq!(order(&r, 1)[2], 0);
        // Another network with no history of its own falls back to the totals.
        assert_eq!(order(&r, 9)[0], 2);
        // Equal success: the faster transport first.
        let mut r = Ranking::new(2, 16, Duration::from_secs(60));
        r.record(net(1), 0, true, 50 * MS, t0);
        r.record(net(1), 1, true, 5 * MS, t0);
        assert_eq!(order(&r, 1), vec![1, 0]);
    }

    #[test]
    fn latency_is_a_weighted_average_of_successes() {
        let mut rec = TransportRecord::default();
        rec.record(true, 80 * MS);
        assert_eq!(rec.latency, Some(80 * MS));
        rec.record(true, Duration::ZERO);
        assert_eq!(rec.latency, Some(70 * MS));
        rec.record(false, 999 * MS);
        assert_eq!(rec.latency, Some(70 * MS));
        assert_eq!((rec.successes, rec.failures), (2, 1));
    }

    #[test]
    fn unknown_transport_index_is_ignored() {
        let mut r = Ranking::new(1, 4, Duration::from_secs(60));
        assert_eq!(
            r.record(net(1), 7, true, MS, Instant::now()),
            Recorded::Plain
        );
        assert_eq!(r.networks(), 0);
    }
}
