//! The domain's federation key: an Ed25519 seed in `<data_dir>/keys/federation.key` (one line
//! of hex, mode 0600, generated on first start, never regenerated over a corrupt file). It
//! signs the digests of outbound federation events (wire-compat §13); peers pin its public
//! half, published in server-info and at [`WELL_KNOWN_PATH`].
//!
//! [`rotate`] replaces the key: the new seed takes the file's place and a [`Rotation`] record
//! (`federation.rotation.json`, 0600) keeps the old public key with the end of its grace
//! period and the old key's signature over the new one. The record is published next to the
//! key until the grace period ends, so a peer that pinned the old key can verify the new one
//! with it ([`Rotation::verify`]) and accept events signed by either until then (events
//! already in the outbox were signed with the old key). The old seed is not kept.

use std::path::Path;

use commucat_keys::{DeviceKeyPair, KEY_LEN, VerifyingKey, decode_hex32, decode_hex64};
use serde::{Deserialize, Serialize};

use super::{KEYS_DIR, KeyStoreError, key_line, load_or_generate_key, secrets};

/// File name of the federation seed.
pub const FEDERATION_FILE: &str = "federation.key";
/// Where peers read this domain's federation key.
pub const WELL_KNOWN_PATH: &str = "/.well-known/commucat-federation";
/// File name of the record of the last rotation.
pub const ROTATION_FILE: &str = "federation.rotation.json";
/// Domain separation of the rotation signature.
pub const ROTATION_CONTEXT: &[u8] = b"commucat-federation-key-rotation-v1";

/// The last rotation of a domain's federation key, as published (server-info and the
/// well-known document, `federation.rotation`) until `valid_until`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Rotation {
    /// The replaced key (hex): still accepted by peers until `valid_until`.
    pub previous_public_key: String,
    /// The key that replaced it (hex), the current one.
    pub public_key: String,
    /// End of the grace period of the previous key, unix seconds.
    pub valid_until: i64,
    /// Ed25519 signature (hex) by the previous key over [`rotation_message`].
    pub signature: String,
}

/// What the previous key signs: [`ROTATION_CONTEXT`] ‖ 0 ‖ domain ‖ 0 ‖ new public key ‖
/// i64le(`valid_until`).
#[must_use]
pub fn rotation_message(domain: &str, public_key: &[u8; KEY_LEN], valid_until: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(ROTATION_CONTEXT.len() + domain.len() + 2 + 40);
    message.extend_from_slice(ROTATION_CONTEXT);
    message.push(0);
    message.extend_from_slice(domain.to_ascii_lowercase().as_bytes());
    message.push(0);
    message.extend_from_slice(public_key);
    message.extend_from_slice(&valid_until.to_le_bytes());
    message
}

/// Why a published rotation is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// A key or the signature is not hex of the right length.
    #[error("malformed rotation record")]
    Malformed,
    /// The previous key is not the one pinned.
    #[error("the rotation does not start from the pinned key")]
    NotPinned,
    /// The signature does not verify with the previous key.
    #[error("the rotation is not signed by the previous key")]
    BadSignature,
}

impl Rotation {
    /// The new key, if this record is signed by `pinned` (the previous key) for `domain`.
    ///
    /// # Errors
    /// The record is malformed, starts from another key, or its signature does not verify.
    pub fn verify(
        &self,
        domain: &str,
        pinned: &VerifyingKey,
    ) -> Result<VerifyingKey, RotationError> {
        let previous =
            decode_hex32(&self.previous_public_key).map_err(|_| RotationError::Malformed)?;
        if previous != pinned.to_bytes() {
            return Err(RotationError::NotPinned);
        }
        let public = decode_hex32(&self.public_key).map_err(|_| RotationError::Malformed)?;
        let signature = decode_hex64(&self.signature).map_err(|_| RotationError::Malformed)?;
        let new_key = VerifyingKey::from_bytes(&public).map_err(|_| RotationError::Malformed)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        pinned
            .verify_strict(
                &rotation_message(domain, &public, self.valid_until),
                &signature,
            )
            .map_err(|_| RotationError::BadSignature)?;
        Ok(new_key)
    }
}

