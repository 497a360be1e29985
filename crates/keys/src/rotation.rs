//! Device key rotation proofs (`POST /api/devices/rotate`).
//!
//! A device proves a key change with an Ed25519 signature by its **current** key over a
//! domain-separated message that binds the device, both keys and the time of the request:
//!
//! ```text
//! ROTATION_DOMAIN_TAG                 25 bytes, ASCII "commucat:device-rotate:v1"
//! 0x00                                 1 byte separator
//! len(device_id)                       2 bytes, big-endian u16
//! device_id                            len bytes, UTF-8
//! old_public_key                      32 bytes, Ed25519
//! new_public_key                      32 bytes, Ed25519
//! issued_at                            8 bytes, big-endian i64, unix seconds
//! ```
//!
//! Verification is `verify_strict` (no small-order keys or malleable signatures). The crate
//! is sans-IO: the caller compares `issued_at` with its clock.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::device::{DeviceKeyPair, KEY_LEN};

/// Domain tag that starts every rotation message.
pub const ROTATION_DOMAIN_TAG: &[u8] = b"commucat:device-rotate:v1";

/// Length in bytes of a rotation proof (an Ed25519 signature).
pub const ROTATION_PROOF_LEN: usize = 64;

/// Why a rotation message could not be built or a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// The device id is longer than 65535 bytes.
    #[error("device id is {len} bytes; at most 65535")]
    DeviceIdTooLong {
        /// Its length.
        len: usize,
    },
    /// A key is not a valid Ed25519 point or is of small order.
    #[error("{which} key is not a usable Ed25519 public key")]
    BadKey {
        /// `old` or `new`.
        which: &'static str,
    },
    /// Old and new key are the same.
    #[error("the new key equals the current key")]
    SameKey,
    /// The signature does not verify under the old key.
    #[error("the proof is not a valid signature by the current device key")]
    BadSignature,
}

/// The exact bytes the current key signs (see the module docs for the layout).
///
/// # Errors
/// [`RotationError::DeviceIdTooLong`].
pub fn rotation_message(
    device_id: &str,
    old_public: &[u8; KEY_LEN],
    new_public: &[u8; KEY_LEN],
    issued_at: i64,
) -> Result<Vec<u8>, RotationError> {
    let id = device_id.as_bytes();
    let id_len =
        u16::try_from(id.len()).map_err(|_| RotationError::DeviceIdTooLong { len: id.len() })?;
    let mut message =
        Vec::with_capacity(ROTATION_DOMAIN_TAG.len() + 1 + 2 + id.len() + 2 * KEY_LEN + 8);
    message.extend_from_slice(ROTATION_DOMAIN_TAG);
    message.push(0);
    message.extend_from_slice(&id_len.to_be_bytes());
    message.extend_from_slice(id);
    message.extend_from_slice(old_public);
    message.extend_from_slice(new_public);
    message.extend_from_slice(&issued_at.to_be_bytes());
    Ok(message)
}

/// Signs the rotation of `device_id` from `current` to `new_public` at `issued_at`.
///
/// # Errors
/// [`RotationError::DeviceIdTooLong`], [`RotationError::SameKey`].
pub fn sign_rotation(
    current: &DeviceKeyPair,
    device_id: &str,
    new_public: &[u8; KEY_LEN],
    issued_at: i64,
) -> Result<[u8; ROTATION_PROOF_LEN], RotationError> {
    let old_public = current.public_key();
    if old_public == *new_public {
        return Err(RotationError::SameKey);
    }
    let message = rotation_message(device_id, &old_public, new_public, issued_at)?;
    Ok(current.sign(&message))
}

/// A usable Ed25519 public key: a valid encoding and not of small order.
fn usable_key(bytes: &[u8; KEY_LEN], which: &'static str) -> Result<VerifyingKey, RotationError> {
    VerifyingKey::from_bytes(bytes)
        .ok()
        .filter(|key| !key.is_weak())
        .ok_or(RotationError::BadKey { which })
}

