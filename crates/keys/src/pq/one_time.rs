//! One-time ML-KEM keys and the `HybridRatchet` step that spends them.
//!
//! The client announces up to [`MAX_ONE_TIME_KEYS`](super::MAX_ONE_TIME_KEYS) one-time
//! ML-KEM-768 public keys in its `pq_bundle`. A ratchet step is one fresh encapsulation by the
//! server to the next unused key, in announcement order:
//!
//! 1. the server takes key `index` from its [`OneTimePublicKeys`] (it is gone from the set at
//!    once, whatever happens next), encapsulates to it, re-keys its session
//!    ([`HybridSession::ratchet_encapsulate`]) and sends `index` and the ciphertext
//!    ([`RatchetStep`]);
//! 2. the client takes the key pair `index` from its [`OneTimeKeyPairs`], decapsulates and
//!    re-keys ([`HybridSession::ratchet_decapsulate`]); the secret key is dropped right after.
//!
//! Each index is spent once on each side: asking again is [`PqError::OneTimeKeyUsed`]. When
//! every key is spent, the next step is [`PqError::OneTimeKeysExhausted`]; what the
//! connection then does (end the session, or keep its current keys) is the caller's policy.

use super::PqError;
use super::kem::{KemKeyPair, KemPublicKey};
use super::session::{CLASSICAL_LEN, HybridSession};

/// What the encapsulating side sends for one ratchet step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatchetStep {
    /// Position of the one-time key in the announced list.
    pub index: u32,
    /// The 1088-byte ML-KEM-768 ciphertext to that key.
    pub ciphertext: Vec<u8>,
}

/// The peer's announced one-time public keys, each spent at most once (encapsulating side).
#[derive(Debug)]
pub struct OneTimePublicKeys {
    keys: Vec<Option<KemPublicKey>>,
}

impl OneTimePublicKeys {
    /// The keys in announcement order.
    #[must_use]
    pub fn new(keys: Vec<KemPublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(Some).collect(),
        }
    }

    /// Keys not yet spent.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.keys.iter().filter(|key| key.is_some()).count()
    }

    /// Removes and returns the first unspent key with its index.
    ///
    /// # Errors
    /// [`PqError::OneTimeKeysExhausted`].
    pub fn take_next(&mut self) -> Result<(u32, KemPublicKey), PqError> {
        for (index, slot) in self.keys.iter_mut().enumerate() {
            if let Some(key) = slot.take() {
                let index = u32::try_from(index).map_err(|_| PqError::OneTimeKeysExhausted)?;
                return Ok((index, key));
            }
        }
        Err(PqError::OneTimeKeysExhausted)
    }
}

/// This side's one-time key pairs, each spent at most once (decapsulating side).
#[derive(Debug)]
pub struct OneTimeKeyPairs {
    pairs: Vec<Option<KemKeyPair>>,
}

impl OneTimeKeyPairs {
    /// `count` fresh key pairs.
    ///
    /// # Errors
    /// [`PqError::KeyGeneration`].
    pub fn generate(count: usize) -> Result<Self, PqError> {
        let pairs = (0..count)
            .map(|_| KemKeyPair::generate().map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { pairs })
    }

    /// Key pairs in announcement order (e.g. reloaded from storage).
    #[must_use]
    pub fn new(pairs: Vec<KemKeyPair>) -> Self {
        Self {
            pairs: pairs.into_iter().map(Some).collect(),
        }
    }

    /// The public keys of the unspent pairs, in announcement order, for the bundle (spent
    /// positions are skipped; announce only a fresh set).
    pub fn public_keys(&self) -> impl Iterator<Item = &KemPublicKey> {
        self.pairs.iter().flatten().map(KemKeyPair::public)
    }

    /// Key pairs not yet spent.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.pairs.iter().filter(|pair| pair.is_some()).count()
    }

    /// Removes and returns key pair `index`.
    ///
    /// # Errors
    /// [`PqError::OneTimeKeyUnknown`] past the end, [`PqError::OneTimeKeyUsed`] when spent.
    pub fn take(&mut self, index: u32) -> Result<KemKeyPair, PqError> {
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.pairs.get_mut(i))
            .ok_or(PqError::OneTimeKeyUnknown { index })?;
        slot.take().ok_or(PqError::OneTimeKeyUsed { index })
    }
}