/// Replaces the federation key of `data_dir` (generated first if missing) with a new one; the
/// old public key stays valid for peers `grace_secs` from `now` (unix seconds). Returns the
/// new key and the record published with it. Takes effect when the server (re)starts.
///
/// # Errors
/// The key files cannot be read or written.
pub fn rotate(
    data_dir: &Path,
    domain: &str,
    grace_secs: i64,
    now: i64,
) -> Result<(DeviceKeyPair, Rotation), KeyStoreError> {
    let old = load_or_generate(data_dir)?;
    let new = DeviceKeyPair::generate();
    let valid_until = now.saturating_add(grace_secs.max(0));
    let public = new.public_key();
    let signature = old.sign(&rotation_message(domain, &public, valid_until));
    let rotation = Rotation {
        previous_public_key: old.public_key_hex(),
        public_key: new.public_key_hex(),
        valid_until,
        signature: hex::encode(signature),
    };
    let dir = data_dir.join(KEYS_DIR);
    let record = serde_json::to_vec_pretty(&rotation).unwrap_or_default();
    // The record first: a crash between the two writes leaves the old key current with a
    // record naming another key, which `load_rotation` ignores.
    secrets::replace_private_atomic(&dir.join(ROTATION_FILE), &record)?;
    secrets::replace_private_atomic(&dir.join(FEDERATION_FILE), key_line(&new.seed()).as_bytes())?;
    Ok((new, rotation))
}

/// The rotation record of `data_dir` to publish with `current` at `now`: `None` when there is
/// none, its grace period is over, or it names another key than `current`.
///
/// # Errors
/// The record exists but cannot be read or parsed.
pub fn load_rotation(
    data_dir: &Path,
    current: &DeviceKeyPair,
    now: i64,
) -> Result<Option<Rotation>, KeyStoreError> {
    let path = data_dir.join(KEYS_DIR).join(ROTATION_FILE);
    let Some(bytes) = secrets::read_secret(&path)? else {
        return Ok(None);
    };
    let rotation: Rotation =
        serde_json::from_slice(&bytes).map_err(|e| KeyStoreError::Corrupt {
            path: path.clone(),
            reason: format!("rotation record: {e}"),
        })?;
    Ok(
        (rotation.valid_until > now && rotation.public_key == current.public_key_hex())
            .then_some(rotation),
    )
}

/// Loads the federation key of `data_dir`, generating it if missing. The seed is read into
/// zeroized buffers; [`DeviceKeyPair`] zeroizes its signing key on drop.
///
/// # Errors
/// The key file cannot be read or written, or does not hold 64 hex characters.
pub fn load_or_generate(data_dir: &Path) -> Result<DeviceKeyPair, KeyStoreError> {
    let dir = data_dir.join(KEYS_DIR);
    secrets::create_private_dir(&dir)?;
    let seed = load_or_generate_key(&dir.join(FEDERATION_FILE), "federation", || {
        DeviceKeyPair::generate().seed()
    })?;
    Ok(DeviceKeyPair::from_seed(&seed))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_once_owner_only_and_reused() {
        let data = tempfile::tempdir().unwrap();
        let first = load_or_generate(data.path()).unwrap();
        let second = load_or_generate(data.path()).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        let file = data.path().join(KEYS_DIR).join(FEDERATION_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let seed = std::fs::read_to_string(&file).unwrap();
        assert_eq!(seed.trim(), hex::encode(first.seed().as_slice()));
        std::fs::write(&file, "garbage\n").unwrap();
        assert!(matches!(
            load_or_generate(data.path()),
            Err(KeyStoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn rotation_is_signed_by_the_old_key_and_published_until_its_grace_ends() {
        let data = tempfile::tempdir().unwrap();
        let old = load_or_generate(data.path()).unwrap();
        let (new, rotation) = rotate(data.path(), "A.test", 600, 1_000).unwrap();
        assert_ne!(old.public_key(), new.public_key());
        assert_eq!(
            load_or_generate(data.path()).unwrap().public_key(),
            new.public_key()
        );
        assert_eq!(rotation.valid_until, 1_600);
        let record = data.path().join(KEYS_DIR).join(ROTATION_FILE);
        let mode = std::fs::metadata(&record).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A peer that pinned the old key learns the new one (domain compared lowercase).
        let learned = rotation.verify("a.test", &old.verifying_key()).unwrap();
        assert_eq!(learned.to_bytes(), new.public_key());
        assert_eq!(
            rotation.verify("b.test", &old.verifying_key()),
            Err(RotationError::BadSignature)
        );
        assert_eq!(
            rotation.verify("a.test", &new.verifying_key()),
            Err(RotationError::NotPinned)
        );
        let mut forged = rotation.clone();
        forged.valid_until += 1;
        assert_eq!(
            forged.verify("a.test", &old.verifying_key()),
            Err(RotationError::BadSignature)
        );
        // Published during the grace period only, and only next to the key it names.
        assert_eq!(
            load_rotation(data.path(), &new, 1_599).unwrap(),
            Some(rotation.clone())
        );
        assert_eq!(load_rotation(data.path(), &new, 1_600).unwrap(), None);
        assert_eq!(load_rotation(data.path(), &old, 1_000).unwrap(), None);
        // A second rotation starts from the new key.
        let (_, second) = rotate(data.path(), "a.test", 600, 2_000).unwrap();
        assert!(second.verify("a.test", &new.verifying_key()).is_ok());
    }
}
