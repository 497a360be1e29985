//! The server's post-quantum keys: an ML-KEM-768 key pair (FIPS 203) and an ML-DSA-65 signing
//! key (FIPS 204), both through aws-lc-rs.
//!
//! They live beside the classical keys in `<data_dir>/keys/`, mode 0600, one line of lowercase
//! hex each:
//!
//! - [`PQ_KEM_FILE`]: the 2400-byte ML-KEM-768 decapsulation key. Its encapsulation (public)
//!   key is the 1184 bytes at offset 1152 (FIPS 203: `dk = dk_pke ‖ ek ‖ H(ek) ‖ z`); on
//!   load the pair must complete an encapsulation round trip, so a damaged file is refused.
//! - [`PQ_SIGN_FILE`]: the 32-byte ML-DSA-65 seed (FIPS 204 `ξ`), from which the key pair is
//!   derived deterministically.
//!
//! As with the classical keys, a missing file is generated on first run and a file that exists
//! but does not parse is an error, never silently replaced. Secrets are held in zeroizing
//! buffers (and inside aws-lc, which clears its key objects when they are freed).
//!
//! At startup the ML-DSA key signs the server's key bundle ([`PqKeys::bundle_signature`]), so a
//! client holding the ML-DSA public key can check that the keys published with it belong
//! together.

use std::fmt;
use std::path::Path;

use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};
use aws_lc_rs::signature::{KeyPair as _, ML_DSA_65_SIGNING, PqdsaKeyPair};
use commucat_keys::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::keys::secrets;
use crate::keys::{KEYS_DIR, KeyStoreError};

/// File name of the ML-KEM-768 decapsulation key.
pub const PQ_KEM_FILE: &str = "pq_kem.key";
/// File name of the ML-DSA-65 seed.
pub const PQ_SIGN_FILE: &str = "pq_sign.key";
/// Name of the key-encapsulation algorithm, as published.
pub const KEM_ALGORITHM: &str = "ML-KEM-768";
/// Name of the signature algorithm, as published.
pub const SIGNATURE_ALGORITHM: &str = "ML-DSA-65";
/// ML-KEM-768 decapsulation key length (FIPS 203).
pub const KEM_SECRET_LEN: usize = 2400;
/// ML-KEM-768 encapsulation key length (FIPS 203).
pub const KEM_PUBLIC_LEN: usize = 1184;
/// Offset of the encapsulation key inside the decapsulation key (`384 · k`, `k = 3`).
const KEM_PUBLIC_OFFSET: usize = 1152;
/// ML-DSA seed length (FIPS 204).
pub const SIGN_SEED_LEN: usize = 32;
/// Domain separation of the bundle signature.
pub const BUNDLE_CONTEXT: &[u8] = b"commucat.pq.bundle.v1";

/// The post-quantum key pairs of the server.
pub struct PqKeys {
    kem_secret: DecapsulationKey,
    kem_public: Vec<u8>,
    signing: PqdsaKeyPair,
}

impl fmt::Debug for PqKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PqKeys")
            .field(
                "kem_public",
                &format_args!("{} bytes", self.kem_public.len()),
            )
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// Why post-quantum key material was refused, or an operation with it failed in aws-lc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PqError {
    /// The ML-KEM-768 decapsulation key has the wrong length.
    #[error("ML-KEM-768 key must be {KEM_SECRET_LEN} bytes, got {0}")]
    KemLength(usize),
    /// aws-lc refused the ML-KEM-768 decapsulation key.
    #[error("ML-KEM-768 key rejected: {0}")]
    KemRejected(aws_lc_rs::error::KeyRejected),
    /// aws-lc refused the encapsulation key inside the decapsulation key.
    #[error("ML-KEM-768 public key rejected: {0}")]
    KemPublicRejected(aws_lc_rs::error::KeyRejected),
    /// The key's halves failed an encapsulation round trip, or do not match.
    #[error("ML-KEM-768 key halves do not match")]
    KemMismatch,
    /// aws-lc refused the ML-DSA-65 seed.
    #[error("ML-DSA-65 seed rejected: {0}")]
    SeedRejected(aws_lc_rs::error::KeyRejected),
    /// aws-lc could not generate an ML-KEM-768 key.
    #[error("ML-KEM-768 key generation failed")]
    Generation,
    /// The ciphertext could not be decapsulated (wrong length).
    #[error("ML-KEM-768 decapsulation failed")]
    Decapsulation,
    /// aws-lc failed to sign with the ML-DSA-65 key.
    #[error("ML-DSA-65 signing failed")]
    Signing,
}

