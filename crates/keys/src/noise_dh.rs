//! X25519 for snow backed by aws-lc-rs, which is faster here than snow's default
//! (curve25519-dalek's Montgomery ladder): see docs/BENCHMARKS.md. Everything else (ChaChaPoly,
//! BLAKE2s, RNG) stays with snow's default resolver.

use aws_lc_rs::agreement::{PrivateKey, UnparsedPublicKey, X25519, agree};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroizing;

/// Key and output length of X25519.
const LEN: usize = 32;

/// snow's resolver with X25519 from aws-lc-rs.
pub(crate) fn resolver() -> snow::resolvers::BoxedCryptoResolver {
    Box::new(FallbackResolver::new(
        Box::new(AwsLcDhResolver { seed: None }),
        Box::new(DefaultResolver),
    ))
}

/// [`resolver`], drawing the handshake's randomness (its ephemeral key) from a stream derived
/// from `seed` instead of the operating system: the caller supplies the entropy.
pub(crate) fn seeded_resolver(seed: &[u8; 32]) -> snow::resolvers::BoxedCryptoResolver {
    Box::new(FallbackResolver::new(
        Box::new(AwsLcDhResolver {
            seed: Some(Zeroizing::new(*seed)),
        }),
        Box::new(DefaultResolver),
    ))
}

struct AwsLcDhResolver {
    seed: Option<Zeroizing<[u8; 32]>>,
}

/// A BLAKE3 output stream keyed by a caller-supplied seed.
struct SeededRandom(blake3::OutputReader);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl CryptoResolver for AwsLcDhResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let seed = self.seed.as_ref()?;
        let reader = blake3::Hasher::new_derive_key("commucat noise handshake randomness v1")
            .update(seed.as_ref())
            .finalize_xof();
        Some(Box::new(SeededRandom(reader)))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(AwsLcX25519::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, _choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        None
    }

    fn resolve_cipher(&self, _choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

#[derive(Default)]
struct AwsLcX25519 {
    private: Zeroizing<[u8; LEN]>,
    public: [u8; LEN],
}

impl Dh for AwsLcX25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        LEN
    }

    fn priv_len(&self) -> usize {
        LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        // snow passes exactly `priv_len` bytes; anything else leaves the key unset, and the
        // all-zero key then fails every agreement instead of computing with garbage.
        let Ok(bytes) = <[u8; LEN]>::try_from(privkey) else {
            return;
        };
        *self.private = bytes;
        self.public = PrivateKey::from_private_key(&X25519, &bytes)
            .ok()
            .and_then(|key| key.compute_public_key().ok())
            .and_then(|public| <[u8; LEN]>::try_from(public.as_ref()).ok())
            .unwrap_or([0; LEN]);
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut bytes = Zeroizing::new([0u8; LEN]);
        rng.try_fill_bytes(bytes.as_mut())?;
        self.set(bytes.as_ref());
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        self.private.as_ref()
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let key = PrivateKey::from_private_key(&X25519, self.private.as_ref())
            .map_err(|_| snow::Error::Dh)?;
        // snow hands over buffers sized for its largest curve: the key is the first 32 bytes.
        let pubkey = pubkey.get(..LEN).ok_or(snow::Error::Dh)?;
        // aws-lc refuses peer keys of small order (an all-zero shared secret).
        agree(
            &key,
            UnparsedPublicKey::new(&X25519, pubkey),
            snow::Error::Dh,
            |shared| {
                let dst = out.get_mut(..shared.len()).ok_or(snow::Error::Dh)?;
                dst.copy_from_slice(shared);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc7748_and_the_dalek_implementation() {
        // RFC 7748 §6.1.
        let alice = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let bob_public =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap();
        let mut dh = AwsLcX25519::default();
        dh.set(&alice);
        assert_eq!(
            hex::encode(dh.pubkey()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let mut shared = [0u8; 32];
        dh.dh(&bob_public, &mut shared).unwrap();
        assert_eq!(
            hex::encode(shared),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        assert_eq!(
            dh.pubkey(),
            crate::x25519_public(&<[u8; 32]>::try_from(alice.as_slice()).unwrap())
        );
    }

    #[test]
    fn small_order_peer_keys_are_refused() {
        let mut dh = AwsLcX25519::default();
        dh.set(&[7u8; 32]);
        let mut shared = [0u8; 32];
        assert!(dh.dh(&[0u8; 32], &mut shared).is_err());
    }
}
