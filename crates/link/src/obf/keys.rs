//! The MAC key schedule.
//!
//! ```text
//! root      = HKDF-SHA3-256(salt = Noise handshake hash,
//!                           ikm  = Noise split k1 [|| pq-hybrid root key],
//!                           info = "commucat.obf")                      (32 bytes, per session)
//! seed₀     = blake3::derive_key("commucat.obf client-to-server v1" | "… server-to-client v1", root)
//! key_e     = blake3::derive_key("commucat.obf", seed_e)   (1.0.41 `ObfuscationKey::derive`)
//! seed_e+1  = blake3::derive_key("commucat.obf rotate v1", seed_e)   after ROTATE_EVERY packets
//! ```
//!
//! Each direction has its own chain; a seed and key are zeroized when the next replaces them,
//! so a key taken from memory opens no earlier epoch.

use hkdf::SimpleHkdf;
use sha3::Sha3_256;
use zeroize::Zeroizing;

/// `blake3::derive_key` context of the MAC key (1.0.41's label).
pub const MAC_KEY_LABEL: &str = "commucat.obf";
/// HKDF `info` of the per-session root.
pub const ROOT_INFO: &[u8] = b"commucat.obf";
/// `blake3::derive_key` context of a rotation step.
pub const ROTATE_LABEL: &str = "commucat.obf rotate v1";
/// `blake3::derive_key` context of the client → server epoch-0 seed.
pub const C2S_LABEL: &str = "commucat.obf client-to-server v1";
/// `blake3::derive_key` context of the server → client epoch-0 seed.
pub const S2C_LABEL: &str = "commucat.obf server-to-client v1";
/// Packets per direction under one key; the key of that direction rotates after this many.
pub const ROTATE_EVERY: u64 = 4096;

/// The per-session root: HKDF-SHA3-256 of the Noise split secret (and, for a `pq-hybrid`
/// session, the hybrid root key) salted with the handshake hash, under `"commucat.obf"`.
///
/// # Errors
/// None in practice (32 bytes is far below HKDF's output limit).
pub fn derive_root(
    classical: &[u8; 32],
    handshake_hash: &[u8],
    hybrid_root: Option<&[u8; 32]>,
) -> Result<Zeroizing<[u8; 32]>, hkdf::InvalidLength> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(classical);
    if let Some(hybrid) = hybrid_root {
        ikm.extend_from_slice(hybrid);
    }
    let hkdf = SimpleHkdf::<Sha3_256>::new(Some(handshake_hash), &ikm);
    let mut root = Zeroizing::new([0u8; 32]);
    hkdf.expand(ROOT_INFO, root.as_mut())?;
    Ok(root)
}

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The device (Noise initiator).
    Client,
    /// The server.
    Server,
}

/// One direction's chain: the current seed, its MAC key, the epoch and packets under it.
pub(crate) struct KeyChain {
    seed: Zeroizing<[u8; 32]>,
    key: Zeroizing<[u8; 32]>,
    epoch: u64,
    packets: u64,
    rotate_every: u64,
}

impl std::fmt::Debug for KeyChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyChain")
            .field("epoch", &self.epoch)
            .field("packets", &self.packets)
            .finish_non_exhaustive()
    }
}

impl KeyChain {
    fn new(seed: Zeroizing<[u8; 32]>, rotate_every: u64) -> Self {
        let key = Zeroizing::new(blake3::derive_key(MAC_KEY_LABEL, seed.as_ref()));
        Self {
            seed,
            key,
            epoch: 0,
            packets: 0,
            rotate_every: rotate_every.max(1),
        }
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    pub(crate) const fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Counts one packet under the current key; rotates when the epoch is full.
    pub(crate) fn count(&mut self) {
        self.packets += 1;
        if self.packets >= self.rotate_every {
            self.seed = Zeroizing::new(blake3::derive_key(ROTATE_LABEL, self.seed.as_ref()));
            self.key = Zeroizing::new(blake3::derive_key(MAC_KEY_LABEL, self.seed.as_ref()));
            self.epoch += 1;
            self.packets = 0;
        }
    }
}

/// The two chains of `role` (sending, receiving).
pub(crate) fn chains(root: &[u8; 32], role: Role, rotate_every: u64) -> (KeyChain, KeyChain) {
    let seed = |context: &str| Zeroizing::new(blake3::derive_key(context, root));
    let c2s = KeyChain::new(seed(C2S_LABEL), rotate_every);
    let s2c = KeyChain::new(seed(S2C_LABEL), rotate_every);
    match role {
        Role::Client => (c2s, s2c),
        Role::Server => (s2c, c2s),
    }
}
