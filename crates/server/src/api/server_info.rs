//! `GET /api/server-info` (alias `/api/server/info`): what a client pins and negotiates
//! (wire-compat §8).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use crate::config::Config;
use crate::keys::ServerKeys;
use crate::keys::pq::PqKeys;

/// Noise handshake patterns the server answers.
pub(crate) const SUPPORTED_PATTERNS: [&str; 2] = ["XK", "IK"];
/// Version number of the only Noise static key so far.
pub(crate) const NOISE_KEY_VERSION: u32 = 1;

/// Body of `GET /api/server-info`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ServerInfo {
    /// The server's domain.
    pub domain: String,
    /// Newest Noise static public key, hex; clients pin it.
    pub noise_public: String,
    /// All active Noise static public keys.
    pub noise_keys: Vec<NoiseKey>,
    /// Device-CA Ed25519 public key, hex; verifies device certificates.
    pub device_ca_public: String,
    /// Noise patterns, e.g. `["XK","IK"]`.
    pub supported_patterns: Vec<&'static str>,
    /// CCP protocol versions.
    pub supported_versions: Vec<u16>,
    /// Session lifetimes.
    pub session: SessionInfo,
    /// Presence lifetime.
    pub presence: PresenceInfo,
    /// Device pairing policy.
    pub pairing: PairingInfo,
    /// Device key rotation policy (`POST /api/devices/rotate`).
    pub device_rotation: DeviceRotationInfo,
    /// Resource limits a client must respect.
    pub limits: LimitsInfo,
    /// The server's post-quantum keys.
    pub post_quantum: PostQuantumInfo,
    /// Optional protocol features.
    pub capabilities: CapabilitiesInfo,
    /// This domain's federation key, when the server has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation: Option<FederationInfo>,
}

/// `federation` object (also served at `/.well-known/commucat-federation`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FederationInfo {
    /// The domain events from this server name as `origin`.
    pub domain: String,
    /// Whether this server exchanges events with peers (`federation.enabled`).
    pub enabled: bool,
    /// Ed25519 federation public key, hex: peers pin it.
    pub public_key: String,
    /// Signature scheme of events (wire-compat §13).
    pub signature: &'static str,
    /// Where peers post events.
    pub events_path: &'static str,
    /// The last rotation of the key, during its grace period: the previous key, until when
    /// peers still accept it, and its signature over `public_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::keys::federation::Rotation>,
}

/// `post_quantum` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PostQuantumInfo {
    /// Whether handshakes negotiate post-quantum keys: `pq-hybrid` is accepted
    /// (`crypto.pq_hybrid`). The keys below are the server's own, published for peers (e.g. in
    /// `/api/p2p/assist`); a hybrid session uses the client's bundle, not them.
    pub enabled: bool,
    /// `ML-KEM-768`.
    pub kem_algorithm: &'static str,
    /// `ML-DSA-65`.
    pub signature_algorithm: &'static str,
    /// ML-KEM-768 encapsulation key, hex.
    pub kem_public_hex: String,
    /// ML-DSA-65 verification key, hex.
    pub signature_public_hex: String,
}

/// `capabilities` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CapabilitiesInfo {
    /// HELLO `capabilities` the server accepts (echoed in `accepted_capabilities`).
    pub handshake: Vec<&'static str>,
    /// `/connect` modes.
    pub connect_modes: Vec<&'static str>,
    /// Pairing claim forms: `server-key` (the deployed one: the server generates the device
    /// key) and `public-key` (the device sends its public key; preferred).
    pub pairing_claim: Vec<&'static str>,
}

/// One Noise static public key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct NoiseKey {
    /// Key version, increasing with rotation.
    pub version: u32,
    /// X25519 public key, hex.
    pub public: String,
}

/// `session` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SessionInfo {
    /// Session token lifetime in seconds.
    pub ttl_seconds: u64,
    /// Keepalive interval in seconds.
    pub keepalive_interval: u64,
}

