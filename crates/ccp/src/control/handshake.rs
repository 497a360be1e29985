//! HELLO, both AUTH messages, the Noise message-2 session payload and the final handshake ACK.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::UserInfo;

/// HELLO (client → server): starts the Noise handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Noise pattern, `"XK"` or `"IK"` (deployed clients upper-case it; compare case-insensitively).
    pub pattern: String,
    /// Protocol versions the client speaks (specification name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<Vec<u64>>,
    /// Single protocol version (legacy name, the only one deployed clients send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u64>,
    /// Opaque device id.
    pub device_id: String,
    /// Hex Noise message 1.
    pub handshake: String,
    /// Hex X25519 static public key the client will reveal in the handshake.
    pub client_static: String,
    /// Hex Ed25519 long-term device public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_public: Option<String>,
    /// Capabilities the client asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Schnorr proof of the device key bound to this handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zkp: Option<HandshakeProofJson>,
    /// The device-CA public key the client pins (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ca_public: Option<String>,
    /// Profile hints: attach to an existing user (with proof) or request a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    /// The device certificate the client holds, verbatim (kept as JSON so the full-width
    /// `serial` and the signed bytes survive untouched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Value>,
    /// Post-quantum credentials, when `pq-hybrid` is requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_bundle: Option<PqBundle>,
}

impl Hello {
    /// The versions the client offers: `supported_versions` if present, else `protocol_version`,
    /// else `[1]` (a client announcing nothing is a v1 client).
    #[must_use]
    pub fn offered_versions(&self) -> Vec<u64> {
        match (&self.supported_versions, self.protocol_version) {
            (Some(list), _) => list.clone(),
            (None, Some(single)) => vec![single],
            (None, None) => vec![u64::from(crate::PROTOCOL_VERSION)],
        }
    }

    /// Whether the client asked for `capability`.
    #[must_use]
    pub fn requests(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// The Schnorr handshake proof as JSON: two 64-character hex strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeProofJson {
    /// Hex compressed Edwards point R.
    pub commitment: String,
    /// Hex scalar s.
    pub response: String,
}

/// Post-quantum credential bundle sent in HELLO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqBundle {
    /// Base64 ML-KEM-768 encapsulation key.
    pub kem_public: String,
    /// Unused in HELLO; present in the specification's example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kem_ciphertext: Option<String>,
    /// Base64 ML-DSA-65 verifying key.
    pub signature_public: String,
    /// Base64 one-time ML-KEM keys for later ratchet steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_time_keys: Vec<String>,
}

/// Key-derivation context returned with the ML-KEM ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqContext {
    /// KDF name, `"hkdf-sha3-512"`.
    pub kdf: String,
    /// Base64 salt.
    pub salt: String,
    /// Domain-separation label.
    pub label: String,
}

/// AUTH (server → client): carries Noise message 2 and bootstrap metadata.
///
/// Deployed clients read only `handshake`; the session id they use lives in the encrypted
/// message-2 payload ([`SessionPayload`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerAuth {
    /// Hex Noise message 2.
    pub handshake: String,
    /// Session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Echo of the client's device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Hex server static Noise key used for this handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_static: Option<String>,
    /// Negotiated protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u64>,
    /// Versions the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<Vec<u64>>,
    /// Hex device-CA public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ca_public: Option<String>,
    /// Resolved user profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    /// Whether the device still needs pairing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_required: Option<bool>,
    /// The subset of the client's capabilities the server accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_capabilities: Option<Vec<String>>,
    /// Base64 ML-KEM ciphertext (`pq-hybrid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_ciphertext: Option<String>,
    /// Hybrid KDF context (`pq-hybrid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_context: Option<PqContext>,
}

/// AUTH (client → server): Noise message 3 (empty for IK, whose handshake ends at message 2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAuth {
    /// Hex Noise message 3.
    #[serde(default)]
    pub handshake: String,
    /// Base64 ML-DSA-65 transcript signature (`pq-hybrid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_signature: Option<String>,
}

/// The JSON the server encrypts inside Noise message 2. Deployed clients require `session`
/// (ASCII, at least 8 bytes) and read `user`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPayload {
    /// Session id, also the REST bearer token.
    pub session: String,
    /// Server domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Negotiated protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u64>,
    /// User id of the device's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Owner profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    /// Accepted capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_capabilities: Option<Vec<String>>,
}

/// Validity summary of a certificate (the deployed `certificate` key of the handshake ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// Certificate serial.
    pub serial: u64,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Expiry time, Unix seconds.
    pub expires_at: i64,
}

/// The final handshake ACK (server → client). Deployed clients require `"handshake":"ok"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeAck {
    /// Always `"ok"`.
    pub handshake: String,
    /// Session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Owner's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Owner profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    /// Whether further devices of this user need pairing.
    #[serde(default)]
    pub pairing_required: bool,
    /// Hex device-CA public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ca_public: Option<String>,
    /// Hex server Noise static key that completed the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_public: Option<String>,
    /// Accepted capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_capabilities: Option<Vec<String>>,
    /// Negotiated protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u64>,
    /// Seconds between keepalives the server expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_interval: Option<u64>,
    /// Summary of the device certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSummary>,
    /// A newly issued device certificate (full wire object), when one was issued or renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_certificate: Option<Value>,
}

impl HandshakeAck {
    /// Whether this is the successful end of a handshake.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.handshake == "ok"
    }
}
