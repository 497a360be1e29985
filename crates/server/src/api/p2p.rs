//! `POST /api/p2p/assist` (and `GET`, an empty body meaning defaults): what two peers need to
//! set up a direct tunnel, in the shape the deployed client (1.0.41) decodes (wire-compat §8).
//!
//! Everything in the answer comes from configuration, keys or counters; nothing is measured
//! that the server cannot measure:
//!
//! - `noise`: the configured prologue and a fresh X25519 key pair for the peers' own Noise
//!   handshake (a random seed, not stored: the server sees it, so peers that want a key the
//!   server never saw generate their own).
//! - `pq`: the server's long-term key bundle (see [`PqBundle`]) with an ML-DSA-65 signature
//!   over it.
//! - `transports`: the client's candidate paths, most preferred first (the server does not probe
//!   them: `latency` and `throughput` are `"unmeasured"`), then this server's relay over the
//!   transport that ranks best for the caller's network ([`crate::transport`]), with the
//!   average handshake time measured on it (`"unmeasured"` before any handshake completed on
//!   it); `relay_transports` lists every transport the server serves in that order, with
//!   their measured outcomes.
//! - `multipath`: the FEC parameters the client asked for (or the seed's defaults) and the
//!   primary path. The server performs no FEC, so there are no `sample_segments`.
//! - `obfuscation`: every flag false; the server implements no REALITY, domain fronting,
//!   protocol mimicry or Tor bridge.
//! - `security`: the live [`crate::metrics::SecuritySnapshot`].

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};
use commucat_keys::{OsRng, RngCore, x25519_public};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AppState;
use super::auth::Authenticated;
use super::problem::{Problem, parse_json};
use crate::keys::pq::{KEM_ALGORITHM, PqError, PqKeys, SIGNATURE_ALGORITHM};
use crate::listener::http::PeerAddr;
use crate::metrics::SecuritySnapshot;
use crate::transport::TransportStanding;

/// Most candidate paths one request may carry.
pub(crate) const MAX_PATHS: usize = 16;
/// Longest path id, address or server name, bytes.
pub(crate) const MAX_FIELD_LEN: usize = 255;
/// Default FEC symbol size (seed 001).
pub(crate) const DEFAULT_FEC_MTU: u16 = 1152;
/// Default FEC repair overhead (seed 001).
pub(crate) const DEFAULT_FEC_OVERHEAD: f32 = 0.35;
/// Smallest accepted FEC MTU, bytes.
pub(crate) const MIN_FEC_MTU: u16 = 256;
/// Path id of this server's relay.
pub(crate) const RELAY_PATH_ID: &str = "relay";
/// Value of `latency` and `throughput`: the server does not measure paths.
pub(crate) const UNMEASURED: &str = "unmeasured";

/// The server's published key bundle (the `pq` section), PQXDH-shaped like the deployed
/// client's `PqxdhBundle`. All hex.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PqBundle {
    /// Ed25519 identity key of the server: the device-CA key that signs device certificates.
    pub identity_public_hex: String,
    /// X25519 signed prekey: the server's Noise static public key.
    pub signed_prekey_public_hex: String,
    /// ML-KEM-768 encapsulation key (1184 bytes).
    pub kem_public_hex: String,
    /// ML-DSA-65 verification key (1952 bytes).
    pub signature_public_hex: String,
    /// ML-DSA-65 signature over the bundle ([`PqKeys::bundle_message`]).
    pub bundle_signature_hex: String,
    /// `ML-KEM-768`.
    pub kem_algorithm: &'static str,
    /// `ML-DSA-65`.
    pub signature_algorithm: &'static str,
}

impl PqBundle {
    /// The bundle for these keys, signed now.
    ///
    /// # Errors
    /// Signing failed.
    pub fn new(
        domain: &str,
        pq: &PqKeys,
        identity: &[u8],
        noise_public: &[u8],
    ) -> Result<Self, PqError> {
        let signature = pq.bundle_signature(domain, identity, noise_public)?;
        Ok(Self {
            identity_public_hex: hex::encode(identity),
            signed_prekey_public_hex: hex::encode(noise_public),
            kem_public_hex: hex::encode(pq.kem_public()),
            signature_public_hex: hex::encode(pq.signature_public()),
            bundle_signature_hex: hex::encode(signature),
            kem_algorithm: KEM_ALGORITHM,
            signature_algorithm: SIGNATURE_ALGORITHM,
        })
    }
}

/// Body of `POST /api/p2p/assist` (every field optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct AssistRequest {
    /// The peer the tunnel is for (echoed).
    #[serde(default)]
    pub peer_hint: Option<String>,
    /// Candidate paths.
    #[serde(default)]
    pub paths: Vec<PathCandidate>,
    /// The client prefers REALITY paths (none are available: see `obfuscation`).
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "part of the deployed client's request; no REALITY transport"
    )]
    pub prefer_reality: bool,
    /// Requested FEC parameters.
    #[serde(default)]
    pub fec: Option<FecRequest>,
    /// Paths the client wants at least.
    #[serde(default)]
    pub min_paths: Option<u32>,
}