/// `presence` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PresenceInfo {
    /// Presence entry lifetime in seconds.
    pub ttl_seconds: u64,
}

/// `pairing` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PairingInfo {
    /// New devices are approved without a pairing code.
    pub auto_approve: bool,
    /// Pairing code lifetime in seconds.
    pub pairing_ttl: u64,
    /// Devices one user may add by auto-approval.
    pub max_auto_devices: u32,
}

/// `device_rotation` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DeviceRotationInfo {
    /// Whether `POST /api/devices/rotate` is accepted.
    pub enabled: bool,
    /// Shortest time between two rotations of one device, seconds (the first is not limited).
    pub min_interval_seconds: u64,
    /// Largest accepted distance between a proof's `issued_at` and the server clock, seconds.
    pub proof_ttl_seconds: u64,
}

/// `limits` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LimitsInfo {
    /// Largest CCP-1 frame the server accepts, in bytes.
    pub max_frame_len: usize,
}

impl ServerInfo {
    /// The body for this configuration and these keys.
    #[must_use]
    pub fn new(config: &Config, keys: &ServerKeys, pq: &PqKeys) -> Self {
        let noise_public = hex::encode(keys.noise.public());
        Self {
            domain: config.server.domain.clone(),
            noise_keys: vec![NoiseKey {
                version: NOISE_KEY_VERSION,
                public: noise_public.clone(),
            }],
            noise_public,
            device_ca_public: keys.device_ca.public_key_hex(),
            supported_patterns: SUPPORTED_PATTERNS.to_vec(),
            supported_versions: commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS.to_vec(),
            session: SessionInfo {
                ttl_seconds: config.session.ttl.as_secs(),
                keepalive_interval: config.session.keepalive.as_secs(),
            },
            presence: PresenceInfo {
                ttl_seconds: config.session.presence_ttl.as_secs(),
            },
            pairing: PairingInfo {
                auto_approve: config.devices.auto_approve,
                pairing_ttl: config.devices.pairing_ttl.as_secs(),
                max_auto_devices: config.devices.max_auto_devices_per_user,
            },
            device_rotation: DeviceRotationInfo {
                enabled: config.devices.rotation_enabled,
                min_interval_seconds: config.devices.rotation_min_interval.as_secs(),
                proof_ttl_seconds: config.devices.rotation_proof_ttl.as_secs(),
            },
            limits: LimitsInfo {
                max_frame_len: config.limits.max_frame_len,
            },
            post_quantum: PostQuantumInfo {
                enabled: config.crypto.pq_hybrid,
                kem_algorithm: crate::keys::pq::KEM_ALGORITHM,
                signature_algorithm: crate::keys::pq::SIGNATURE_ALGORITHM,
                kem_public_hex: hex::encode(pq.kem_public()),
                signature_public_hex: hex::encode(pq.signature_public()),
            },
            capabilities: CapabilitiesInfo {
                handshake: crate::session::handshake::SUPPORTED_CAPABILITIES
                    .iter()
                    .copied()
                    .chain(
                        config
                            .crypto
                            .pq_hybrid
                            .then_some(crate::session::handshake::CAP_PQ_HYBRID),
                    )
                    .chain(
                        config
                            .crypto
                            .adaptive_obf
                            .then_some(crate::session::handshake::CAP_ADAPTIVE_OBF),
                    )
                    .collect(),
                connect_modes: crate::connect::mode::ConnectMode::ALL
                    .iter()
                    .map(|m| m.label())
                    .collect(),
                pairing_claim: vec!["server-key", "public-key"],
            },
            federation: None,
        }
    }

    /// This body publishing the federation key `public` of `domain` (and its last `rotation`).
    #[must_use]
    pub fn with_federation(
        self,
        domain: &str,
        enabled: bool,
        public: &[u8; 32],
        rotation: Option<&crate::keys::federation::Rotation>,
    ) -> Self {
        Self {
            federation: Some(FederationInfo {
                domain: domain.to_owned(),
                enabled,
                public_key: hex::encode(public),
                signature: "ed25519(blake3)",
                events_path: "/federation/events",
                rotation: rotation.cloned(),
            }),
            ..self
        }
    }
}

