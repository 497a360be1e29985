//! Post-quantum hybrid cryptography for the `pq-hybrid` capability (sans-IO).
//!
//! * [`kem`] — ML-KEM-768 (FIPS 203) key pairs, encapsulation and decapsulation (aws-lc-rs).
//! * [`dsa`] — ML-DSA-65 (FIPS 204) key pairs from a seed, signing and verification.
//! * [`bundle`] — the HELLO `pq_bundle`: validation with one typed error per defect, and
//!   encoding.
//! * [`session`] — [`HybridSession`]: the 96 bytes of hybrid material (root key, two chain
//!   keys) derived exactly as `commucat-crypto` 1.0.41 `pq` derives them, its message-key
//!   chains and its ratchet step.
//! * [`one_time`] — one-time ML-KEM keys, each spent by one `HybridRatchet` step.
//! * [`transcript`] — the handshake transcript the client signs with ML-DSA-65.
//!
//! `docs/pq-hybrid.md` ("Cryptographic core") describes the derivations and the checked-in
//! vectors that prove them equal to 1.0.41's.

pub mod bundle;
pub mod dsa;
pub mod kem;
pub mod live;
pub mod one_time;
pub mod session;
pub mod transcript;

pub use bundle::{BundleError, MAX_ONE_TIME_KEYS, ValidatedBundle, encode_bundle, validate_bundle};
pub use dsa::{
    DSA_PUBLIC_LEN, DSA_SEED_LEN, DSA_SIGNATURE_LEN, SignaturePublicKey, SigningKeyPair,
};
pub use kem::{
    KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN, KEM_SECRET_LEN, KEM_SHARED_LEN, KemKeyPair, KemPublicKey,
    KemSharedSecret,
};
pub use live::{LiveRatchet, RecordKeys};
pub use one_time::{OneTimeKeyPairs, OneTimePublicKeys, RatchetStep};
pub use session::{
    CLASSICAL_LEN, HybridRole, HybridSession, MessageKey, RATCHET_LABEL, SESSION_KEY_LEN,
    SESSION_LABEL,
};
pub use transcript::{HybridTranscript, TRANSCRIPT_DOMAIN};

/// Why a post-quantum key, ciphertext, signature or derivation was refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PqError {
    /// An ML-KEM-768 public key of the wrong length.
    #[error("ML-KEM-768 public key must be {KEM_PUBLIC_LEN} bytes, got {len}")]
    KemPublicLength {
        /// Its length.
        len: usize,
    },
    /// An ML-KEM-768 public key with a coefficient ≥ q (FIPS 203 §7.2 modulus check).
    #[error("ML-KEM-768 public key fails the modulus check")]
    KemPublicNotReduced,
    /// aws-lc refused an ML-KEM-768 public key.
    #[error("ML-KEM-768 public key rejected")]
    KemPublicRejected,
    /// An ML-KEM-768 secret key of the wrong length.
    #[error("ML-KEM-768 secret key must be {KEM_SECRET_LEN} bytes, got {len}")]
    KemSecretLength {
        /// Its length.
        len: usize,
    },
    /// aws-lc refused an ML-KEM-768 secret key, or could not export one.
    #[error("ML-KEM-768 secret key rejected")]
    KemSecretRejected,
    /// An ML-KEM-768 ciphertext of the wrong length.
    #[error("ML-KEM-768 ciphertext must be {KEM_CIPHERTEXT_LEN} bytes, got {len}")]
    CiphertextLength {
        /// Its length.
        len: usize,
    },
    /// A KEM shared secret that is not 32 bytes.
    #[error("ML-KEM shared secret must be {KEM_SHARED_LEN} bytes, got {len}")]
    KemSharedLength {
        /// Its length.
        len: usize,
    },
    /// aws-lc failed to generate an ML-KEM-768 key.
    #[error("ML-KEM-768 key generation failed")]
    KeyGeneration,
    /// aws-lc failed to encapsulate.
    #[error("ML-KEM-768 encapsulation failed")]
    Encapsulation,
    /// aws-lc failed to decapsulate.
    #[error("ML-KEM-768 decapsulation failed")]
    Decapsulation,
    /// An ML-DSA-65 public key of the wrong length.
    #[error("ML-DSA-65 public key must be {DSA_PUBLIC_LEN} bytes, got {len}")]
    SignaturePublicLength {
        /// Its length.
        len: usize,
    },
    /// aws-lc refused an ML-DSA-65 public key.
    #[error("ML-DSA-65 public key rejected")]
    SignaturePublicRejected,
    /// An ML-DSA-65 signature of the wrong length.
    #[error("ML-DSA-65 signature must be {DSA_SIGNATURE_LEN} bytes, got {len}")]
    SignatureLength {
        /// Its length.
        len: usize,
    },
    /// The ML-DSA-65 signature does not verify.
    #[error("ML-DSA-65 signature does not verify")]
    BadSignature,
    /// aws-lc refused an ML-DSA-65 seed.
    #[error("ML-DSA-65 seed rejected")]
    SeedRejected,
    /// aws-lc failed to sign.
    #[error("ML-DSA-65 signing failed")]
    Signing,
    /// HKDF refused the output length (cannot happen for 96 bytes; kept typed).
    #[error("HKDF-SHA3-512 derivation failed")]
    KeyDerivation,
    /// A chain produced 2³² − 1 message keys; the session must ratchet.
    #[error("message-key chain exhausted; ratchet first")]
    ChainExhausted,
    /// Every announced one-time key has been spent.
    #[error("all one-time ML-KEM keys are spent")]
    OneTimeKeysExhausted,
    /// A ratchet step names a one-time key that was never announced.
    #[error("one-time key {index} was never announced")]
    OneTimeKeyUnknown {
        /// The index named.
        index: u32,
    },
    /// A ratchet step names a one-time key that is already spent.
    #[error("one-time key {index} is already spent")]
    OneTimeKeyUsed {
        /// The index named.
        index: u32,
    },
    /// A ratchet operation of the other side (only the encapsulator starts steps, only the
    /// decapsulator applies them).
    #[error("ratchet operation of the other side")]
    RatchetRole,
    /// A transcript part exceeds `u32::MAX` bytes or items.
    #[error("transcript part too long")]
    TranscriptTooLong,
}
