//! Hybrid session material and its ratchet, byte for byte as `commucat-crypto` 1.0.41 `pq`
//! derives it (`SessionKeys::derive_from`, `HybridRatchet`):
//!
//! ```text
//! ikm  = classical (32 B) ‖ ML-KEM shared secret (32 B)
//! okm  = HKDF-SHA3-512(salt, ikm).expand(info, 96)
//!        info = "commucat.hybrid.session.v1" for the session,
//!               "commucat.hybrid.ratchet.v1" for a ratchet step (salt = the previous root key)
//! root = okm[0..32]   first = okm[32..64]   second = okm[64..96]
//! Encapsulator (1.0.41 `SessionRole::Initiator`): sends on `first`, receives on `second`
//! Decapsulator (1.0.41 `SessionRole::Responder`): sends on `second`, receives on `first`
//! message key n = BLAKE3-keyed(chain, u32 big-endian n), n = 0, 1, 2, …
//! ```
//!
//! An empty salt is HKDF's "no salt" (both become an all-zero HMAC key), which is what 1.0.41
//! uses when its `HybridSettings` carry none.
//!
//! Differences from 1.0.41, none of which change a derived byte: the role is named by who
//! encapsulated (1.0.41's `encapsulate_hybrid` yields `Initiator`), a chain refuses to wrap its
//! `u32` counter instead of reusing message keys, and every secret is zeroized (the previous
//! root, chains and intermediate buffers at the moment a ratchet step replaces them).

use core::fmt;

use hkdf::SimpleHkdf;
use sha3::Sha3_512;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::PqError;
use super::kem::KEM_SHARED_LEN;

/// HKDF `info` of the session derivation.
pub const SESSION_LABEL: &[u8] = b"commucat.hybrid.session.v1";
/// HKDF `info` of a ratchet step.
pub const RATCHET_LABEL: &[u8] = b"commucat.hybrid.ratchet.v1";
/// Length of the classical input (the Noise-derived secret).
pub const CLASSICAL_LEN: usize = 32;
/// Length of each of the root key and the two chain keys.
pub const SESSION_KEY_LEN: usize = 32;

/// Which side of the ML-KEM exchange this session is, which decides whose chain is whose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HybridRole {
    /// Encapsulated to the peer's key (the server at the handshake and in ratchet steps);
    /// 1.0.41's `SessionRole::Initiator`: sends on the first chain.
    Encapsulator,
    /// Decapsulated the ciphertext (the client); 1.0.41's `SessionRole::Responder`: sends on
    /// the second chain.
    Decapsulator,
}

/// A per-message key from a chain; zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MessageKey([u8; SESSION_KEY_LEN]);

impl MessageKey {
    /// The key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageKey(<redacted>)")
    }
}

/// Root key, two chain keys and their counters; zeroized on drop and on every ratchet step.
/// Not `Clone`: one copy of the material exists.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct HybridSession {
    #[zeroize(skip)]
    role: HybridRole,
    root_key: [u8; SESSION_KEY_LEN],
    sending_chain: [u8; SESSION_KEY_LEN],
    receiving_chain: [u8; SESSION_KEY_LEN],
    sending_counter: u32,
    receiving_counter: u32,
    epoch: u64,
}

impl fmt::Debug for HybridSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridSession")
            .field("role", &self.role)
            .field("epoch", &self.epoch)
            .field("sending_counter", &self.sending_counter)
            .field("receiving_counter", &self.receiving_counter)
            .finish_non_exhaustive()
    }
}

