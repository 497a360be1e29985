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
mod tests {
    use super::*;
    use crate::DeviceKeyPair;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn ca() -> DeviceKeyPair {
        DeviceKeyPair::from_seed(&[0xca; 32])
    }

    fn data(ca: &DeviceKeyPair) -> DeviceCertificateData {
        DeviceCertificateData {
            serial: u64::MAX,
            user_id: "user-1".into(),
            device_id: "device-1".into(),
            public_key: DeviceKeyPair::from_seed(&[0xde; 32]).public_key(),
            issuer: ca.public_key(),
            issued_at: NOW,
            expires_at: NOW + 30 * DAY,
        }
    }

    fn issued() -> (DeviceKeyPair, DeviceCertificate) {
        let ca = ca();
        let cert = DeviceCertificate::issue(ca.signing_key(), data(&ca)).unwrap();
        (ca, cert)
    }

    #[test]
    fn issue_and_verify() {
        let (ca, cert) = issued();
        assert_eq!(cert.verify(&ca.public_key(), NOW, 300), Ok(()));
        assert_eq!(cert.verify(&ca.public_key(), NOW + 30 * DAY, 0), Ok(()));
    }

    #[test]
    fn canonical_message_exact_bytes() {
        let (_, cert) = issued();
        let d = &cert.data;
        let expected = format!(
            "{{\"serial\":18446744073709551615,\"user_id\":\"user-1\",\"device_id\":\"device-1\",\
             \"public_key\":\"{}\",\"issuer\":\"{}\",\"issued_at\":1700000000,\"expires_at\":1702592000}}",
            encode_hex(&d.public_key),
            encode_hex(&d.issuer)
        );
        assert_eq!(d.canonical_message(), expected.as_bytes());
        assert_eq!(d.canonical_message(), serde_json::to_vec(d).unwrap());
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_byte() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        let mut d = data(&ca());
        d.user_id = format!("{all}/é😀\u{2028}");
        d.device_id = "\"\\".into();
        d.issued_at = i64::MIN;
        d.expires_at = -1;
        d.serial = 0;
        assert_eq!(d.canonical_message(), serde_json::to_vec(&d).unwrap());
    }

