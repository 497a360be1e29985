//! The client's `pq_bundle` from HELLO: checking it ([`validate_bundle`]) and building one
//! ([`encode_bundle`]).
//!
//! Every field is standard base64 with padding. A bundle is refused, with one
//! [`BundleError`] per defect, when a field does not decode, has the wrong size or holds a key
//! aws-lc (or the FIPS 203 modulus check) refuses, when it lists more than
//! [`MAX_ONE_TIME_KEYS`] one-time keys or one key twice (the long-term `kem_public` counts), or
//! when `kem_ciphertext` is set (it is `null` in HELLO).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use commucat_ccp::control::PqBundle;

use super::PqError;
use super::dsa::SignaturePublicKey;
use super::kem::KemPublicKey;

/// Most one-time keys a bundle may announce: 32 ratchet steps of 1184 bytes each keep a
/// HELLO under 52 KiB of base64.
pub const MAX_ONE_TIME_KEYS: usize = 32;

/// Why a `pq_bundle` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// `kem_public` is not valid base64.
    #[error("pq_bundle.kem_public is not base64")]
    KemPublicEncoding,
    /// `kem_public` decodes to an unusable ML-KEM-768 key.
    #[error("pq_bundle.kem_public: {0}")]
    KemPublic(PqError),
    /// `signature_public` is not valid base64.
    #[error("pq_bundle.signature_public is not base64")]
    SignaturePublicEncoding,
    /// `signature_public` decodes to an unusable ML-DSA-65 key.
    #[error("pq_bundle.signature_public: {0}")]
    SignaturePublic(PqError),
    /// More one-time keys than [`MAX_ONE_TIME_KEYS`].
    #[error("pq_bundle lists {count} one-time keys; at most {max}")]
    TooManyOneTimeKeys {
        /// How many were listed.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// A one-time key is not valid base64.
    #[error("pq_bundle.one_time_keys[{index}] is not base64")]
    OneTimeKeyEncoding {
        /// Its position.
        index: usize,
    },
    /// A one-time key decodes to an unusable ML-KEM-768 key.
    #[error("pq_bundle.one_time_keys[{index}]: {source}")]
    OneTimeKey {
        /// Its position.
        index: usize,
        /// What is wrong with it.
        source: PqError,
    },
    /// A one-time key repeats `kem_public` or an earlier one-time key.
    #[error("pq_bundle.one_time_keys[{index}] repeats another key of the bundle")]
    DuplicateKey {
        /// Position of the repeat.
        index: usize,
    },
    /// `kem_ciphertext` is set in a HELLO.
    #[error("pq_bundle.kem_ciphertext must be null in HELLO")]
    UnexpectedCiphertext,
}

impl BundleError {
    /// A short stable name of the defect, for logs, ledger records and metrics labels.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::KemPublicEncoding => "kem_public_encoding",
            Self::KemPublic(_) => "kem_public_invalid",
            Self::SignaturePublicEncoding => "signature_public_encoding",
            Self::SignaturePublic(_) => "signature_public_invalid",
            Self::TooManyOneTimeKeys { .. } => "too_many_one_time_keys",
            Self::OneTimeKeyEncoding { .. } => "one_time_key_encoding",
            Self::OneTimeKey { .. } => "one_time_key_invalid",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::UnexpectedCiphertext => "unexpected_ciphertext",
        }
    }
}

/// A `pq_bundle` whose keys all decoded and passed their checks.
#[derive(Debug)]
pub struct ValidatedBundle {
    /// The long-term ML-KEM-768 key the handshake encapsulates to.
    pub kem_public: KemPublicKey,
    /// The ML-DSA-65 key that signs the transcript.
    pub signature_public: SignaturePublicKey,
    /// One-time ML-KEM-768 keys for ratchet steps, in announcement order.
    pub one_time_keys: Vec<KemPublicKey>,
}

/// Checks a HELLO's `pq_bundle` (see the module docs for what is refused).
///
/// # Errors
/// The first defect found, in field order.
pub fn validate_bundle(bundle: &PqBundle) -> Result<ValidatedBundle, BundleError> {
    if bundle.kem_ciphertext.is_some() {
        return Err(BundleError::UnexpectedCiphertext);
    }
    let kem_bytes = STANDARD
        .decode(&bundle.kem_public)
        .map_err(|_| BundleError::KemPublicEncoding)?;
    let kem_public = KemPublicKey::from_bytes(&kem_bytes).map_err(BundleError::KemPublic)?;
    let signature_bytes = STANDARD
        .decode(&bundle.signature_public)
        .map_err(|_| BundleError::SignaturePublicEncoding)?;
    let signature_public =
        SignaturePublicKey::from_bytes(&signature_bytes).map_err(BundleError::SignaturePublic)?;
    let count = bundle.one_time_keys.len();
    if count > MAX_ONE_TIME_KEYS {
        return Err(BundleError::TooManyOneTimeKeys {
            count,
            max: MAX_ONE_TIME_KEYS,
        });
    }
    let mut one_time_keys: Vec<KemPublicKey> = Vec::with_capacity(count);
    for (index, encoded) in bundle.one_time_keys.iter().enumerate() {
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| BundleError::OneTimeKeyEncoding { index })?;
        let key = KemPublicKey::from_bytes(&bytes)
            .map_err(|source| BundleError::OneTimeKey { index, source })?;
        let repeated = key.as_bytes() == kem_public.as_bytes()
            || one_time_keys
                .iter()
                .any(|earlier| earlier.as_bytes() == key.as_bytes());
        if repeated {
            return Err(BundleError::DuplicateKey { index });
        }
        one_time_keys.push(key);
    }
    Ok(ValidatedBundle {
        kem_public,
        signature_public,
        one_time_keys,
    })
}

/// The HELLO `pq_bundle` for a client's keys (standard base64, `kem_ciphertext` null).
#[must_use]
pub fn encode_bundle<'a>(
    kem_public: &KemPublicKey,
    signature_public: &SignaturePublicKey,
    one_time_keys: impl IntoIterator<Item = &'a KemPublicKey>,
) -> PqBundle {
    PqBundle {
        kem_public: STANDARD.encode(kem_public.as_bytes()),
        kem_ciphertext: None,
        signature_public: STANDARD.encode(signature_public.as_bytes()),
        one_time_keys: one_time_keys
            .into_iter()
            .map(|key| STANDARD.encode(key.as_bytes()))
            .collect(),
    }
}
