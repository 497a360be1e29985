//! ML-KEM-768 (FIPS 203) through aws-lc-rs: key pairs, encapsulation, decapsulation.
//!
//! Public keys are checked on import: the exact length and the FIPS 203 §7.2 modulus check
//! (every 12-bit coefficient of `ek` below `q = 3329`), so a key that aws-lc would quietly
//! reduce is refused instead.

use core::fmt;

use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::PqError;

/// ML-KEM-768 encapsulation (public) key length.
pub const KEM_PUBLIC_LEN: usize = 1184;
/// ML-KEM-768 decapsulation (secret) key length, FIPS 203 `dk = dk_pke ‖ ek ‖ H(ek) ‖ z`.
pub const KEM_SECRET_LEN: usize = 2400;
/// ML-KEM-768 ciphertext length.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// ML-KEM shared secret length.
pub const KEM_SHARED_LEN: usize = 32;
/// Offset of `ek` inside `dk` (`384 · k`, `k = 3`).
const KEM_PUBLIC_OFFSET: usize = 1152;
/// The ML-KEM modulus.
const KEM_Q: u16 = 3329;

/// An ML-KEM shared secret; zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct KemSharedSecret([u8; KEM_SHARED_LEN]);

impl KemSharedSecret {
    /// Wraps 32 secret bytes (for tests and vectors; normal code gets one from
    /// [`KemPublicKey::encapsulate`] or [`KemKeyPair::decapsulate`]).
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEM_SHARED_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEM_SHARED_LEN] {
        &self.0
    }

    fn from_slice(bytes: &[u8]) -> Result<Self, PqError> {
        let array: [u8; KEM_SHARED_LEN] = bytes
            .try_into()
            .map_err(|_| PqError::KemSharedLength { len: bytes.len() })?;
        Ok(Self(array))
    }
}

impl fmt::Debug for KemSharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemSharedSecret(<redacted>)")
    }
}

/// FIPS 203 §7.2 encapsulation-key check: every coefficient of `ek[..384k]` is below `q`.
fn modulus_check(public: &[u8]) -> bool {
    public.get(..KEM_PUBLIC_OFFSET).is_some_and(|polys| {
        polys.chunks_exact(3).all(|b| match *b {
            [b0, b1, b2] => {
                let low = u16::from(b0) | (u16::from(b1 & 0x0f) << 8);
                let high = u16::from(b1 >> 4) | (u16::from(b2) << 4);
                low < KEM_Q && high < KEM_Q
            }
            _ => false,
        })
    })
}

/// An ML-KEM-768 encapsulation key (a peer's `kem_public` or one-time key).
pub struct KemPublicKey {
    key: EncapsulationKey,
    bytes: Box<[u8]>,
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPublicKey")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl KemPublicKey {
    /// Imports the 1184-byte encoding.
    ///
    /// # Errors
    /// [`PqError::KemPublicLength`], [`PqError::KemPublicNotReduced`],
    /// [`PqError::KemPublicRejected`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PqError> {
        if bytes.len() != KEM_PUBLIC_LEN {
            return Err(PqError::KemPublicLength { len: bytes.len() });
        }
        if !modulus_check(bytes) {
            return Err(PqError::KemPublicNotReduced);
        }
        let key =
            EncapsulationKey::new(&ML_KEM_768, bytes).map_err(|_| PqError::KemPublicRejected)?;
        Ok(Self {
            key,
            bytes: bytes.into(),
        })
    }

    /// The 1184-byte encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Encapsulates a fresh shared secret to this key: the 1088-byte ciphertext and the secret.
    ///
    /// # Errors
    /// [`PqError::Encapsulation`] when aws-lc fails.
    pub fn encapsulate(&self) -> Result<(Vec<u8>, KemSharedSecret), PqError> {
        let (ciphertext, shared) = self.key.encapsulate().map_err(|_| PqError::Encapsulation)?;
        let secret = KemSharedSecret::from_slice(shared.as_ref())?;
        Ok((ciphertext.as_ref().to_vec(), secret))
    }
}

/// An ML-KEM-768 key pair (a client's `kem_public` or one-time key, or a server key).
pub struct KemKeyPair {
    secret: DecapsulationKey,
    public: KemPublicKey,
}

