//! The security counters as JSON (`GET /api/security-stats`, and the `security` section of
//! `/api/p2p/assist`).

use serde::Serialize;

use super::Metrics;

/// The security counters as JSON. The deployed client requires every field with its type, so
/// the fields of features the server does not implement stay, documented as not measured, with
/// the value that is true of this server; `/metrics` has no series for them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SecuritySnapshot {
    /// Completed Noise handshakes (XK or IK, ending with the final ACK).
    pub noise_handshakes: u64,
    /// Completed handshakes that established a `pq-hybrid` session (hybrid ML-KEM-768 key
    /// exchange, ML-DSA-65 transcript signature verified).
    pub pq_handshakes: u64,
    /// FEC symbols (source and repair) the server generated for sessions that negotiated `fec`.
    pub fec_packets: u64,
    /// Not measured: every session runs over its one `/connect` stream; no session is
    /// multipath: always 0. (`/api/p2p/assist` answers are advice and are not counted here.)
    pub multipath_sessions: u64,
    /// Paths per session: 1 once a session has been established (each runs over its one
    /// `/connect` stream), 0 before.
    pub average_paths: f64,
    /// Client networks that completed a handshake on one transport within
    /// `transport.deflection_window` of a failed attempt on another (each failure matched
    /// once; see `docs/transports.md`).
    pub censorship_deflections: u64,
}

impl Metrics {
    /// The security counters now.
    #[must_use]
    pub fn security(&self) -> SecuritySnapshot {
        let sessions = self.sessions_opened.get();
        SecuritySnapshot {
            noise_handshakes: self.handshakes_ok.get(),
            pq_handshakes: self.pq_handshakes.get(),
            fec_packets: self.fec_packets.get(),
            multipath_sessions: 0,
            average_paths: if sessions == 0 { 0.0 } else { 1.0 },
            censorship_deflections: self.censorship_deflections.get(),
        }
    }
}
