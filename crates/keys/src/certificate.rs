//! Device certificates (wire-compat §5): a CA's Ed25519 signature binding a device key to a
//! user id and device id for a validity window.
//!
//! Wire form (one flat JSON object, keys in this order):
//!
//! ```text
//! {"serial":<u64>,"user_id":"…","device_id":"…","public_key":"<64 hex>","issuer":"<64 hex>",
//!  "issued_at":<i64>,"expires_at":<i64>,"signature":"<128 hex>"}
//! ```
//!
//! The signed bytes ([`DeviceCertificateData::canonical_message`]) are the first seven keys as
//! compact JSON, byte-identical to `serde_json::to_vec` of `commucat_crypto::DeviceCertificateData`.

use std::time::Duration;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::encoding::{encode_hex, serde_hex};

/// Clock skew tolerated by the deployed client and the reference server (seconds).
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Why a certificate was not issued or not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The certificate's `issuer` is not the trusted CA key (on verify), or not the public key
    /// of the signing key (on issue).
    #[error("certificate issuer does not match the CA key")]
    IssuerMismatch,
    /// The trusted CA public key is not a valid Ed25519 point.
    #[error("CA public key is not a valid Ed25519 key")]
    InvalidCaKey,
    /// The Ed25519 signature does not verify over the canonical message.
    #[error("certificate signature does not verify")]
    BadSignature,
    /// `issued_at` is not strictly before `expires_at`.
    #[error(
        "certificate validity window is empty (issued_at {issued_at} >= expires_at {expires_at})"
    )]
    InvalidValidityWindow {
        /// The certificate's `issued_at`.
        issued_at: i64,
        /// The certificate's `expires_at`.
        expires_at: i64,
    },
    /// `now` is after `expires_at`.
    #[error("certificate expired at {expires_at} (now {now})")]
    Expired {
        /// The certificate's `expires_at`.
        expires_at: i64,
        /// The time the check was made at.
        now: i64,
    },
    /// `issued_at` is later than `now` plus the allowed clock skew.
    #[error("certificate not valid before {issued_at} (now {now})")]
    NotYetValid {
        /// The certificate's `issued_at`.
        issued_at: i64,
        /// The time the check was made at.
        now: i64,
    },
}

/// The signed content of a device certificate. Field order is part of the wire format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceCertificateData {
    /// Serial number (a random `u64` on the reference server; full range on the wire).
    pub serial: u64,
    /// Owning user's id.
    pub user_id: String,
    /// Device id.
    pub device_id: String,
    /// The device's Ed25519 public key (`device_public`), hex on the wire.
    #[serde(with = "serde_hex")]
    pub public_key: [u8; 32],
    /// The CA's Ed25519 public key, hex on the wire.
    #[serde(with = "serde_hex")]
    pub issuer: [u8; 32],
    /// Start of validity, Unix seconds.
    pub issued_at: i64,
    /// End of validity (inclusive), Unix seconds.
    pub expires_at: i64,
}

impl DeviceCertificateData {
    /// The exact bytes that are signed: compact JSON of the seven fields in declaration order,
    /// with serde_json's string escaping (`"` and `\` escaped; `\b \f \n \r \t` short forms;
    /// other C0 controls as `\u00xx` lowercase; DEL, `/` and non-ASCII emitted raw).
    ///
    /// Written by hand so the signed bytes cannot change with a serde_json upgrade; tests pin
    /// it to serde_json and to the deployed client's crate.
    #[must_use]
    pub fn canonical_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.user_id.len() + self.device_id.len());
        out.extend_from_slice(b"{\"serial\":");
        out.extend_from_slice(self.serial.to_string().as_bytes());
        out.extend_from_slice(b",\"user_id\":");
        write_json_string(&mut out, &self.user_id);
        out.extend_from_slice(b",\"device_id\":");
        write_json_string(&mut out, &self.device_id);
        out.extend_from_slice(b",\"public_key\":\"");
        out.extend_from_slice(encode_hex(&self.public_key).as_bytes());
        out.extend_from_slice(b"\",\"issuer\":\"");
        out.extend_from_slice(encode_hex(&self.issuer).as_bytes());
        out.extend_from_slice(b"\",\"issued_at\":");
        out.extend_from_slice(self.issued_at.to_string().as_bytes());
        out.extend_from_slice(b",\"expires_at\":");
        out.extend_from_slice(self.expires_at.to_string().as_bytes());
        out.push(b'}');
        out
    }

    /// Time left until `expires_at` as seen at `now_unix`; `None` once expired. A certificate
    /// is still valid at `now_unix == expires_at` (zero remaining).
    #[must_use]
    pub fn remaining_validity(&self, now_unix: i64) -> Option<Duration> {
        let remaining = i128::from(self.expires_at) - i128::from(now_unix);
        u64::try_from(remaining).ok().map(Duration::from_secs)
    }
}

/// Appends `value` as a JSON string literal, escaping exactly as serde_json's compact writer.
fn write_json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    for &byte in value.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(lower_hex_digit(byte >> 4));
                out.push(lower_hex_digit(byte & 0x0f));
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// Lowercase hex digit for a nibble (`0..=15`).
fn lower_hex_digit(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'a' + (nibble & 0x0f) - 10,
    }
}