/// HKDF-SHA3-512 over `classical ‖ kem_shared`, expanded to 96 bytes.
fn expand(
    classical: &[u8; CLASSICAL_LEN],
    kem_shared: &[u8],
    salt: &[u8],
    info: &[u8],
) -> Result<Zeroizing<[u8; 3 * SESSION_KEY_LEN]>, PqError> {
    if kem_shared.len() != KEM_SHARED_LEN {
        return Err(PqError::KemSharedLength {
            len: kem_shared.len(),
        });
    }
    let mut ikm = Zeroizing::new([0u8; CLASSICAL_LEN + KEM_SHARED_LEN]);
    let (classical_part, kem_part) = ikm.split_at_mut(CLASSICAL_LEN);
    classical_part.copy_from_slice(classical);
    kem_part.copy_from_slice(kem_shared);
    let salt = (!salt.is_empty()).then_some(salt);
    let hkdf = SimpleHkdf::<Sha3_512>::new(salt, ikm.as_slice());
    let mut okm = Zeroizing::new([0u8; 3 * SESSION_KEY_LEN]);
    hkdf.expand(info, okm.as_mut_slice())
        .map_err(|_| PqError::KeyDerivation)?;
    Ok(okm)
}

/// Splits 96 bytes of output key material into (root, sending, receiving) for `role`.
fn split(
    okm: &[u8; 3 * SESSION_KEY_LEN],
    role: HybridRole,
) -> (
    [u8; SESSION_KEY_LEN],
    [u8; SESSION_KEY_LEN],
    [u8; SESSION_KEY_LEN],
) {
    let mut parts = okm.chunks_exact(SESSION_KEY_LEN);
    let mut next = || {
        let mut key = [0u8; SESSION_KEY_LEN];
        if let Some(part) = parts.next() {
            key.copy_from_slice(part);
        }
        key
    };
    let (root, first, second) = (next(), next(), next());
    match role {
        HybridRole::Encapsulator => (root, first, second),
        HybridRole::Decapsulator => (root, second, first),
    }
}

fn chain_key(chain: &[u8; SESSION_KEY_LEN], counter: &mut u32) -> Result<MessageKey, PqError> {
    let next = counter.checked_add(1).ok_or(PqError::ChainExhausted)?;
    let key = MessageKey(*blake3::keyed_hash(chain, &counter.to_be_bytes()).as_bytes());
    *counter = next;
    Ok(key)
}

impl HybridSession {
    /// The session material of a hybrid handshake: HKDF-SHA3-512 with `salt` (empty = none)
    /// and the `commucat.hybrid.session.v1` label over `classical ‖ kem_shared`.
    ///
    /// # Errors
    /// [`PqError::KemSharedLength`] when `kem_shared` is not 32 bytes.
    pub fn derive(
        classical: &[u8; CLASSICAL_LEN],
        kem_shared: &[u8],
        salt: &[u8],
        role: HybridRole,
    ) -> Result<Self, PqError> {
        let okm = expand(classical, kem_shared, salt, SESSION_LABEL)?;
        let (root_key, sending_chain, receiving_chain) = split(&okm, role);
        Ok(Self {
            role,
            root_key,
            sending_chain,
            receiving_chain,
            sending_counter: 0,
            receiving_counter: 0,
            epoch: 0,
        })
    }

    /// A ratchet step (1.0.41 `HybridRatchet::ratchet_with_material` with this session's
    /// role): HKDF-SHA3-512 with the current root as salt and the `commucat.hybrid.ratchet.v1`
    /// label over `classical ‖ kem_shared`. Root, chains and counters are replaced in place
    /// (the old bytes are overwritten, intermediate buffers zeroized) and the epoch advances.
    ///
    /// Most callers use [`HybridSession::ratchet_encapsulate`] or
    /// [`HybridSession::ratchet_decapsulate`], which also consume the one-time key.
    ///
    /// # Errors
    /// [`PqError::KemSharedLength`]; on error the session is unchanged.
    pub fn ratchet(
        &mut self,
        classical: &[u8; CLASSICAL_LEN],
        kem_shared: &[u8],
    ) -> Result<(), PqError> {
        let previous_root = Zeroizing::new(self.root_key);
        let okm = expand(
            classical,
            kem_shared,
            previous_root.as_slice(),
            RATCHET_LABEL,
        )?;
        let (mut root, mut sending, mut receiving) = split(&okm, self.role);
        self.root_key.copy_from_slice(&root);
        self.sending_chain.copy_from_slice(&sending);
        self.receiving_chain.copy_from_slice(&receiving);
        root.zeroize();
        sending.zeroize();
        receiving.zeroize();
        self.sending_counter = 0;
        self.receiving_counter = 0;
        self.epoch = self.epoch.saturating_add(1);
        Ok(())
    }

