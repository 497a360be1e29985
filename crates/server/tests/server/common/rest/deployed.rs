//! The deployed client's REST types (commucat-cli-client 1.0.41, `src/rest.rs`), as it decodes
//! them: the keys it requires are plain fields, the ones it defaults carry `#[serde(default)]`
//! with the same types (so `null` where it expects a `bool` or a list fails here as it fails
//! there), and unknown keys are ignored. wire-compat §8 lists them.

use std::collections::HashMap;

use serde::Deserialize;

/// `GET /api/server-info`.
#[derive(Debug, Deserialize, Clone)]
pub struct ServerInfo {
    pub domain: String,
    pub noise_public: String,
    #[serde(default)]
    pub device_ca_public: Option<String>,
    #[serde(default)]
    pub supported_patterns: Vec<String>,
    #[serde(default)]
    pub supported_versions: Vec<u16>,
    #[serde(default)]
    pub pairing: Option<ServerPairingInfo>,
}

/// `pairing` of [`ServerInfo`].
#[derive(Debug, Deserialize, Clone)]
pub struct ServerPairingInfo {
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub pairing_ttl: i64,
    #[serde(default)]
    pub max_auto_devices: i64,
}

/// `POST /api/pair`.
#[derive(Debug, Deserialize, Clone)]
pub struct PairingTicket {
    pub pair_code: String,
    pub issued_at: String,
    pub expires_at: String,
    pub ttl: i64,
    pub device_seed: String,
    #[serde(default)]
    pub issuer_device_id: Option<String>,
}

/// `POST /api/pair/claim`. The certificate is the deployed crate's own type: if present it
/// must decode, or the whole answer fails.
#[derive(Debug, Deserialize, Clone)]
pub struct PairingClaimResponse {
    pub device_id: String,
    pub private_key: String,
    pub public_key: String,
    pub seed: String,
    pub issuer_device_id: String,
    pub user: UserSummary,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub device_certificate: Option<commucat_crypto::DeviceCertificate>,
    #[serde(default)]
    pub device_ca_public: Option<String>,
}