/// A signed device certificate. Serializes to the flat wire object of wire-compat §5.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "CertificateWire")]
pub struct DeviceCertificate {
    /// The signed fields.
    pub data: DeviceCertificateData,
    /// Ed25519 signature of [`DeviceCertificateData::canonical_message`] by the issuer.
    pub signature: [u8; 64],
}

impl DeviceCertificate {
    /// Signs `data` with the CA key.
    ///
    /// # Errors
    /// [`CertificateError::IssuerMismatch`] if `data.issuer` is not `ca`'s public key (the
    /// result would never verify).
    pub fn issue(ca: &SigningKey, data: DeviceCertificateData) -> Result<Self, CertificateError> {
        if ca.verifying_key().to_bytes() != data.issuer {
            return Err(CertificateError::IssuerMismatch);
        }
        let signature = ca.sign(&data.canonical_message()).to_bytes();
        Ok(Self { data, signature })
    }

    /// Full check against a trusted CA key at time `now_unix`: `issuer` equals
    /// `trusted_ca_public` byte for byte, the signature verifies over the canonical message,
    /// `issued_at < expires_at`, `now_unix <= expires_at` and
    /// `issued_at <= now_unix + max_clock_skew_secs` (negative skew counts as zero).
    ///
    /// Binding to a particular device (device id, user id, public key) is the caller's job.
    ///
    /// # Errors
    /// The first failing check as a [`CertificateError`].
    pub fn verify(
        &self,
        trusted_ca_public: &[u8; 32],
        now_unix: i64,
        max_clock_skew_secs: i64,
    ) -> Result<(), CertificateError> {
        self.verify_signature(trusted_ca_public)?;
        let data = &self.data;
        if data.issued_at >= data.expires_at {
            return Err(CertificateError::InvalidValidityWindow {
                issued_at: data.issued_at,
                expires_at: data.expires_at,
            });
        }
        if now_unix > data.expires_at {
            return Err(CertificateError::Expired {
                expires_at: data.expires_at,
                now: now_unix,
            });
        }
        if data.issued_at > now_unix.saturating_add(max_clock_skew_secs.max(0)) {
            return Err(CertificateError::NotYetValid {
                issued_at: data.issued_at,
                now: now_unix,
            });
        }
        Ok(())
    }

    /// Only the issuer and signature checks (what `commucat_crypto::DeviceCertificate::verify`
    /// does), without looking at the clock.
    ///
    /// # Errors
    /// [`CertificateError::IssuerMismatch`], [`CertificateError::InvalidCaKey`] or
    /// [`CertificateError::BadSignature`].
    pub fn verify_signature(&self, trusted_ca_public: &[u8; 32]) -> Result<(), CertificateError> {
        if self.data.issuer != *trusted_ca_public {
            return Err(CertificateError::IssuerMismatch);
        }
        let key = VerifyingKey::from_bytes(trusted_ca_public)
            .map_err(|_| CertificateError::InvalidCaKey)?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify(&self.data.canonical_message(), &signature)
            .map_err(|_| CertificateError::BadSignature)
    }

    /// The signed fields.
    #[must_use]
    pub fn data(&self) -> &DeviceCertificateData {
        &self.data
    }

    /// See [`DeviceCertificateData::remaining_validity`].
    #[must_use]
    pub fn remaining_validity(&self, now_unix: i64) -> Option<Duration> {
        self.data.remaining_validity(now_unix)
    }
}

impl Serialize for DeviceCertificate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let data = &self.data;
        let mut state = serializer.serialize_struct("DeviceCertificate", 8)?;
        state.serialize_field("serial", &data.serial)?;
        state.serialize_field("user_id", &data.user_id)?;
        state.serialize_field("device_id", &data.device_id)?;
        state.serialize_field("public_key", &encode_hex(&data.public_key))?;
        state.serialize_field("issuer", &encode_hex(&data.issuer))?;
        state.serialize_field("issued_at", &data.issued_at)?;
        state.serialize_field("expires_at", &data.expires_at)?;
        state.serialize_field("signature", &encode_hex(&self.signature))?;
        state.end()
    }
}

/// Flat wire shape used for decoding (unknown keys are ignored, as by the deployed client).
#[derive(Deserialize)]
struct CertificateWire {
    serial: u64,
    user_id: String,
    device_id: String,
    #[serde(with = "serde_hex")]
    public_key: [u8; 32],
    #[serde(with = "serde_hex")]
    issuer: [u8; 32],
    issued_at: i64,
    expires_at: i64,
    #[serde(with = "serde_hex")]
    signature: [u8; 64],
}

impl From<CertificateWire> for DeviceCertificate {
    fn from(wire: CertificateWire) -> Self {
        Self {
            data: DeviceCertificateData {
                serial: wire.serial,
                user_id: wire.user_id,
                device_id: wire.device_id,
                public_key: wire.public_key,
                issuer: wire.issuer,
                issued_at: wire.issued_at,
                expires_at: wire.expires_at,
            },
            signature: wire.signature,
        }
    }
}

#[cfg(test)]
mod tests;