    #[test]
    fn wire_json_shape_and_round_trip() {
        let (_, cert) = issued();
        let json = serde_json::to_string(&cert).unwrap();
        let canonical = String::from_utf8(cert.data.canonical_message()).unwrap();
        let expected = format!(
            "{},\"signature\":\"{}\"}}",
            canonical.strip_suffix('}').unwrap(),
            encode_hex(&cert.signature)
        );
        assert_eq!(json, expected);
        let back: DeviceCertificate = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cert);
        // Full u64 serial survives.
        assert_eq!(back.data.serial, u64::MAX);
        // Uppercase hex and unknown keys are accepted.
        let upper = json.replace(
            &encode_hex(&cert.signature),
            &encode_hex(&cert.signature).to_uppercase(),
        );
        let with_extra = format!("{},\"extra\":1}}", upper.strip_suffix('}').unwrap());
        let back: DeviceCertificate = serde_json::from_str(&with_extra).unwrap();
        assert_eq!(back, cert);
    }

    #[test]
    fn wire_json_rejects_bad_fields() {
        let (_, cert) = issued();
        let json = serde_json::to_string(&cert).unwrap();
        let sig = encode_hex(&cert.signature);
        let short_sig = json.replace(&sig, &sig[..126]);
        assert!(serde_json::from_str::<DeviceCertificate>(&short_sig).is_err());
        let missing = json.replace(&format!(",\"signature\":\"{sig}\""), "");
        assert!(serde_json::from_str::<DeviceCertificate>(&missing).is_err());
        let negative_serial = json.replace("18446744073709551615", "-1");
        assert!(serde_json::from_str::<DeviceCertificate>(&negative_serial).is_err());
        let too_big = json.replace("18446744073709551615", "18446744073709551616");
        assert!(serde_json::from_str::<DeviceCertificate>(&too_big).is_err());
    }

    #[test]
    fn issue_requires_matching_issuer() {
        let ca = ca();
        let mut d = data(&ca);
        d.issuer = [1u8; 32];
        assert_eq!(
            DeviceCertificate::issue(ca.signing_key(), d),
            Err(CertificateError::IssuerMismatch)
        );
    }

    #[test]
    fn wrong_ca_rejected() {
        let (_, cert) = issued();
        let other = DeviceKeyPair::from_seed(&[0xcb; 32]);
        assert_eq!(
            cert.verify(&other.public_key(), NOW, 300),
            Err(CertificateError::IssuerMismatch)
        );
        // A certificate claiming another issuer but signed by the trusted CA fails too.
        let mut forged = cert.clone();
        forged.data.issuer = other.public_key();
        assert_eq!(
            forged.verify(&other.public_key(), NOW, 300),
            Err(CertificateError::BadSignature)
        );
    }

    #[test]
    fn tampered_fields_or_signature_rejected() {
        let (ca, cert) = issued();
        let trusted = ca.public_key();
        let mutations: [fn(&mut DeviceCertificate); 8] = [
            |c| c.signature[0] ^= 1,
            |c| c.signature[63] ^= 0x80,
            |c| c.data.serial ^= 1,
            |c| c.data.user_id.push('x'),
            |c| c.data.device_id = "device-2".into(),
            |c| c.data.public_key[5] ^= 1,
            |c| c.data.issued_at -= 1,
            |c| c.data.expires_at += 1,
        ];
        for mutate in mutations {
            let mut tampered = cert.clone();
            mutate(&mut tampered);
            assert_eq!(
                tampered.verify(&trusted, NOW, 300),
                Err(CertificateError::BadSignature)
            );
        }
    }

    #[test]
    fn expiry_and_not_yet_valid() {
        let (ca, cert) = issued();
        let trusted = ca.public_key();
        let expires = cert.data.expires_at;
        assert_eq!(cert.verify(&trusted, expires, 300), Ok(()));
        assert_eq!(
            cert.verify(&trusted, expires + 1, 300),
            Err(CertificateError::Expired {
                expires_at: expires,
                now: expires + 1
            })
        );
        // issued_at <= now + skew.
        assert_eq!(cert.verify(&trusted, NOW - 300, 300), Ok(()));
        assert_eq!(
            cert.verify(&trusted, NOW - 301, 300),
            Err(CertificateError::NotYetValid {
                issued_at: NOW,
                now: NOW - 301
            })
        );
        assert_eq!(
            cert.verify(&trusted, NOW - 1, -5),
            Err(CertificateError::NotYetValid {
                issued_at: NOW,
                now: NOW - 1
            })
        );
        // Extreme clocks do not overflow.
        assert!(matches!(
            cert.verify(&trusted, i64::MAX, i64::MAX),
            Err(CertificateError::Expired { .. })
        ));
        assert!(matches!(
            cert.verify(&trusted, i64::MIN, i64::MAX),
            Err(CertificateError::NotYetValid { .. })
        ));
        assert_eq!(cert.verify(&trusted, NOW, i64::MAX), Ok(()));
    }

    #[test]
    fn empty_window_rejected() {
        let ca = ca();
        let mut d = data(&ca);
        d.expires_at = d.issued_at;
        let cert = DeviceCertificate::issue(ca.signing_key(), d).unwrap();
        assert_eq!(
            cert.verify(&ca.public_key(), NOW, 300),
            Err(CertificateError::InvalidValidityWindow {
                issued_at: NOW,
                expires_at: NOW
            })
        );
    }

    #[test]
    fn invalid_ca_key_reported() {
        let (_, mut cert) = issued();
        // Find a 32-byte string that is not a valid Ed25519 point.
        let bad = (0u8..=255)
            .map(|b| {
                let mut k = [b; 32];
                k[31] &= 0x7f;
                k
            })
            .find(|k| VerifyingKey::from_bytes(k).is_err())
            .unwrap();
        cert.data.issuer = bad;
        assert_eq!(
            cert.verify(&bad, NOW, 300),
            Err(CertificateError::InvalidCaKey)
        );
    }

    #[test]
    fn remaining_validity_helper() {
        let (_, cert) = issued();
        assert_eq!(
            cert.remaining_validity(NOW),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            cert.remaining_validity(cert.data.expires_at),
            Some(Duration::ZERO)
        );
        assert_eq!(cert.remaining_validity(cert.data.expires_at + 1), None);
        let mut d = cert.data.clone();
        d.expires_at = i64::MAX;
        assert_eq!(
            d.remaining_validity(i64::MIN),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[\"\\\\/\\x00-\\x1f\\x7f a-zé😀\u{2028}]{0,24}",
        ]
    }

    proptest! {
        #[test]
        fn json_round_trip_and_canonical_matches_serde_json(
            serial in any::<u64>(),
            user_id in tricky_string(),
            device_id in tricky_string(),
            public_key in any::<[u8; 32]>(),
            issued_at in any::<i64>(),
            expires_at in any::<i64>(),
            signature in any::<[u8; 32]>(),
        ) {
            let d = DeviceCertificateData {
                serial,
                user_id,
                device_id,
                public_key,
                issuer: [0x11; 32],
                issued_at,
                expires_at,
            };
            prop_assert_eq!(d.canonical_message(), serde_json::to_vec(&d).unwrap());
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&signature);
            sig[32..].copy_from_slice(&signature);
            let cert = DeviceCertificate { data: d, signature: sig };
            let json = serde_json::to_string(&cert).unwrap();
            let back: DeviceCertificate = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &cert);
            // Pretty-printed input decodes to the same certificate.
            let pretty = serde_json::to_string_pretty(&cert).unwrap();
            let back: DeviceCertificate = serde_json::from_str(&pretty).unwrap();
            prop_assert_eq!(back, cert);
        }

        #[test]
        fn issued_certificates_verify(
            serial in any::<u64>(),
            user_id in tricky_string(),
            device_id in tricky_string(),
            issued_at in -1_000_000i64..1_000_000,
            lifetime in 1i64..1_000_000,
        ) {
            let ca = ca();
            let d = DeviceCertificateData {
                serial,
                user_id,
                device_id,
                public_key: [0x22; 32],
                issuer: ca.public_key(),
                issued_at,
                expires_at: issued_at + lifetime,
            };
            let cert = DeviceCertificate::issue(ca.signing_key(), d).unwrap();
            let json = serde_json::to_string(&cert).unwrap();
            let back: DeviceCertificate = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.verify(&ca.public_key(), issued_at, 0), Ok(()));
        }
    }
}
