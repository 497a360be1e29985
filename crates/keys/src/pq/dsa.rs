//! ML-DSA-65 (FIPS 204) through aws-lc-rs: key pairs from a 32-byte seed `ξ`, signing and
//! verification (the "pure" variant with an empty context string).

use core::fmt;

use aws_lc_rs::signature::{
    KeyPair as _, ML_DSA_65, ML_DSA_65_SIGNING, ParsedPublicKey, PqdsaKeyPair,
};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::PqError;

/// ML-DSA-65 verifying key length.
pub const DSA_PUBLIC_LEN: usize = 1952;
/// ML-DSA-65 signature length.
pub const DSA_SIGNATURE_LEN: usize = 3309;
/// ML-DSA key-generation seed length (FIPS 204 `ξ`).
pub const DSA_SEED_LEN: usize = 32;

/// An ML-DSA-65 verifying key (a peer's `signature_public`), parsed once.
pub struct SignaturePublicKey {
    key: ParsedPublicKey,
    bytes: Box<[u8]>,
}

impl fmt::Debug for SignaturePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignaturePublicKey")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl SignaturePublicKey {
    /// Imports the 1952-byte encoding.
    ///
    /// # Errors
    /// [`PqError::SignaturePublicLength`], [`PqError::SignaturePublicRejected`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PqError> {
        if bytes.len() != DSA_PUBLIC_LEN {
            return Err(PqError::SignaturePublicLength { len: bytes.len() });
        }
        let key = ParsedPublicKey::new(&ML_DSA_65, bytes)
            .map_err(|_| PqError::SignaturePublicRejected)?;
        Ok(Self {
            key,
            bytes: bytes.into(),
        })
    }

    /// The 1952-byte encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Verifies `signature` over `message`.
    ///
    /// # Errors
    /// [`PqError::SignatureLength`], [`PqError::BadSignature`].
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), PqError> {
        if signature.len() != DSA_SIGNATURE_LEN {
            return Err(PqError::SignatureLength {
                len: signature.len(),
            });
        }
        self.key
            .verify_sig(message, signature)
            .map_err(|_| PqError::BadSignature)
    }
}

/// An ML-DSA-65 signing key pair, kept with the seed it was derived from.
pub struct SigningKeyPair {
    seed: Zeroizing<[u8; DSA_SEED_LEN]>,
    pair: PqdsaKeyPair,
    public: SignaturePublicKey,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKeyPair {
    /// The key pair of a seed (FIPS 204 `ML-DSA.KeyGen_internal(ξ)`), deterministic.
    ///
    /// # Errors
    /// [`PqError::SeedRejected`] when aws-lc refuses it.
    pub fn from_seed(seed: &[u8; DSA_SEED_LEN]) -> Result<Self, PqError> {
        let pair =
            PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, seed).map_err(|_| PqError::SeedRejected)?;
        let public = SignaturePublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self {
            seed: Zeroizing::new(*seed),
            pair,
            public,
        })
    }

    /// A key pair from a fresh seed drawn from `rng`.
    ///
    /// # Errors
    /// [`PqError::SeedRejected`] when aws-lc refuses it.
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> Result<Self, PqError> {
        let mut seed = Zeroizing::new([0u8; DSA_SEED_LEN]);
        rng.fill_bytes(seed.as_mut_slice());
        Self::from_seed(&seed)
    }

    /// A key pair from a fresh seed drawn from the OS.
    ///
    /// # Errors
    /// [`PqError::SeedRejected`] when aws-lc refuses it.
    pub fn generate() -> Result<Self, PqError> {
        Self::generate_with(&mut rand_core::OsRng)
    }

    /// The seed, for storage at mode 0600.
    #[must_use]
    pub fn seed(&self) -> &[u8; DSA_SEED_LEN] {
        &self.seed
    }

    /// The verifying key.
    #[must_use]
    pub fn public(&self) -> &SignaturePublicKey {
        &self.public
    }

    /// Signs `message` (aws-lc signs hedged: two signatures of one message differ, and both
    /// verify).
    ///
    /// # Errors
    /// [`PqError::Signing`] when aws-lc fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PqError> {
        let mut signature = vec![0u8; DSA_SIGNATURE_LEN];
        let len = self
            .pair
            .sign(message, &mut signature)
            .map_err(|_| PqError::Signing)?;
        signature.truncate(len);
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let pair = SigningKeyPair::from_seed(&[7; DSA_SEED_LEN]).unwrap();
        let signature = pair.sign(b"message").unwrap();
        assert_eq!(signature.len(), DSA_SIGNATURE_LEN);
        pair.public().verify(b"message", &signature).unwrap();
        assert_eq!(
            pair.public().verify(b"messagf", &signature).unwrap_err(),
            PqError::BadSignature
        );
        let mut flipped = signature.clone();
        flipped[100] ^= 1;
        assert_eq!(
            pair.public().verify(b"message", &flipped).unwrap_err(),
            PqError::BadSignature
        );
        assert_eq!(
            pair.public()
                .verify(b"message", &signature[1..])
                .unwrap_err(),
            PqError::SignatureLength { len: 3308 }
        );
    }

    #[test]
    fn seed_is_deterministic_and_lengths_are_checked() {
        let a = SigningKeyPair::from_seed(&[1; DSA_SEED_LEN]).unwrap();
        let b = SigningKeyPair::from_seed(&[1; DSA_SEED_LEN]).unwrap();
        assert_eq!(a.public().as_bytes(), b.public().as_bytes());
        assert_eq!(a.seed(), &[1; DSA_SEED_LEN]);
        assert_eq!(
            SignaturePublicKey::from_bytes(&[0; 10]).unwrap_err(),
            PqError::SignaturePublicLength { len: 10 }
        );
    }
}
