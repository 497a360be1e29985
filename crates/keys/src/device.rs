//! Device key pairs: one 32-byte secret seed, two curves.
//!
//! The deployed client (wire-compat §3.1) keeps a single 32-byte secret per device and uses it
//!
//! * as the **Ed25519 seed** of the device signing key (`device_public` in HELLO, the key in
//!   device certificates and the key proven by the handshake Schnorr proof), and
//! * directly as the **X25519 private scalar** of its Noise static key (`client_static`);
//!   X25519 clamps it.
//!
//! The two public keys are unrelated points; neither can be derived from the other without the
//! seed. Their binding is the handshake proof (see [`crate::zkp`]).

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, OsRng, RngCore};
use x25519_dalek::{PublicKey as X25519PublicKey, StaticSecret};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::encoding::{HexError, decode_hex32, encode_hex};

/// Length in bytes of a device seed, of both public keys and of an X25519 private key.
pub const KEY_LEN: usize = 32;

/// Minimum length accepted by [`DeviceKeyPair::from_seed_material`].
pub const MIN_SEED_MATERIAL_LEN: usize = 32;

/// Errors while constructing device keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Seed material for [`DeviceKeyPair::from_seed_material`] is shorter than
    /// [`MIN_SEED_MATERIAL_LEN`] bytes.
    #[error("seed material too short: {len} bytes, need at least {MIN_SEED_MATERIAL_LEN}")]
    SeedMaterialTooShort {
        /// Length that was supplied.
        len: usize,
    },
    /// A hex-encoded seed could not be decoded.
    #[error("invalid hex seed: {0}")]
    Hex(#[from] HexError),
}

/// A device's key pair: an Ed25519 signing key whose 32-byte seed doubles as the X25519
/// private key of the device's Noise static key.
///
/// The secret is zeroized when the value is dropped. `Debug` never prints it.
#[derive(Clone)]
pub struct DeviceKeyPair {
    signing: SigningKey,
}

// `SigningKey` (ed25519-dalek with the `zeroize` feature) wipes its seed on drop, and it is the
// only field.
impl ZeroizeOnDrop for DeviceKeyPair {}

impl DeviceKeyPair {
    /// Builds the key pair from a 32-byte secret seed (the value the client stores as its
    /// device private key).
    #[must_use]
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// Parses a 64-character hex seed (either case).
    ///
    /// # Errors
    /// [`KeyError::Hex`] if the text is not exactly 32 hex-encoded bytes.
    pub fn from_seed_hex(seed_hex: &str) -> Result<Self, KeyError> {
        let seed = Zeroizing::new(decode_hex32(seed_hex)?);
        Ok(Self::from_seed(&seed))
    }

    /// Derives the key pair the way `commucat_crypto::DeviceKeyPair::from_seed` does:
    /// Ed25519 seed = BLAKE3(`material`). The reference server derives its device-CA key from
    /// the federation seed and the keys of paired devices from the pairing seed this way.
    ///
    /// # Errors
    /// [`KeyError::SeedMaterialTooShort`] if `material` is shorter than 32 bytes.
    pub fn from_seed_material(material: &[u8]) -> Result<Self, KeyError> {
        if material.len() < MIN_SEED_MATERIAL_LEN {
            return Err(KeyError::SeedMaterialTooShort {
                len: material.len(),
            });
        }
        let seed = Zeroizing::new(*blake3::hash(material).as_bytes());
        Ok(Self::from_seed(&seed))
    }

