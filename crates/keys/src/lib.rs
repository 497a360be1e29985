//! Key material and proofs for the CommuCat relay, wire-compatible with the deployed client's
//! `commucat-crypto` 1.0.41.
//!
//! * [`device`] — [`DeviceKeyPair`]: one 32-byte seed gives the device's Ed25519 key
//!   (`device_public`) and, used directly as an X25519 scalar, its Noise static key
//!   (`client_static`).
//! * [`zkp`] — the handshake Schnorr proof that binds `device_public`, `client_static`,
//!   `device_id` and the server domain (wire-compat §4).
//! * [`certificate`] — CA-signed device certificates with their exact canonical JSON
//!   (wire-compat §5).
//! * [`noise`] — Noise XK/IK handshakes and the `noise-transport` record layer.
//! * [`pq`] — post-quantum hybrid keys for `pq-hybrid`: ML-KEM-768, ML-DSA-65, `pq_bundle`
//!   validation, the hybrid session derivation and ratchet of `commucat-crypto` 1.0.41, and
//!   the signed handshake transcript.
//! * [`rotation`] — the proof a device signs with its current key to rotate to a new one.
//! * [`encoding`] — strict fixed-length hex helpers.
//!
//! The crate is sans-IO: no sockets, no async, no clock (callers pass `now`). Secrets are
//! zeroized on drop.
//!
//! ```
//! use commucat_keys::{DeviceKeyPair, derive_handshake_context, prove, verify};
//!
//! let device = DeviceKeyPair::generate();
//! let ctx = derive_handshake_context(
//!     "example.org",
//!     "dev-1",
//!     &device.public_key(),
//!     &device.x25519_static(),
//! )?;
//! let proof = prove(device.signing_key(), &ctx, &mut rand_core::OsRng)?;
//! verify(&ctx, &device.public_key(), &proof)?;
//! # Ok::<(), commucat_keys::ZkpError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod certificate;
pub mod device;
pub mod encoding;
pub mod noise;
mod noise_dh;
pub mod pq;
pub mod rotation;
pub mod zkp;

pub use certificate::{
    CertificateError, DEFAULT_MAX_CLOCK_SKEW_SECS, DeviceCertificate, DeviceCertificateData,
};
pub use device::{DeviceKeyPair, KEY_LEN, KeyError, x25519_public};
pub use encoding::{HexError, decode_hex_array, decode_hex32, decode_hex64, encode_hex};
pub use noise::{DEFAULT_PROLOGUE, Handshake, HandshakePattern, NoiseError, Transport};
pub use rotation::{
    ROTATION_DOMAIN_TAG, ROTATION_PROOF_LEN, RotationError, rotation_message, sign_rotation,
    verify_rotation,
};
pub use zkp::{
    HANDSHAKE_DOMAIN_TAG, HandshakeContext, HandshakeProof, ZkpError, derive_handshake_context,
    prove, verify,
};

/// Re-exported so callers can name the key types without depending on the dalek crates.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
/// Re-exported RNG traits and the OS RNG accepted by [`prove`] and
/// [`DeviceKeyPair::generate_with`].
pub use rand_core::{CryptoRng, OsRng, RngCore};
