//! The server's own documented answers (docs/rest.md, the OpenAPI document) beyond what the
//! deployed client reads: every field required.

use serde::Deserialize;

/// An RFC 9457 problem as the server writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// `/healthz` and `/readyz`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
}

/// The 503 of `/readyz`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotReady {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub down: Vec<String>,
}

/// `POST /api/devices/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub device_id: String,
    pub status: String,
}

/// `POST /api/pair` beyond the deployed ticket.
#[derive(Debug, Deserialize)]
pub struct Issued {
    pub pair_code: String,
    pub ttl: i64,
    pub issuer_device_id: String,
    pub device_ca_public: String,
}

/// `POST /api/pair/claim` with `public_key` (no private key, no seed).
#[derive(Debug, Deserialize)]
pub struct PublicKeyClaim {
    pub device_id: String,
    pub public_key: String,
    pub issuer_device_id: String,
    pub user_id: String,
    pub device_certificate: commucat_crypto::DeviceCertificate,
    pub device_ca_public: String,
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub seed: Option<String>,
}

/// `POST /api/devices/rotate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotated {
    pub device_id: String,
    pub status: String,
    pub public_key: String,
    pub previous_public_key: String,
    pub rotated_at: String,
    pub device_certificate: commucat_crypto::DeviceCertificate,
    pub device_ca_public: String,
}