/// Checks a rotation proof: both keys usable and different, and `proof` a strict Ed25519
/// signature by `old_public` over [`rotation_message`].
///
/// # Errors
/// Any [`RotationError`].
pub fn verify_rotation(
    device_id: &str,
    old_public: &[u8; KEY_LEN],
    new_public: &[u8; KEY_LEN],
    issued_at: i64,
    proof: &[u8; ROTATION_PROOF_LEN],
) -> Result<(), RotationError> {
    let old_key = usable_key(old_public, "old")?;
    usable_key(new_public, "new")?;
    if old_public == new_public {
        return Err(RotationError::SameKey);
    }
    let message = rotation_message(device_id, old_public, new_public, issued_at)?;
    old_key
        .verify_strict(&message, &Signature::from_bytes(proof))
        .map_err(|_| RotationError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (DeviceKeyPair, DeviceKeyPair) {
        (
            DeviceKeyPair::from_seed(&[1; 32]),
            DeviceKeyPair::from_seed(&[2; 32]),
        )
    }

    #[test]
    fn message_layout_is_exact() {
        let old = [0xaa; 32];
        let new = [0xbb; 32];
        let message = rotation_message("dev", &old, &new, 0x0102_0304_0506_0708).unwrap();
        let mut expected = b"commucat:device-rotate:v1\x00\x00\x03dev".to_vec();
        expected.extend_from_slice(&old);
        expected.extend_from_slice(&new);
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(message, expected);
        assert_eq!(message.len(), 25 + 1 + 2 + 3 + 64 + 8);
    }

    #[test]
    fn signed_rotation_verifies() {
        let (old, new) = keys();
        let proof = sign_rotation(&old, "dev-1", &new.public_key(), 1_700_000_000).unwrap();
        verify_rotation(
            "dev-1",
            &old.public_key(),
            &new.public_key(),
            1_700_000_000,
            &proof,
        )
        .unwrap();
    }

    #[test]
    fn every_bound_field_matters() {
        let (old, new) = keys();
        let other = DeviceKeyPair::from_seed(&[3; 32]);
        let (o, n, t) = (old.public_key(), new.public_key(), 1_700_000_000);
        let proof = sign_rotation(&old, "dev-1", &n, t).unwrap();
        let bad = Err(RotationError::BadSignature);
        assert_eq!(verify_rotation("dev-2", &o, &n, t, &proof), bad);
        assert_eq!(verify_rotation("dev-1", &o, &n, t + 1, &proof), bad);
        assert_eq!(
            verify_rotation("dev-1", &o, &other.public_key(), t, &proof),
            bad
        );
        assert_eq!(
            verify_rotation("dev-1", &other.public_key(), &n, t, &proof),
            bad
        );
        // signed by the new key instead of the current one
        let by_new = new.sign(&rotation_message("dev-1", &o, &n, t).unwrap());
        assert_eq!(verify_rotation("dev-1", &o, &n, t, &by_new), bad);
    }

    #[test]
    fn same_and_weak_keys_are_refused() {
        let (old, _) = keys();
        let o = old.public_key();
        assert_eq!(sign_rotation(&old, "d", &o, 1), Err(RotationError::SameKey));
        assert_eq!(
            verify_rotation("d", &o, &o, 1, &[0; 64]),
            Err(RotationError::SameKey)
        );
        // the identity point: a valid encoding of small order
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            verify_rotation("d", &o, &identity, 1, &[0; 64]),
            Err(RotationError::BadKey { which: "new" })
        );
        assert_eq!(
            verify_rotation("d", &identity, &o, 1, &[0; 64]),
            Err(RotationError::BadKey { which: "old" })
        );
    }

    #[test]
    fn long_device_ids_are_refused() {
        let id = "x".repeat(70_000);
        assert_eq!(
            rotation_message(&id, &[0; 32], &[1; 32], 0),
            Err(RotationError::DeviceIdTooLong { len: 70_000 })
        );
    }
}