impl PqError {
    /// The error concerns the ML-DSA-65 seed (rather than the ML-KEM-768 key).
    #[must_use]
    pub fn is_signing_key(&self) -> bool {
        matches!(self, Self::SeedRejected(_) | Self::Signing)
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> KeyStoreError {
    KeyStoreError::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl PqKeys {
    /// Fresh random keys.
    ///
    /// # Errors
    /// aws-lc failed to generate a key.
    pub fn generate() -> Result<Self, PqError> {
        let bytes = DecapsulationKey::generate(&ML_KEM_768)
            .and_then(|kem| kem.key_bytes())
            .map_err(|_| PqError::Generation)?;
        let kem_secret = Zeroizing::new(bytes.as_ref().to_vec());
        let mut seed = Zeroizing::new([0u8; SIGN_SEED_LEN]);
        OsRng.fill_bytes(seed.as_mut_slice());
        Self::from_parts(&kem_secret, seed.as_slice())
    }

    /// The keys for a stored ML-KEM-768 decapsulation key and ML-DSA-65 seed.
    ///
    /// # Errors
    /// Wrong lengths, or a KEM key whose halves do not belong together.
    pub fn from_parts(kem_secret: &[u8], sign_seed: &[u8]) -> Result<Self, PqError> {
        if kem_secret.len() != KEM_SECRET_LEN {
            return Err(PqError::KemLength(kem_secret.len()));
        }
        let kem_public = kem_secret
            .get(KEM_PUBLIC_OFFSET..KEM_PUBLIC_OFFSET + KEM_PUBLIC_LEN)
            .ok_or(PqError::KemLength(kem_secret.len()))?
            .to_vec();
        let secret =
            DecapsulationKey::new(&ML_KEM_768, kem_secret).map_err(PqError::KemRejected)?;
        let public =
            EncapsulationKey::new(&ML_KEM_768, &kem_public).map_err(PqError::KemPublicRejected)?;
        // The pair must agree: encapsulate to the public half, decapsulate with the secret one.
        let (ciphertext, sent) = public.encapsulate().map_err(|_| PqError::KemMismatch)?;
        let received = secret
            .decapsulate(Ciphertext::from(ciphertext.as_ref()))
            .map_err(|_| PqError::KemMismatch)?;
        if sent.as_ref() != received.as_ref() {
            return Err(PqError::KemMismatch);
        }
        let signing = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, sign_seed)
            .map_err(PqError::SeedRejected)?;
        Ok(Self {
            kem_secret: secret,
            kem_public,
            signing,
        })
    }

    /// Loads the keys from `<data_dir>/keys/`, generating each missing one.
    ///
    /// # Errors
    /// A key file could not be read or written, or holds no valid key.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, KeyStoreError> {
        let dir = data_dir.join(KEYS_DIR);
        secrets::create_private_dir(&dir)?;
        let kem_path = dir.join(PQ_KEM_FILE);
        let sign_path = dir.join(PQ_SIGN_FILE);
        let kem = match read_hex(&kem_path)? {
            Some(kem) => kem,
            None => {
                let fresh = DecapsulationKey::generate(&ML_KEM_768)
                    .and_then(|k| k.key_bytes())
                    .map_err(|e| corrupt(&kem_path, format!("generating: {e}")))?;
                let secret = Zeroizing::new(fresh.as_ref().to_vec());
                write_hex(&kem_path, &secret)?;
                tracing::info!(file = %kem_path.display(), "generated {KEM_ALGORITHM} key");
                secret
            }
        };
        let sign = match read_hex(&sign_path)? {
            Some(sign) => sign,
            None => {
                let mut seed = Zeroizing::new(vec![0u8; SIGN_SEED_LEN]);
                OsRng.fill_bytes(seed.as_mut_slice());
                write_hex(&sign_path, &seed)?;
                tracing::info!(file = %sign_path.display(), "generated {SIGNATURE_ALGORITHM} key");
                seed
            }
        };
        if sign.len() != SIGN_SEED_LEN {
            return Err(corrupt(
                &sign_path,
                format!(
                    "expected {} hex characters, got {} bytes",
                    2 * SIGN_SEED_LEN,
                    sign.len()
                ),
            ));
        }
        Self::from_parts(&kem, &sign).map_err(|e| {
            let path = if e.is_signing_key() {
                &sign_path
            } else {
                &kem_path
            };
            corrupt(path, e.to_string())
        })
    }

    /// The ML-KEM-768 encapsulation key (1184 bytes).
    #[must_use]
    pub fn kem_public(&self) -> &[u8] {
        &self.kem_public
    }

    /// The ML-DSA-65 verification key (1952 bytes).
    #[must_use]
    pub fn signature_public(&self) -> &[u8] {
        self.signing.public_key().as_ref()
    }

    /// Decapsulates `ciphertext` sent to [`Self::kem_public`]; the shared secret is zeroized on
    /// drop.
    ///
    /// # Errors
    /// The ciphertext has the wrong length.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, PqError> {
        self.kem_secret
            .decapsulate(Ciphertext::from(ciphertext))
            .map(|secret| Zeroizing::new(secret.as_ref().to_vec()))
            .map_err(|_| PqError::Decapsulation)
    }