impl ServerInfo {
    /// This body listing `accepted` as `noise_keys` (current first, the one also advertised
    /// as `noise_public`).
    #[must_use]
    pub fn with_noise_keys(self, accepted: &[crate::keys::keyring::AcceptedKey]) -> Self {
        let Some(current) = accepted.first() else {
            return self;
        };
        Self {
            noise_public: hex::encode(current.key.public()),
            noise_keys: accepted
                .iter()
                .map(|k| NoiseKey {
                    version: k.version,
                    public: hex::encode(k.key.public()),
                })
                .collect(),
            ..self
        }
    }
}

/// `GET /api/server-info` → 200 with [`ServerInfo`].
#[utoipa::path(
    get, path = "/api/server-info", tag = "server",
    responses((status = 200, description = "What a client pins and negotiates", body = ServerInfo))
)]
pub(crate) async fn server_info(State(state): State<AppState>) -> Json<ServerInfo> {
    Json(state.server_info.load().as_ref().clone())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use commucat_keys::DeviceKeyPair;

    use super::*;
    use crate::keys::NoiseStaticKey;

    #[test]
    fn body_carries_config_and_key_values() {
        let mut config = Config::default();
        config.server.domain = "chat.example.org".to_owned();
        config.session.ttl = Duration::from_secs(120);
        config.session.keepalive = Duration::from_secs(7);
        config.session.presence_ttl = Duration::from_secs(33);
        config.devices.auto_approve = false;
        config.devices.max_auto_devices_per_user = 3;
        config.limits.max_frame_len = 65536;
        let keys = ServerKeys {
            noise: NoiseStaticKey::from_private(&[1; 32]),
            device_ca: DeviceKeyPair::from_seed(&[2; 32]),
        };
        let pq = PqKeys::generate().unwrap();
        let mut body = serde_json::to_value(ServerInfo::new(&config, &keys, &pq)).unwrap();
        let post_quantum = body
            .as_object_mut()
            .unwrap()
            .remove("post_quantum")
            .unwrap();
        assert_eq!(
            post_quantum,
            serde_json::json!({
                "enabled": true,
                "kem_algorithm": "ML-KEM-768",
                "signature_algorithm": "ML-DSA-65",
                "kem_public_hex": hex::encode(pq.kem_public()),
                "signature_public_hex": hex::encode(pq.signature_public()),
            })
        );
        let capabilities = body
            .as_object_mut()
            .unwrap()
            .remove("capabilities")
            .unwrap();
        assert_eq!(
            capabilities["handshake"],
            serde_json::json!([
                "noise-transport",
                "delivery-receipts",
                "fec",
                "pq-hybrid",
                "adaptive-obf"
            ])
        );
        assert_eq!(
            capabilities["pairing_claim"],
            serde_json::json!(["server-key", "public-key"])
        );
        assert!(capabilities["connect_modes"].as_array().unwrap().len() >= 4);
        let noise_public = hex::encode(commucat_keys::x25519_public(&[1; 32]));
        assert_eq!(
            body,
            serde_json::json!({
                "domain": "chat.example.org",
                "noise_public": noise_public,
                "noise_keys": [{"version": 1, "public": noise_public}],
                "device_ca_public": DeviceKeyPair::from_seed(&[2; 32]).public_key_hex(),
                "supported_patterns": ["XK", "IK"],
                "supported_versions": [1],
                "session": {"ttl_seconds": 120, "keepalive_interval": 7},
                "presence": {"ttl_seconds": 33},
                "pairing": {"auto_approve": false, "pairing_ttl": 300, "max_auto_devices": 3},
                "device_rotation": {"enabled": true, "min_interval_seconds": 3600,
                                    "proof_ttl_seconds": 300},
                "limits": {"max_frame_len": 65536},
            })
        );
    }
}