/// `user` of [`PairingClaimResponse`].
#[derive(Debug, Deserialize, Clone)]
pub struct UserSummary {
    pub id: String,
    pub handle: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// `GET /api/devices`.
#[derive(Debug, Deserialize)]
pub struct DevicesEnvelope {
    pub devices: Vec<DeviceEntry>,
}

/// One entry of [`DevicesEnvelope`].
#[derive(Debug, Deserialize, Clone)]
pub struct DeviceEntry {
    pub device_id: String,
    pub status: String,
    pub created_at: String,
    pub public_key: String,
    #[serde(default)]
    pub current: bool,
}

/// `GET /api/friends` (and what `PUT` sends).
#[derive(Debug, Deserialize)]
pub struct FriendsEnvelope {
    pub friends: Vec<FriendEntryPayload>,
}

/// One friend.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
pub struct FriendEntryPayload {
    pub user_id: String,
    #[serde(default)]
    pub handle: Option<String>,
    #[serde(default)]
    pub alias: Option<String>,
}

/// `POST /api/p2p/assist`.
#[derive(Debug, Deserialize, Clone)]
pub struct P2pAssistResponse {
    pub noise: NoiseAdvice,
    pub pq: PqAdvice,
    pub transports: Vec<TransportAdvice>,
    pub multipath: MultipathAdvice,
    pub obfuscation: ObfuscationAdvice,
    pub security: SecuritySnapshot,
}

/// `noise` of [`P2pAssistResponse`].
#[derive(Debug, Deserialize, Clone)]
pub struct NoiseAdvice {
    pub pattern: String,
    pub prologue_hex: String,
    pub device_seed_hex: String,
    pub static_public_hex: String,
}

/// `pq` of [`P2pAssistResponse`].
#[derive(Debug, Deserialize, Clone)]
pub struct PqAdvice {
    pub identity_public_hex: String,
    pub signed_prekey_public_hex: String,
    pub kem_public_hex: String,
    pub signature_public_hex: String,
}

/// One entry of `transports`.
#[derive(Debug, Deserialize, Clone)]
pub struct TransportAdvice {
    pub path_id: String,
    pub transport: String,
    pub resistance: String,
    pub latency: String,
    pub throughput: String,
}

/// `multipath` of [`P2pAssistResponse`].
#[derive(Debug, Deserialize, Clone)]
pub struct MultipathAdvice {
    pub fec_mtu: u16,
    pub fec_overhead: f32,
    #[serde(default)]
    pub primary_path: Option<String>,
    #[serde(default)]
    pub sample_segments: HashMap<String, SampleBreakdown>,
}

/// One entry of `sample_segments`.
#[derive(Debug, Deserialize, Clone, Default)]
pub struct SampleBreakdown {
    pub total: usize,
    pub repair: usize,
}

/// `obfuscation` of [`P2pAssistResponse`].
#[derive(Debug, Deserialize, Clone, Default)]
pub struct ObfuscationAdvice {
    #[serde(default)]
    pub reality_fingerprint_hex: Option<String>,
    #[serde(default)]
    pub domain_fronting: bool,
    #[serde(default)]
    pub protocol_mimicry: bool,
    #[serde(default)]
    pub tor_bridge: bool,
}

/// `security` of [`P2pAssistResponse`] (also the body of `/api/security-stats`).
#[derive(Debug, Deserialize, Clone, PartialEq)]
pub struct SecuritySnapshot {
    pub noise_handshakes: u64,
    pub pq_handshakes: u64,
    pub fec_packets: u64,
    pub multipath_sessions: u64,
    pub average_paths: f64,
    pub censorship_deflections: u64,
}

/// What the client reads from an error answer.
#[derive(Debug, Deserialize)]
pub struct ProblemDetails {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// Required and optional keys of each body, as JSON pointers (wire-compat §8), for
/// [`super::check_strictness`]. Array entries are checked on their first element.
pub mod keys {
    pub const SERVER_INFO_REQUIRED: &[&str] = &["/domain", "/noise_public"];
    pub const SERVER_INFO_OPTIONAL: &[&str] = &[
        "/device_ca_public",
        "/supported_patterns",
        "/supported_versions",
        "/pairing",
        "/pairing/auto_approve",
        "/pairing/pairing_ttl",
        "/pairing/max_auto_devices",
    ];
    pub const TICKET_REQUIRED: &[&str] = &[
        "/pair_code",
        "/issued_at",
        "/expires_at",
        "/ttl",
        "/device_seed",
    ];
    pub const TICKET_OPTIONAL: &[&str] = &["/issuer_device_id"];
    pub const CLAIM_REQUIRED: &[&str] = &[
        "/device_id",
        "/private_key",
        "/public_key",
        "/seed",
        "/issuer_device_id",
        "/user",
        "/user/id",
        "/user/handle",
    ];
    pub const CLAIM_OPTIONAL: &[&str] = &[
        "/user/display_name",
        "/user/avatar_url",
        "/device_name",
        "/device_certificate",
        "/device_ca_public",
    ];
    pub const DEVICES_REQUIRED: &[&str] = &[
        "/devices",
        "/devices/0/device_id",
        "/devices/0/status",
        "/devices/0/created_at",
        "/devices/0/public_key",
    ];
    pub const DEVICES_OPTIONAL: &[&str] = &["/devices/0/current"];
    pub const FRIENDS_REQUIRED: &[&str] = &["/friends", "/friends/0/user_id"];
    pub const FRIENDS_OPTIONAL: &[&str] = &["/friends/0/handle", "/friends/0/alias"];
    pub const ASSIST_REQUIRED: &[&str] = &[
        "/noise",
        "/noise/pattern",
        "/noise/prologue_hex",
        "/noise/device_seed_hex",
        "/noise/static_public_hex",
        "/pq",
        "/pq/identity_public_hex",
        "/pq/signed_prekey_public_hex",
        "/pq/kem_public_hex",
        "/pq/signature_public_hex",
        "/transports",
        "/transports/0/path_id",
        "/transports/0/transport",
        "/transports/0/resistance",
        "/transports/0/latency",
        "/transports/0/throughput",
        "/multipath",
        "/multipath/fec_mtu",
        "/multipath/fec_overhead",
        "/obfuscation",
        "/security",
        "/security/noise_handshakes",
        "/security/pq_handshakes",
        "/security/fec_packets",
        "/security/multipath_sessions",
        "/security/average_paths",
        "/security/censorship_deflections",
    ];
    pub const ASSIST_OPTIONAL: &[&str] = &[
        "/multipath/primary_path",
        "/obfuscation/domain_fronting",
        "/obfuscation/protocol_mimicry",
        "/obfuscation/tor_bridge",
    ];
    pub const SECURITY_REQUIRED: &[&str] = &[
        "/noise_handshakes",
        "/pq_handshakes",
        "/fec_packets",
        "/multipath_sessions",
        "/average_paths",
        "/censorship_deflections",
    ];
}