    /// This side's role.
    #[must_use]
    pub fn role(&self) -> HybridRole {
        self.role
    }

    /// Ratchet steps taken since the handshake (0 right after it).
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The root key (the salt of the next ratchet step).
    #[must_use]
    pub fn root_key(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.root_key
    }

    /// The chain this side sends on.
    #[must_use]
    pub fn sending_chain(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.sending_chain
    }

    /// The chain this side receives on.
    #[must_use]
    pub fn receiving_chain(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.receiving_chain
    }

    /// The next sending message key, `BLAKE3-keyed(sending_chain, counter_be32)`.
    ///
    /// # Errors
    /// [`PqError::ChainExhausted`] after 2³² − 1 keys (a ratchet step resets the counter).
    pub fn next_sending_key(&mut self) -> Result<MessageKey, PqError> {
        chain_key(&self.sending_chain, &mut self.sending_counter)
    }

    /// The next receiving message key, `BLAKE3-keyed(receiving_chain, counter_be32)`.
    ///
    /// # Errors
    /// [`PqError::ChainExhausted`] after 2³² − 1 keys (a ratchet step resets the counter).
    pub fn next_receiving_key(&mut self) -> Result<MessageKey, PqError> {
        chain_key(&self.receiving_chain, &mut self.receiving_counter)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_two_roles_mirror_each_other() {
        let mut a =
            HybridSession::derive(&[1; 32], &[2; 32], b"salt", HybridRole::Encapsulator).unwrap();
        let mut b =
            HybridSession::derive(&[1; 32], &[2; 32], b"salt", HybridRole::Decapsulator).unwrap();
        assert_eq!(a.root_key(), b.root_key());
        assert_eq!(a.sending_chain(), b.receiving_chain());
        assert_eq!(a.receiving_chain(), b.sending_chain());
        assert_ne!(a.sending_chain(), a.receiving_chain());
        assert_eq!(
            a.next_sending_key().unwrap(),
            b.next_receiving_key().unwrap()
        );
        assert_eq!(
            a.next_sending_key().unwrap(),
            b.next_receiving_key().unwrap()
        );
        assert_eq!(
            b.next_sending_key().unwrap(),
            a.next_receiving_key().unwrap()
        );

        let before = *a.root_key();
        a.ratchet(&[3; 32], &[4; 32]).unwrap();
        b.ratchet(&[3; 32], &[4; 32]).unwrap();
        assert_ne!(a.root_key(), &before);
        assert_eq!((a.epoch(), b.epoch()), (1, 1));
        assert_eq!(
            a.next_sending_key().unwrap(),
            b.next_receiving_key().unwrap()
        );
    }

    #[test]
    fn wrong_kem_secret_length_is_refused_and_leaves_the_session() {
        let mut a =
            HybridSession::derive(&[1; 32], &[2; 32], b"", HybridRole::Encapsulator).unwrap();
        let root = *a.root_key();
        assert_eq!(
            a.ratchet(&[3; 32], &[4; 31]).unwrap_err(),
            PqError::KemSharedLength { len: 31 }
        );
        assert_eq!(a.root_key(), &root);
        assert_eq!(a.epoch(), 0);
    }

    #[test]
    fn a_chain_refuses_to_wrap() {
        let mut a =
            HybridSession::derive(&[1; 32], &[2; 32], b"", HybridRole::Encapsulator).unwrap();
        a.sending_counter = u32::MAX - 1;
        a.next_sending_key().unwrap();
        assert_eq!(a.next_sending_key().unwrap_err(), PqError::ChainExhausted);
    }
}