/// One candidate path of [`AssistRequest`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PathCandidate {
    /// Path id.
    #[serde(default)]
    pub id: Option<String>,
    /// Host or IP.
    #[serde(default)]
    pub address: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// TLS server name.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Preference: lower values first.
    #[serde(default)]
    pub priority: Option<i64>,
    /// REALITY certificate fingerprint (not used: no REALITY transport).
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "part of the deployed client's request; no REALITY transport"
    )]
    pub reality_fingerprint: Option<String>,
    /// REALITY certificate (not used).
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "part of the deployed client's request; no REALITY transport"
    )]
    pub reality_pem: Option<String>,
}

/// `fec` of [`AssistRequest`].
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct FecRequest {
    /// Symbol size, bytes.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Repair symbols per source symbol, 0–1.
    #[serde(default)]
    pub repair_overhead: Option<f32>,
}

/// Answer of `/api/p2p/assist`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Assist {
    /// Material for the peers' Noise handshake.
    pub noise: NoiseAdvice,
    /// The server's key bundle.
    pub pq: PqBundle,
    /// Paths, most preferred first; the relay last.
    pub transports: Vec<TransportAdvice>,
    /// Multipath and FEC parameters.
    pub multipath: MultipathAdvice,
    /// Obfuscation the server offers (none).
    pub obfuscation: ObfuscationAdvice,
    /// Every transport the relay serves, best first for the caller's network, with measured
    /// outcomes (not read by the deployed client).
    #[schema(value_type = Vec<Object>)]
    pub relay_transports: Vec<TransportStanding>,
    /// Security counters.
    pub security: SecuritySnapshot,
    /// Echo of the request's `peer_hint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_hint: Option<String>,
}

/// `noise` section.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NoiseAdvice {
    /// Noise pattern, `XK`.
    pub pattern: &'static str,
    /// The configured prologue (`crypto.prologue`), hex.
    pub prologue_hex: String,
    /// A fresh random 32-byte seed, hex (not stored).
    pub device_seed_hex: String,
    /// X25519 public key of that seed's key pair (private key = BLAKE3(seed), as paired
    /// devices derive theirs), hex.
    pub static_public_hex: String,
}

/// One entry of `transports`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TransportAdvice {
    /// The candidate's id (`path-<n>` if it had none), or `relay`.
    pub path_id: String,
    /// `direct` (the client's candidate, as given) or, for the relay, the id of the transport
    /// that ranks best for the caller's network (`binary/h2`, `websocket/h1`, …).
    pub transport: &'static str,
    /// `none` for a direct path, `tls` for the relay (TLS 1.3 to this server, no mimicry).
    pub resistance: &'static str,
    /// `unmeasured` for a direct path; for the relay, the average handshake time on its
    /// transport (`"23 ms"`), or `unmeasured` before one completed.
    pub latency: String,
    /// Always `unmeasured`.
    pub throughput: &'static str,
    /// The candidate's address, or the server's domain for the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The candidate's port, or the server's listen port for the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `multipath` section.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MultipathAdvice {
    /// FEC symbol size, bytes.
    pub fec_mtu: u16,
    /// FEC repair overhead.
    pub fec_overhead: f32,
    /// The most preferred path.
    pub primary_path: String,
    /// Paths in `transports`.
    pub paths_available: usize,
    /// Whether that meets the request's `min_paths`.
    pub min_paths_met: bool,
    /// Whether the server itself applies FEC to relayed frames: never.
    pub server_fec: bool,
}

/// `obfuscation` section: what the server offers; nothing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ObfuscationAdvice {
    /// No REALITY transport.
    pub reality_available: bool,
    /// No domain fronting.
    pub domain_fronting: bool,
    /// No protocol mimicry.
    pub protocol_mimicry: bool,
    /// No Tor bridge.
    pub tor_bridge: bool,
}

fn check_len(what: &str, value: Option<&String>, allow_empty: bool) -> Result<(), Problem> {
    match value {
        Some(v) if v.len() > MAX_FIELD_LEN => Err(Problem::bad_request(format!(
            "{what} is longer than {MAX_FIELD_LEN} bytes"
        ))),
        Some(v) if v.is_empty() && !allow_empty => {
            Err(Problem::bad_request(format!("{what} is empty")))
        }
        _ => Ok(()),
    }
}

impl AssistRequest {
    fn validate(&self) -> Result<(), Problem> {
        if self.paths.len() > MAX_PATHS {
            return Err(Problem::bad_request(format!("at most {MAX_PATHS} paths")));
        }
        check_len("peer_hint", self.peer_hint.as_ref(), true)?;
        for path in &self.paths {
            check_len("paths[].id", path.id.as_ref(), false)?;
            check_len("paths[].address", path.address.as_ref(), false)?;
            check_len("paths[].server_name", path.server_name.as_ref(), true)?;
        }
        if let Some(fec) = &self.fec {
            if fec.mtu.is_some_and(|m| m < MIN_FEC_MTU) {
                return Err(Problem::bad_request(format!(
                    "fec.mtu must be at least {MIN_FEC_MTU}"
                )));
            }
            if fec
                .repair_overhead
                .is_some_and(|o| !(0.0..=1.0).contains(&o))
            {
                return Err(Problem::bad_request(
                    "fec.repair_overhead must be between 0 and 1",
                ));
            }
        }
        if self
            .min_paths
            .is_some_and(|n| n > u32::try_from(MAX_PATHS + 1).unwrap_or(u32::MAX))
        {
            return Err(Problem::bad_request(format!(
                "min_paths must be at most {}",
                MAX_PATHS + 1
            )));
        }
        Ok(())
    }
}

