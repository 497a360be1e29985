//! The signed federation event as the deployed reference servers exchange it (wire-compat
//! §13), sans-IO: building, digesting, signing and verifying; no clock, no network.
//!
//! ```text
//! SignedEvent = {"event": {"event_id", "origin", "created_at", "payload", "scope"},
//!                "signature": [64 numbers], "digest": [32 numbers]}
//! digest      = BLAKE3(event_id ‖ origin ‖ scope ‖ i64le(created_at as ns since the epoch)
//!                      ‖ compact JSON of payload with object keys sorted)
//! signature   = Ed25519(origin's federation key, digest)
//! ```
//!
//! `created_at` is RFC 3339 (the reference writes chrono's form, `…T…[.fraction]Z`); an
//! instant outside what i64 nanoseconds hold digests as 0, as the reference's
//! `timestamp_nanos_opt().unwrap_or_default()` does.

use commucat_keys::{DeviceKeyPair, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a BLAKE3 digest.
pub const DIGEST_LEN: usize = 32;

/// The signed part of a federation event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per origin (the reference: hex BLAKE3 of a context string and the time).
    pub event_id: String,
    /// The sending domain.
    pub origin: String,
    /// When the origin built the event, RFC 3339 UTC.
    pub created_at: String,
    /// What the event carries (for a relayed frame: [`RelayPayload`]).
    pub payload: Value,
    /// The receiving domain.
    pub scope: String,
}

/// An [`Event`] with its digest and the origin's signature over the digest; byte vectors are
/// JSON arrays of numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// The signed event.
    pub event: Event,
    /// Ed25519 signature over [`Self::digest`] (64 bytes).
    pub signature: Vec<u8>,
    /// [`digest`] of the event (32 bytes).
    pub digest: Vec<u8>,
}

/// Why a signed event was not accepted as authentic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `digest` is not the digest of `event`.
    #[error("the digest does not match the event")]
    DigestMismatch,
    /// The signature is malformed or not the origin key's over the digest.
    #[error("the signature does not verify with the origin's key")]
    BadSignature,
}

/// The payload of an event that relays one CCP-1 frame to one device of the scope domain.
/// Only `payload` and `target` are required on receipt; the reference fills all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayPayload {
    /// The channel the frame travels on.
    #[serde(default)]
    pub channel: u64,
    /// The frame's sequence number as sent.
    #[serde(default)]
    pub sequence: u64,
    /// The encoded CCP-1 frame, hex.
    pub payload: String,
    /// The sending device (bare id on the origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The receiving device, `device@domain`.
    pub target: String,
    /// The origin's federation endpoint (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_endpoint: Option<String>,
    /// The origin's federation public key, hex (informative: the receiver uses its pinned key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_public_key: Option<String>,
}

/// `payload` as compact JSON with every object's keys in sorted order (byte order of the
/// UTF-8 keys, as `serde_json::Map` without `preserve_order` keeps them), whatever order the
/// value was built or parsed in.
#[must_use]
pub fn canonical_json(payload: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for key in keys {
                    if let Some(inner) = map.get(key) {
                        out.insert(key.clone(), sorted(inner));
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(payload).to_string()
}

/// `created_at` as i64 nanoseconds since the epoch, as the digest counts it: `None` if it is
/// not RFC 3339; 0 for an instant outside the i64 range.
#[must_use]
pub fn created_at_nanos(created_at: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(i64::try_from(time.unix_timestamp_nanos()).unwrap_or(0))
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nine fractional digits
/// (`2026-01-02T03:04:05.123456789Z`); the epoch for an instant the calendar cannot hold.
#[must_use]
pub fn format_created_at(nanos: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.nanosecond()
    )
}

/// The digest of `event`; `None` if its `created_at` is not RFC 3339.
#[must_use]
pub fn digest(event: &Event) -> Option<[u8; DIGEST_LEN]> {
    let nanos = created_at_nanos(&event.created_at)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(event.event_id.as_bytes());
    hasher.update(event.origin.as_bytes());
    hasher.update(event.scope.as_bytes());
    hasher.update(&nanos.to_le_bytes());
    hasher.update(canonical_json(&event.payload).as_bytes());
    Some(*hasher.finalize().as_bytes())
}

/// Signs `event` with the origin's federation key; `None` if its `created_at` is not
/// RFC 3339.
#[must_use]
pub fn sign(event: Event, key: &DeviceKeyPair) -> Option<SignedEvent> {
    let digest = digest(&event)?;
    Some(SignedEvent {
        signature: key.sign(&digest).to_vec(),
        digest: digest.to_vec(),
        event,
    })
}

/// Checks that `signed.digest` is the digest of `signed.event` and that the signature over it
/// verifies with `origin_key` (the key pinned for the event's origin). Strict verification:
/// a non-canonical signature or a weak key is refused.
///
/// # Errors
/// Which of the two checks failed.
pub fn verify(signed: &SignedEvent, origin_key: &VerifyingKey) -> Result<(), VerifyError> {
    let digest = digest(&signed.event).ok_or(VerifyError::DigestMismatch)?;
    if signed.digest.as_slice() != digest.as_slice() {
        return Err(VerifyError::DigestMismatch);
    }
    let signature: [u8; SIGNATURE_LEN] = signed
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| VerifyError::BadSignature)?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    origin_key
        .verify_strict(&digest, &signature)
        .map_err(|_| VerifyError::BadSignature)
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