impl fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl KemKeyPair {
    /// A fresh random key pair.
    ///
    /// # Errors
    /// [`PqError::KeyGeneration`] when aws-lc fails.
    pub fn generate() -> Result<Self, PqError> {
        let bytes = DecapsulationKey::generate(&ML_KEM_768)
            .and_then(|key| key.key_bytes())
            .map_err(|_| PqError::KeyGeneration)?;
        let secret = Zeroizing::new(bytes.as_ref().to_vec());
        Self::from_secret_bytes(&secret)
    }

    /// Imports a 2400-byte FIPS 203 decapsulation key; its public half (the bytes at offset
    /// 1152) must pass the same checks as [`KemPublicKey::from_bytes`].
    ///
    /// # Errors
    /// [`PqError::KemSecretLength`], [`PqError::KemSecretRejected`], or a public-key error.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, PqError> {
        if bytes.len() != KEM_SECRET_LEN {
            return Err(PqError::KemSecretLength { len: bytes.len() });
        }
        let public_bytes = bytes
            .get(KEM_PUBLIC_OFFSET..KEM_PUBLIC_OFFSET + KEM_PUBLIC_LEN)
            .ok_or(PqError::KemSecretLength { len: bytes.len() })?;
        let public = KemPublicKey::from_bytes(public_bytes)?;
        let secret =
            DecapsulationKey::new(&ML_KEM_768, bytes).map_err(|_| PqError::KemSecretRejected)?;
        Ok(Self { secret, public })
    }

    /// The 2400-byte decapsulation key, in a zeroizing buffer (for storage at mode 0600).
    ///
    /// # Errors
    /// [`PqError::KemSecretRejected`] when aws-lc cannot export it.
    pub fn secret_bytes(&self) -> Result<Zeroizing<Vec<u8>>, PqError> {
        let bytes = self
            .secret
            .key_bytes()
            .map_err(|_| PqError::KemSecretRejected)?;
        Ok(Zeroizing::new(bytes.as_ref().to_vec()))
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> &KemPublicKey {
        &self.public
    }

    /// Decapsulates a 1088-byte ciphertext. A ciphertext of the right length but wrong content
    /// yields an unrelated secret (FIPS 203 implicit rejection), never an error.
    ///
    /// # Errors
    /// [`PqError::CiphertextLength`], [`PqError::Decapsulation`].
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<KemSharedSecret, PqError> {
        if ciphertext.len() != KEM_CIPHERTEXT_LEN {
            return Err(PqError::CiphertextLength {
                len: ciphertext.len(),
            });
        }
        let shared = self
            .secret
            .decapsulate(Ciphertext::from(ciphertext))
            .map_err(|_| PqError::Decapsulation)?;
        KemSharedSecret::from_slice(shared.as_ref())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trip_and_secret_export() {
        let pair = KemKeyPair::generate().unwrap();
        let (ciphertext, sent) = pair.public().encapsulate().unwrap();
        assert_eq!(ciphertext.len(), KEM_CIPHERTEXT_LEN);
        assert_eq!(pair.decapsulate(&ciphertext).unwrap(), sent);
        let again = KemKeyPair::from_secret_bytes(&pair.secret_bytes().unwrap()).unwrap();
        assert_eq!(again.public().as_bytes(), pair.public().as_bytes());
        assert_eq!(again.decapsulate(&ciphertext).unwrap(), sent);
    }

    #[test]
    fn bad_sizes_and_unreduced_keys_are_refused() {
        let pair = KemKeyPair::generate().unwrap();
        let public = pair.public().as_bytes();
        assert_eq!(
            KemPublicKey::from_bytes(&public[1..]).unwrap_err(),
            PqError::KemPublicLength { len: 1183 }
        );
        let mut unreduced = public.to_vec();
        unreduced[0] = 0xff;
        unreduced[1] |= 0x0f; // first coefficient 0xfff ≥ q
        assert_eq!(
            KemPublicKey::from_bytes(&unreduced).unwrap_err(),
            PqError::KemPublicNotReduced
        );
        assert_eq!(
            KemKeyPair::from_secret_bytes(&[0; 10]).unwrap_err(),
            PqError::KemSecretLength { len: 10 }
        );
        assert_eq!(
            pair.decapsulate(&[0; 1087]).unwrap_err(),
            PqError::CiphertextLength { len: 1087 }
        );
    }

    #[test]
    fn tampered_ciphertext_gives_another_secret() {
        let pair = KemKeyPair::generate().unwrap();
        let (mut ciphertext, sent) = pair.public().encapsulate().unwrap();
        ciphertext[0] ^= 1;
        assert_ne!(pair.decapsulate(&ciphertext).unwrap(), sent);
    }
}