impl HybridSession {
    /// Encapsulating side of a ratchet step: spends the next one-time key, encapsulates to it
    /// and re-keys this session with `classical ‖ shared secret`. Returns what to send.
    ///
    /// # Errors
    /// [`PqError::OneTimeKeysExhausted`] (session unchanged), [`PqError::Encapsulation`] (the
    /// key stays spent, the session unchanged).
    pub fn ratchet_encapsulate(
        &mut self,
        keys: &mut OneTimePublicKeys,
        classical: &[u8; CLASSICAL_LEN],
    ) -> Result<RatchetStep, PqError> {
        let (index, key) = keys.take_next()?;
        let (ciphertext, shared) = key.encapsulate()?;
        self.ratchet(classical, shared.as_bytes())?;
        Ok(RatchetStep { index, ciphertext })
    }

    /// Decapsulating side of a ratchet step: spends one-time key pair `step.index`,
    /// decapsulates `step.ciphertext` and re-keys this session. A ciphertext of the wrong
    /// length is refused before the key is spent.
    ///
    /// # Errors
    /// [`PqError::CiphertextLength`], [`PqError::OneTimeKeyUnknown`],
    /// [`PqError::OneTimeKeyUsed`], [`PqError::Decapsulation`]; the session is unchanged.
    pub fn ratchet_decapsulate(
        &mut self,
        keys: &mut OneTimeKeyPairs,
        step: &RatchetStep,
        classical: &[u8; CLASSICAL_LEN],
    ) -> Result<(), PqError> {
        if step.ciphertext.len() != super::KEM_CIPHERTEXT_LEN {
            return Err(PqError::CiphertextLength {
                len: step.ciphertext.len(),
            });
        }
        let pair = keys.take(step.index)?;
        let shared = pair.decapsulate(&step.ciphertext)?;
        drop(pair);
        self.ratchet(classical, shared.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::session::HybridRole;
    use super::*;

    fn pair_of_sessions() -> (HybridSession, HybridSession) {
        (
            HybridSession::derive(&[9; 32], &[8; 32], b"", HybridRole::Encapsulator).unwrap(),
            HybridSession::derive(&[9; 32], &[8; 32], b"", HybridRole::Decapsulator).unwrap(),
        )
    }

    #[test]
    fn steps_spend_keys_in_order_until_exhausted() {
        let mut client_keys = OneTimeKeyPairs::generate(2).unwrap();
        let announced: Vec<KemPublicKey> = client_keys
            .public_keys()
            .map(|key| KemPublicKey::from_bytes(key.as_bytes()).unwrap())
            .collect();
        let mut server_keys = OneTimePublicKeys::new(announced);
        let (mut server, mut client) = pair_of_sessions();
        for expected in 0..2 {
            let step = server
                .ratchet_encapsulate(&mut server_keys, &[1; 32])
                .unwrap();
            assert_eq!(step.index, expected);
            client
                .ratchet_decapsulate(&mut client_keys, &step, &[1; 32])
                .unwrap();
            assert_eq!(server.root_key(), client.root_key());
            assert_eq!(
                server.next_sending_key().unwrap(),
                client.next_receiving_key().unwrap()
            );
            // The same step again: its key is spent.
            assert_eq!(
                client
                    .ratchet_decapsulate(&mut client_keys, &step, &[1; 32])
                    .unwrap_err(),
                PqError::OneTimeKeyUsed { index: expected }
            );
        }
        assert_eq!((server_keys.remaining(), client_keys.remaining()), (0, 0));
        let root = *server.root_key();
        assert_eq!(
            server
                .ratchet_encapsulate(&mut server_keys, &[1; 32])
                .unwrap_err(),
            PqError::OneTimeKeysExhausted
        );
        assert_eq!(server.root_key(), &root);
        let unknown = RatchetStep {
            index: 7,
            ciphertext: vec![0; super::super::KEM_CIPHERTEXT_LEN],
        };
        assert_eq!(
            client
                .ratchet_decapsulate(&mut client_keys, &unknown, &[1; 32])
                .unwrap_err(),
            PqError::OneTimeKeyUnknown { index: 7 }
        );
    }
}