    /// The message the bundle signature covers: [`BUNDLE_CONTEXT`], then each part with a
    /// 4-byte big-endian length prefix: domain, Ed25519 identity key, X25519 prekey, ML-KEM
    /// public key, ML-DSA public key.
    #[must_use]
    pub fn bundle_message(&self, domain: &str, identity: &[u8], x25519_prekey: &[u8]) -> Vec<u8> {
        let mut message = BUNDLE_CONTEXT.to_vec();
        for part in [
            domain.as_bytes(),
            identity,
            x25519_prekey,
            &self.kem_public,
            self.signature_public(),
        ] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            message.extend_from_slice(&len.to_be_bytes());
            message.extend_from_slice(part);
        }
        message
    }

    /// An ML-DSA-65 signature over [`Self::bundle_message`].
    ///
    /// # Errors
    /// aws-lc failed to sign.
    pub fn bundle_signature(
        &self,
        domain: &str,
        identity: &[u8],
        x25519_prekey: &[u8],
    ) -> Result<Vec<u8>, PqError> {
        let message = self.bundle_message(domain, identity, x25519_prekey);
        let mut signature = vec![0u8; self.signing.algorithm().signature_len()];
        let len = self
            .signing
            .sign(&message, &mut signature)
            .map_err(|_| PqError::Signing)?;
        signature.truncate(len);
        Ok(signature)
    }
}

