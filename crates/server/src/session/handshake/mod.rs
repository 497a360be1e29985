//! The device handshake: HELLO → AUTH (Noise message 2) → AUTH (message 3) → ACK.
//!
//! The protocol itself is the sans-IO machine of `commucat-handshake`
//! ([`commucat_handshake::server`]); this module drives it on a connection: it receives and
//! sends the frames, answers the machine's queries from the store, the replay cache, the key
//! set and the clock, supplies the operating system's randomness, and counts and records what
//! happened (metrics, ledger, logs).

mod driver;
mod store;

use std::sync::Arc;

use commucat_keys::{DeviceKeyPair, HandshakePattern};
use commucat_store::{Store, UserRecord};

pub use commucat_handshake::server::NoiseKey;
pub use commucat_handshake::{
    CAP_ADAPTIVE_OBF, CAP_DELIVERY_RECEIPTS, CAP_FEC, CAP_NOISE_TRANSPORT, CAP_PQ_HYBRID,
    FailReason, SUPPORTED_CAPABILITIES, Stage,
};
pub use driver::report_failure;

use super::ik_replay::ReplayCache;
use crate::config::BoundSettings;
use crate::ledger::Ledger;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::profile::ProfileBounds;
use crate::router::presence::Presence;

/// A failed handshake: the ERROR to send (if the stream can still carry one) and why.
pub type HandshakeFailure = commucat_handshake::HandshakeError;

/// Everything the handshake needs from configuration.
#[derive(Debug)]
pub struct HandshakeSettings {
    /// Server domain, bound into every Schnorr proof.
    pub domain: String,
    /// Noise prologue.
    pub prologue: Vec<u8>,
    /// Active Noise static keys, newest first; message 1 is tried against each. A key reload
    /// replaces the set; a handshake uses the set in force when its message 1 arrived.
    pub noise_keys: Live<Vec<NoiseKey>>,
    /// Device CA that issues device certificates.
    pub device_ca: DeviceKeyPair,
    /// Register unknown devices without pairing.
    pub auto_approve: bool,
    /// Most active devices a user may gain by auto-approval (0 = unlimited).
    pub max_auto_devices_per_user: u32,
    /// Validity of issued certificates, seconds.
    pub certificate_validity_secs: i64,
    /// Re-issue a presented certificate with less than this left, seconds.
    pub renewal_margin_secs: i64,
    /// Session lifetime (REST bearer validity), seconds.
    pub session_ttl_secs: i64,
    /// Keepalive interval advertised in the ACK, seconds.
    pub keepalive_secs: u64,
    /// Accepted clock skew for certificate `issued_at`, seconds.
    pub clock_skew_secs: i64,
    /// Lengths of the profile fields a HELLO may set and message 2 may carry.
    pub profile: ProfileBounds,
    /// Accept `pq-hybrid` (`crypto.pq_hybrid`).
    pub pq_hybrid: bool,
    /// Accept `adaptive-obf` (`crypto.adaptive_obf`).
    pub adaptive_obf: bool,
    /// Padding bound of the wrappers the server sends (`crypto.obf_max_padding`).
    pub obf_max_padding: u8,
}

/// What a successful handshake established.
#[derive(Debug)]
pub struct Established {
    /// Session id (REST bearer token).
    pub session_id: String,
    /// The device.
    pub device_id: String,
    /// Its owner.
    pub user: UserRecord,
    /// Negotiated protocol version.
    pub protocol_version: u16,
    /// Pattern used.
    pub pattern: HandshakePattern,
    /// Capabilities accepted for this session.
    pub accepted_capabilities: Vec<String>,
    /// Session expiry, Unix seconds.
    pub expires_at: i64,
    /// Version of the server Noise key the client addressed.
    pub noise_key_version: u32,
    /// Whether the device was registered before this handshake.
    pub device_known: bool,
    /// Whether the client presented a device certificate.
    pub had_certificate: bool,
    /// Whether the ACK carried a newly issued certificate (first registration or renewal).
    pub issued_certificate: bool,
    /// Whether the session is a `pq-hybrid` one (records keyed from the hybrid material).
    pub pq_hybrid: bool,
    /// Whether frames are wrapped in `adaptive-obf` packets.
    pub adaptive_obf: bool,
}

/// Runs handshakes against a device registry.
#[derive(Debug, Clone)]
pub struct Handshaker {
    settings: Arc<HandshakeSettings>,
    store: Arc<dyn Store>,
    ledger: Ledger,
    /// Counts the handshake's frames in `frames_in`/`frames_out`.
    metrics: Arc<Metrics>,
    /// Ephemerals of accepted IK message 1s, to refuse a replayed HELLO.
    replays: Arc<ReplayCache>,
    /// The deployment's shared registry, to refuse a HELLO another node accepted.
    shared_replays: Option<Arc<dyn Presence>>,
}

impl Handshaker {
    /// A handshaker using `store` as the device registry.
    #[must_use]
    pub fn new(settings: Arc<HandshakeSettings>, store: Arc<dyn Store>) -> Self {
        Self {
            settings,
            store,
            ledger: Ledger::off(),
            metrics: Arc::default(),
            replays: Arc::new(ReplayCache::new(
                crate::config::as_usize(BoundSettings::default().ik_replay_entries),
                BoundSettings::default().ik_replay_retention,
            )),
            shared_replays: None,
        }
    }

    /// This handshaker, refusing IK message 1s whose ephemeral `replays` has seen.
    #[must_use]
    pub fn with_replay_cache(self, replays: Arc<ReplayCache>) -> Self {
        Self { replays, ..self }
    }

    /// This handshaker, also recording accepted IK ephemerals in `registry` (shared by the
    /// nodes of a deployment, [`Presence::mark_once`]).
    #[must_use]
    pub fn with_shared_replays(self, registry: Arc<dyn Presence>) -> Self {
        Self {
            shared_replays: Some(registry),
            ..self
        }
    }

    /// This handshaker, counting the frames it receives and sends in `metrics` (by type,
    /// beside those of established sessions).
    #[must_use]
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// This handshaker, recording outcomes and registrations in `ledger`.
    #[must_use]
    pub fn with_ledger(self, ledger: Ledger) -> Self {
        Self { ledger, ..self }
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &HandshakeSettings {
        &self.settings
    }
}
