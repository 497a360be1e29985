//! The CommuCat device handshake as sans-IO state machines.
//!
//! HELLO → AUTH (Noise message 2) → AUTH (message 3, XK only) → ACK. Neither machine reads a
//! socket, a store, the clock or the operating system's RNG: each is fed inputs (frames, store
//! answers, the time) and returns [`server::Step`]s / [`client::Step`]s that say what to do
//! next (send this frame, look this up, commit this, established, failed). Randomness comes
//! from a caller-supplied [`rand_core::CryptoRng`], so tests and fuzzers replay a handshake
//! exactly.
//!
//! The async drivers (the server's `session::handshake`, the client SDK's `handshake`) perform
//! the steps on a real connection and store.

pub mod client;
mod error;
pub mod pq;
pub mod server;
pub mod sim;

pub use error::{FailReason, HandshakeError, LinkFailure, Stage, StoreFailure};

use rand_core::{CryptoRng, RngCore};

/// Capability that switches post-handshake frames to Noise transport records.
pub const CAP_NOISE_TRANSPORT: &str = "noise-transport";
/// Capability of clients that ACK the frames they receive (`{"ack": <server sequence>}`,
/// cumulative): replayed offline envelopes are deleted only once ACKed.
pub const CAP_DELIVERY_RECEIPTS: &str = "delivery-receipts";
/// Capability of post-quantum hybrid sessions: an ML-KEM-768 exchange and an ML-DSA-65
/// transcript signature on top of Noise, and transport records keyed from the hybrid
/// material. Accepted only together with [`CAP_NOISE_TRANSPORT`] and when the server enables it
/// (`[crypto] pq_hybrid`); see `docs/pq-hybrid.md`.
pub const CAP_PQ_HYBRID: &str = "pq-hybrid";
/// Capability of `adaptive-obf` sessions: every frame after the ACK is wrapped in an
/// `ObfuscatedPacket` inside the transport records (`commucat_link::obf`). Accepted only together
/// with [`CAP_NOISE_TRANSPORT`] and when the server enables it (`[crypto] adaptive_obf`); see
/// `docs/obfuscation.md`.
pub const CAP_ADAPTIVE_OBF: &str = "adaptive-obf";
/// Capability of sessions whose post-handshake frames travel as RaptorQ FEC symbols (default
/// parameters: 1,152-byte symbols, 35 % repair); see `docs/multipath.md`. Not available in the
/// text connect modes.
pub const CAP_FEC: &str = "fec";
/// Capabilities this server can honour in any configuration.
pub const SUPPORTED_CAPABILITIES: &[&str] = &[CAP_NOISE_TRANSPORT, CAP_DELIVERY_RECEIPTS, CAP_FEC];

/// The per-session `adaptive-obf` root (see `commucat_link::obf::derive_root`); zeroized on
/// drop, never printed.
#[derive(Clone)]
pub struct ObfRoot(zeroize::Zeroizing<[u8; 32]>);

impl ObfRoot {
    /// The root bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for ObfRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObfRoot(..)")
    }
}

/// The classical half of the `adaptive-obf` root material, taken from the finished handshake
/// before it becomes a transport (which consumes it).
pub(crate) struct ObfMaterial {
    classical: zeroize::Zeroizing<[u8; 32]>,
    hash: [u8; 32],
}

impl ObfMaterial {
    /// Takes the Noise split secret and the handshake hash of the finished `noise`.
    pub(crate) fn take(noise: &mut commucat_keys::Handshake) -> Result<Self, String> {
        Ok(Self {
            classical: noise.split_secret().map_err(|e| e.to_string())?,
            hash: noise.handshake_hash(),
        })
    }

    /// The root, mixing in the hybrid root key of a `pq-hybrid` session.
    pub(crate) fn finish(self, hybrid_root: Option<&[u8; 32]>) -> Result<ObfRoot, String> {
        commucat_link::obf::derive_root(&self.classical, &self.hash, hybrid_root)
            .map(ObfRoot)
            .map_err(|e| e.to_string())
    }
}

/// A fresh random id from `rng`: 64 lowercase hex characters from 32 random bytes (the format
/// of the server's `registry::random_id`).
pub fn random_id<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    commucat_keys::encode_hex(&bytes)
}

/// 32 bytes from `rng`: the seed of one Noise handshake's randomness.
fn noise_seed<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> zeroize::Zeroizing<[u8; 32]> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    seed
}