fn read_hex(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError> {
    let Some(bytes) = secrets::read_secret(path)? else {
        return Ok(None);
    };
    if secrets::is_group_or_world_accessible(path)? {
        tracing::warn!(file = %path.display(), "key file is readable by group or others; chmod 600 it");
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| corrupt(path, "not UTF-8 text"))?;
    let text = text.trim_ascii();
    let mut out = Zeroizing::new(vec![0u8; text.len() / 2]);
    hex::decode_to_slice(text, out.as_mut_slice())
        .map_err(|e| corrupt(path, format!("not hex: {e}")))?;
    Ok(Some(out))
}

fn write_hex(path: &Path, secret: &[u8]) -> Result<(), KeyStoreError> {
    // Sized once, so no unzeroized copy is left behind by a reallocation.
    let mut line = Zeroizing::new(vec![b'\n'; 2 * secret.len() + 1]);
    let hex_part = line
        .get_mut(..2 * secret.len())
        .ok_or_else(|| corrupt(path, "key buffer"))?;
    hex::encode_to_slice(secret, hex_part).map_err(|e| corrupt(path, e.to_string()))?;
    secrets::write_private_atomic(path, &line)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use aws_lc_rs::signature::{ML_DSA_65, UnparsedPublicKey};

    use super::*;

    #[test]
    fn keys_are_generated_once_reused_and_private() {
        let data = tempfile::tempdir().unwrap();
        let first = PqKeys::load_or_generate(data.path()).unwrap();
        let second = PqKeys::load_or_generate(data.path()).unwrap();
        assert_eq!(first.kem_public(), second.kem_public());
        assert_eq!(first.signature_public(), second.signature_public());
        assert_eq!(first.kem_public().len(), KEM_PUBLIC_LEN);
        assert_eq!(first.signature_public().len(), 1952);
        for file in [PQ_KEM_FILE, PQ_SIGN_FILE] {
            let path = data.path().join(KEYS_DIR).join(file);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        // The published public key encapsulates to the stored secret key.
        let public = EncapsulationKey::new(&ML_KEM_768, second.kem_public()).unwrap();
        let (ciphertext, secret) = public.encapsulate().unwrap();
        assert_eq!(
            first.decapsulate(ciphertext.as_ref()).unwrap().as_slice(),
            secret.as_ref()
        );
    }

    #[test]
    fn a_missing_file_is_generated_and_the_other_kept() {
        let data = tempfile::tempdir().unwrap();
        let first = PqKeys::load_or_generate(data.path()).unwrap();
        std::fs::remove_file(data.path().join(KEYS_DIR).join(PQ_SIGN_FILE)).unwrap();
        let second = PqKeys::load_or_generate(data.path()).unwrap();
        assert_eq!(first.kem_public(), second.kem_public());
        assert_ne!(first.signature_public(), second.signature_public());
        std::fs::remove_file(data.path().join(KEYS_DIR).join(PQ_KEM_FILE)).unwrap();
        let third = PqKeys::load_or_generate(data.path()).unwrap();
        assert_ne!(second.kem_public(), third.kem_public());
        assert_eq!(second.signature_public(), third.signature_public());
    }

    #[test]
    fn bundle_signature_verifies_with_the_published_key() {
        let keys = PqKeys::generate().unwrap();
        let signature = keys
            .bundle_signature("chat.example", &[6; 32], &[7; 32])
            .unwrap();
        let public = UnparsedPublicKey::new(&ML_DSA_65, keys.signature_public());
        public
            .verify(
                &keys.bundle_message("chat.example", &[6; 32], &[7; 32]),
                &signature,
            )
            .unwrap();
        assert!(
            public
                .verify(
                    &keys.bundle_message("other.example", &[6; 32], &[7; 32]),
                    &signature
                )
                .is_err()
        );
    }

    #[test]
    fn damaged_key_files_are_refused_and_kept() {
        let data = tempfile::tempdir().unwrap();
        PqKeys::load_or_generate(data.path()).unwrap();
        let kem_path = data.path().join(KEYS_DIR).join(PQ_KEM_FILE);
        let mut text = std::fs::read_to_string(&kem_path).unwrap();
        // Flip one hex digit inside the embedded public key.
        let at = 2 * (KEM_PUBLIC_OFFSET + 10);
        let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
        text.replace_range(at..=at, flipped);
        std::fs::write(&kem_path, &text).unwrap();
        let error = PqKeys::load_or_generate(data.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&kem_path.display().to_string()),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&kem_path).unwrap(), text);

        let sign_path = data.path().join(KEYS_DIR).join(PQ_SIGN_FILE);
        std::fs::write(&sign_path, "abcd\n").unwrap();
        std::fs::write(&kem_path, "zz\n").unwrap();
        assert!(PqKeys::load_or_generate(data.path()).is_err());
    }
}