/// Settings of the assist answers.
#[derive(Debug, Clone)]
pub(crate) struct P2pSettings {
    /// `crypto.prologue`, hex.
    pub prologue_hex: String,
    /// The signed key bundle; a key reload re-signs it for the new Noise key.
    pub bundle: crate::live::Live<PqBundle>,
    /// The relay's address as clients reach it (the server's domain).
    pub relay_address: String,
    /// The relay's port.
    pub relay_port: u16,
}

/// A fresh seed and the X25519 public key of the key pair derived from it (private key =
/// BLAKE3(seed), as `DeviceKeyPair::from_seed_material`).
fn fresh_noise_material() -> (String, String) {
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut_slice());
    let private = Zeroizing::new(*blake3::hash(seed.as_slice()).as_bytes());
    (
        hex::encode(seed.as_slice()),
        hex::encode(x25519_public(&private)),
    )
}

/// Builds the answer for `request` (validated) and counts it.
fn assist(state: &AppState, request: AssistRequest, client: Option<IpAddr>) -> Assist {
    let settings = &state.rest.p2p;
    let mut candidates: Vec<(usize, PathCandidate)> =
        request.paths.into_iter().enumerate().collect();
    // Lower priority values first; equal ones keep the request's order (stable sort).
    candidates.sort_by_key(|(_, p)| p.priority.unwrap_or(i64::MAX));
    let mut transports: Vec<TransportAdvice> = candidates
        .into_iter()
        .map(|(index, path)| TransportAdvice {
            path_id: path.id.unwrap_or_else(|| format!("path-{}", index + 1)),
            transport: "direct",
            resistance: "none",
            latency: UNMEASURED.to_owned(),
            throughput: UNMEASURED,
            address: path.address,
            port: path.port,
        })
        .collect();
    let relay_transports = state.sessions.transports().ranked(client);
    let best = relay_transports.first();
    transports.push(TransportAdvice {
        path_id: RELAY_PATH_ID.to_owned(),
        transport: best.map_or(crate::transport::BINARY_H2, |t| t.id),
        resistance: "tls",
        latency: best.and_then(|t| t.record.latency).map_or_else(
            || UNMEASURED.to_owned(),
            |l| format!("{} ms", l.as_millis()),
        ),
        throughput: UNMEASURED,
        address: Some(settings.relay_address.clone()),
        port: Some(settings.relay_port),
    });
    let primary_path = transports
        .first()
        .map_or_else(|| RELAY_PATH_ID.to_owned(), |t| t.path_id.clone());
    let fec = request.fec.unwrap_or_default();
    let metrics = &state.sessions.hub().metrics;
    metrics.p2p_assist();
    let (device_seed_hex, static_public_hex) = fresh_noise_material();
    Assist {
        noise: NoiseAdvice {
            pattern: "XK",
            prologue_hex: settings.prologue_hex.clone(),
            device_seed_hex,
            static_public_hex,
        },
        pq: settings.bundle.load().as_ref().clone(),
        multipath: MultipathAdvice {
            fec_mtu: fec.mtu.unwrap_or(DEFAULT_FEC_MTU),
            fec_overhead: fec.repair_overhead.unwrap_or(DEFAULT_FEC_OVERHEAD),
            primary_path,
            paths_available: transports.len(),
            min_paths_met: request
                .min_paths
                .is_none_or(|n| usize::try_from(n).is_ok_and(|n| n <= transports.len())),
            server_fec: false,
        },
        transports,
        obfuscation: ObfuscationAdvice {
            reality_available: false,
            domain_fronting: false,
            protocol_mimicry: false,
            tor_bridge: false,
        },
        relay_transports,
        security: metrics.security(),
        peer_hint: request.peer_hint,
    }
}

/// `POST`/`GET /api/p2p/assist` → 200 [`Assist`].
///
/// # Errors
/// 400 bad body; 401 without a valid bearer; 503/500 when the store fails the bearer check.
#[utoipa::path(
    method(get, post), path = "/api/p2p/assist", tag = "p2p",
    request_body(content = Option<AssistRequest>, description = "Optional; empty means defaults"),
    responses(
        (status = 200, description = "Keys, paths and counters for a direct tunnel", body = Assist),
        (status = 400, description = "Body is not the expected JSON or a value is out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn handle(
    State(state): State<AppState>,
    _auth: Authenticated,
    peer: Option<Extension<PeerAddr>>,
    body: Bytes,
) -> Result<Json<Assist>, Problem> {
    let request: AssistRequest = parse_json(&body)?;
    request.validate()?;
    let client = peer.map(|Extension(PeerAddr(addr))| addr.ip());
    Ok(Json(assist(&state, request, client)))
}