    /// Generates a fresh key pair from the operating system's CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// Generates a fresh key pair from the given cryptographic RNG.
    #[must_use]
    pub fn generate_with<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(seed.as_mut_slice());
        Self::from_seed(&seed)
    }

    /// The 32-byte secret seed (Ed25519 seed and X25519 private key). Wiped when the returned
    /// wrapper is dropped.
    #[must_use]
    pub fn seed(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The X25519 private key for Noise; identical bytes to [`Self::seed`] (X25519 clamps).
    #[must_use]
    pub fn x25519_private(&self) -> Zeroizing<[u8; KEY_LEN]> {
        self.seed()
    }

    /// The Ed25519 signing key.
    #[must_use]
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The Ed25519 verifying key.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The Ed25519 public key bytes (`device_public` in HELLO, `public_key` in certificates).
    #[must_use]
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 public key of the seed used as X25519 private key (`client_static` in HELLO;
    /// the Noise static the client reveals in XK message 3).
    #[must_use]
    pub fn x25519_static(&self) -> [u8; KEY_LEN] {
        x25519_public(&self.seed())
    }

    /// Signs `message` with Ed25519 (RFC 8032, not prehashed).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Lowercase hex of [`Self::public_key`].
    #[must_use]
    pub fn public_key_hex(&self) -> String {
        encode_hex(&self.public_key())
    }

    /// Lowercase hex of [`Self::x25519_static`].
    #[must_use]
    pub fn x25519_static_hex(&self) -> String {
        encode_hex(&self.x25519_static())
    }
}

impl fmt::Debug for DeviceKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeyPair")
            .field("public_key", &self.public_key_hex())
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// X25519 public key for a 32-byte private key (the private key is clamped as usual). Use it,
/// for example, to check that a configured Noise public key matches its private key.
#[must_use]
pub fn x25519_public(private: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    // `StaticSecret` zeroizes itself on drop.
    let secret = StaticSecret::from(*private);
    X25519PublicKey::from(&secret).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7u8; 32];

    #[test]
    fn from_seed_is_deterministic_and_keys_differ() {
        let a = DeviceKeyPair::from_seed(&SEED);
        let b = DeviceKeyPair::from_seed(&SEED);
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.x25519_static(), b.x25519_static());
        // The two public keys are different points.
        assert_ne!(a.public_key(), a.x25519_static());
        assert_eq!(*a.seed(), SEED);
        assert_eq!(*a.x25519_private(), SEED);
    }

    #[test]
    fn x25519_static_is_diffie_hellman_compatible() {
        // If x25519_static really is X25519(seed), both sides compute the same shared secret.
        let device = DeviceKeyPair::from_seed(&SEED);
        let other = StaticSecret::from([9u8; 32]);
        let other_public = X25519PublicKey::from(&other);
        let device_secret = StaticSecret::from(*device.x25519_private());
        let left = device_secret.diffie_hellman(&other_public);
        let right = other.diffie_hellman(&X25519PublicKey::from(device.x25519_static()));
        assert_eq!(left.as_bytes(), right.as_bytes());
    }

    #[test]
    fn rfc7748_x25519_vector() {
        // RFC 7748 §6.1, Alice.
        let private =
            decode_hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap();
        let public =
            decode_hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
                .unwrap();
        assert_eq!(x25519_public(&private), public);
    }

    #[test]
    fn rfc8032_ed25519_vector() {
        // RFC 8032 §7.1, TEST 1.
        let seed = decode_hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let keys = DeviceKeyPair::from_seed(&seed);
        assert_eq!(
            keys.public_key_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let signature = keys.sign(b"");
        assert_eq!(
            encode_hex(&signature),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn seed_hex_round_trip_and_errors() {
        let keys = DeviceKeyPair::from_seed_hex(&"0A".repeat(32)).unwrap();
        assert_eq!(*keys.seed(), [0x0a; 32]);
        assert!(matches!(
            DeviceKeyPair::from_seed_hex("abcd"),
            Err(KeyError::Hex(HexError::InvalidLength { .. }))
        ));
    }

    #[test]
    fn seed_material_uses_blake3_and_requires_32_bytes() {
        let material = b"seed-seed-seed-seed-seed-seed-seed-seed";
        let keys = DeviceKeyPair::from_seed_material(material).unwrap();
        assert_eq!(*keys.seed(), *blake3::hash(material).as_bytes());
        assert_eq!(
            DeviceKeyPair::from_seed_material(&[0u8; 31]).unwrap_err(),
            KeyError::SeedMaterialTooShort { len: 31 }
        );
    }

    #[test]
    fn generate_produces_distinct_keys() {
        let a = DeviceKeyPair::generate();
        let b = DeviceKeyPair::generate();
        assert_ne!(a.public_key(), b.public_key());
    }

    #[test]
    fn debug_does_not_leak_seed() {
        let keys = DeviceKeyPair::from_seed(&[0xab; 32]);
        let text = format!("{keys:?}");
        assert!(!text.contains(&"ab".repeat(32)));
        assert!(text.contains("redacted"));
    }
}
