//! Handshake Schnorr proof of knowledge of the device Ed25519 key (wire-compat §4).
//!
//! The client proves it knows the discrete log `x` of `device_public = x·B` on Ed25519, bound to
//! a context that covers the server domain, the device id, `device_public` and `client_static`:
//!
//! ```text
//! ctx = D || u32le(len(domain)) || domain || u32le(len(device_id)) || device_id
//!         || device_public(32) || client_static(32)
//! c   = wide_reduce(BLAKE3_XOF_64(D || u64le(len(ctx)) || ctx || device_public || commitment))
//! R   = r·B,  s = r + c·x mod ℓ,  proof = (compress(R), s)
//! ```
//!
//! with `D = "commucat:zkp:handshake:v1"`. Byte-compatible with `commucat_crypto::zkp` 1.0.41.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::SigningKey;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::encoding::{encode_hex, serde_hex};

/// Domain-separation tag, prefixed to the context and to the challenge hash input.
pub const HANDSHAKE_DOMAIN_TAG: &[u8] = b"commucat:zkp:handshake:v1";

/// Errors from building a context, proving or verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ZkpError {
    /// `domain` or `device_id` is longer than `u32::MAX` bytes and cannot be length-prefixed.
    #[error("context field too long for a u32 length prefix")]
    FieldTooLong,
    /// The signing key's public key is not the `device_public` the context was built for.
    #[error("signing key does not match the device public key in the context")]
    KeyMismatch,
    /// The `device_public` given to [`verify`] is not the one the context was built for.
    #[error("device public key does not match the context")]
    ContextMismatch,
    /// `device_public` is not a valid compressed Edwards point.
    #[error("device public key is not a valid Ed25519 point")]
    InvalidPublicKey,
    /// The proof commitment is not a valid compressed Edwards point.
    #[error("proof commitment is not a valid Ed25519 point")]
    InvalidCommitment,
    /// The proof response is not a canonical scalar (it is not below the group order ℓ).
    #[error("proof response is not a canonical scalar")]
    NonCanonicalResponse,
    /// The verification equation `s·B == R + c·A` does not hold.
    #[error("handshake proof does not verify")]
    InvalidProof,
}

/// The byte string a handshake proof is bound to (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeContext {
    bytes: Vec<u8>,
    device_public: [u8; 32],
}

impl HandshakeContext {
    /// The encoded context bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The `device_public` the context was built for.
    #[must_use]
    pub fn device_public(&self) -> &[u8; 32] {
        &self.device_public
    }
}

/// Builds the handshake context.
///
/// `domain` must be byte-identical on client (profile domain) and server (configured domain).
///
/// # Errors
/// [`ZkpError::FieldTooLong`] if `domain` or `device_id` exceeds `u32::MAX` bytes.
pub fn derive_handshake_context(
    domain: &str,
    device_id: &str,
    device_public: &[u8; 32],
    client_static: &[u8; 32],
) -> Result<HandshakeContext, ZkpError> {
    let domain_len = u32::try_from(domain.len()).map_err(|_| ZkpError::FieldTooLong)?;
    let device_id_len = u32::try_from(device_id.len()).map_err(|_| ZkpError::FieldTooLong)?;
    let mut bytes = Vec::with_capacity(
        HANDSHAKE_DOMAIN_TAG.len() + 4 + domain.len() + 4 + device_id.len() + 64,
    );
    bytes.extend_from_slice(HANDSHAKE_DOMAIN_TAG);
    bytes.extend_from_slice(&domain_len.to_le_bytes());
    bytes.extend_from_slice(domain.as_bytes());
    bytes.extend_from_slice(&device_id_len.to_le_bytes());
    bytes.extend_from_slice(device_id.as_bytes());
    bytes.extend_from_slice(device_public);
    bytes.extend_from_slice(client_static);
    Ok(HandshakeContext {
        bytes,
        device_public: *device_public,
    })
}

/// A Schnorr proof: compressed commitment point `R` and response scalar `s` (little-endian).
///
/// JSON form: `{"commitment":"<64 hex>","response":"<64 hex>"}`; decoding requires exactly 64
/// hex characters per field (either case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeProof {
    /// `compress(r·B)`.
    #[serde(with = "serde_hex")]
    pub commitment: [u8; 32],
    /// `s = r + c·x mod ℓ`, canonical little-endian.
    #[serde(with = "serde_hex")]
    pub response: [u8; 32],
}

impl std::fmt::Display for HandshakeProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HandshakeProof(commitment={}, response={})",
            encode_hex(&self.commitment),
            encode_hex(&self.response)
        )
    }
}

/// Proves knowledge of `signing`'s secret scalar, bound to `ctx`.
///
/// # Errors
/// [`ZkpError::KeyMismatch`] if `signing`'s public key is not the context's `device_public`
/// (such a proof could never verify).
pub fn prove<R: RngCore + CryptoRng + ?Sized>(
    signing: &SigningKey,
    ctx: &HandshakeContext,
    rng: &mut R,
) -> Result<HandshakeProof, ZkpError> {
    let device_public = signing.verifying_key().to_bytes();
    if device_public != ctx.device_public {
        return Err(ZkpError::KeyMismatch);
    }
    // x: SHA-512(seed)[0..32], clamped, reduced mod ℓ (the Ed25519 signing scalar).
    let secret = Zeroizing::new(signing.to_scalar());
    let mut randomness = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(randomness.as_mut_slice());
    let nonce = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&randomness));
    let commitment = EdwardsPoint::mul_base(&nonce).compress().to_bytes();
    let challenge = challenge(&ctx.bytes, &device_public, &commitment);
    let response = (*nonce + challenge * *secret).to_bytes();
    Ok(HandshakeProof {
        commitment,
        response,
    })
}

/// Verifies a handshake proof for `device_public` bound to `ctx`.
///
/// Exactly the reference check: decompress `A` and `R`, require a canonical `s`, accept iff
/// `s·B == R + c·A` (no cofactor multiplication, no small-order check).
///
/// # Errors
/// One [`ZkpError`] variant per failed step; [`ZkpError::ContextMismatch`] if `ctx` was built
/// for a different `device_public`.
pub fn verify(
    ctx: &HandshakeContext,
    device_public: &[u8; 32],
    proof: &HandshakeProof,
) -> Result<(), ZkpError> {
    if *device_public != ctx.device_public {
        return Err(ZkpError::ContextMismatch);
    }
    let public_point = CompressedEdwardsY(*device_public)
        .decompress()
        .ok_or(ZkpError::InvalidPublicKey)?;
    let commitment_point = CompressedEdwardsY(proof.commitment)
        .decompress()
        .ok_or(ZkpError::InvalidCommitment)?;
    let response: Scalar = Option::from(Scalar::from_canonical_bytes(proof.response))
        .ok_or(ZkpError::NonCanonicalResponse)?;
    let challenge = challenge(&ctx.bytes, device_public, &proof.commitment);
    // s·B == R + c·A  ⇔  s·B − c·A == R. One variable-time double-base multiplication: every
    // input here is public, so constant time buys nothing and costs a second multiplication.
    let candidate =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&-challenge, &public_point, &response);
    if candidate == commitment_point {
        Ok(())
    } else {
        Err(ZkpError::InvalidProof)
    }
}

fn challenge(context: &[u8], device_public: &[u8; 32], commitment: &[u8; 32]) -> Scalar {
    // usize is at most 64 bits on every supported target.
    let context_len = u64::try_from(context.len()).unwrap_or(u64::MAX);
    let mut hasher = blake3::Hasher::new();
    hasher.update(HANDSHAKE_DOMAIN_TAG);
    hasher.update(&context_len.to_le_bytes());
    hasher.update(context);
    hasher.update(device_public);
    hasher.update(commitment);
    let mut wide = [0u8; 64];
    hasher.finalize_xof().fill(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceKeyPair;
    use rand_core::OsRng;

    /// ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    struct Fixture {
        keys: DeviceKeyPair,
        ctx: HandshakeContext,
        proof: HandshakeProof,
    }

    fn fixture() -> Fixture {
        let keys = DeviceKeyPair::from_seed(&[42u8; 32]);
        let ctx = derive_handshake_context(
            "example.org",
            "dev-1",
            &keys.public_key(),
            &keys.x25519_static(),
        )
        .unwrap();
        let proof = prove(keys.signing_key(), &ctx, &mut OsRng).unwrap();
        Fixture { keys, ctx, proof }
    }

    #[test]
    fn context_layout_example_is_113_bytes() {
        let public = [0xaa; 32];
        let client_static = [0xbb; 32];
        let ctx =
            derive_handshake_context("example.org", "dev-1", &public, &client_static).unwrap();
        let bytes = ctx.as_bytes();
        assert_eq!(bytes.len(), 113);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"commucat:zkp:handshake:v1");
        expected.extend_from_slice(&[11, 0, 0, 0]);
        expected.extend_from_slice(b"example.org");
        expected.extend_from_slice(&[5, 0, 0, 0]);
        expected.extend_from_slice(b"dev-1");
        expected.extend_from_slice(&public);
        expected.extend_from_slice(&client_static);
        assert_eq!(bytes, expected.as_slice());
        assert_eq!(ctx.device_public(), &public);
    }

    #[test]
    fn proof_round_trip() {
        let f = fixture();
        assert_eq!(verify(&f.ctx, &f.keys.public_key(), &f.proof), Ok(()));
    }

    #[test]
    fn proofs_are_randomised() {
        let f = fixture();
        let again = prove(f.keys.signing_key(), &f.ctx, &mut OsRng).unwrap();
        assert_ne!(f.proof, again);
        assert_eq!(verify(&f.ctx, &f.keys.public_key(), &again), Ok(()));
    }

    fn ctx_with(
        domain: &str,
        device_id: &str,
        public: &[u8; 32],
        st: &[u8; 32],
    ) -> HandshakeContext {
        derive_handshake_context(domain, device_id, public, st).unwrap()
    }

    #[test]
    fn wrong_domain_fails() {
        let f = fixture();
        let public = f.keys.public_key();
        let ctx = ctx_with("example.com", "dev-1", &public, &f.keys.x25519_static());
        assert_eq!(verify(&ctx, &public, &f.proof), Err(ZkpError::InvalidProof));
    }

    #[test]
    fn wrong_device_id_fails() {
        let f = fixture();
        let public = f.keys.public_key();
        let ctx = ctx_with("example.org", "dev-2", &public, &f.keys.x25519_static());
        assert_eq!(verify(&ctx, &public, &f.proof), Err(ZkpError::InvalidProof));
    }

    #[test]
    fn length_prefix_prevents_field_shifting() {
        // "example.orgd" + "ev-1" concatenates to the same string as "example.org" + "dev-1".
        let f = fixture();
        let public = f.keys.public_key();
        let ctx = ctx_with("example.orgd", "ev-1", &public, &f.keys.x25519_static());
        assert_ne!(ctx.as_bytes(), f.ctx.as_bytes());
        assert_eq!(verify(&ctx, &public, &f.proof), Err(ZkpError::InvalidProof));
    }

    #[test]
    fn wrong_client_static_fails() {
        let f = fixture();
        let public = f.keys.public_key();
        let mut other_static = f.keys.x25519_static();
        other_static[0] ^= 1;
        let ctx = ctx_with("example.org", "dev-1", &public, &other_static);
        assert_eq!(verify(&ctx, &public, &f.proof), Err(ZkpError::InvalidProof));
    }

    #[test]
    fn other_device_key_fails() {
        let f = fixture();
        let other = DeviceKeyPair::from_seed(&[43u8; 32]);
        let ctx = ctx_with(
            "example.org",
            "dev-1",
            &other.public_key(),
            &f.keys.x25519_static(),
        );
        assert_eq!(
            verify(&ctx, &other.public_key(), &f.proof),
            Err(ZkpError::InvalidProof)
        );
        // The context pins the key: verifying against a different key is refused outright.
        assert_eq!(
            verify(&f.ctx, &other.public_key(), &f.proof),
            Err(ZkpError::ContextMismatch)
        );
    }

    #[test]
    fn tampered_response_fails() {
        let f = fixture();
        let mut proof = f.proof;
        proof.response[0] ^= 1;
        assert_eq!(
            verify(&f.ctx, &f.keys.public_key(), &proof),
            Err(ZkpError::InvalidProof)
        );
    }

    #[test]
    fn tampered_commitment_fails() {
        let f = fixture();
        let mut proof = f.proof;
        // Replace R by a different valid point.
        proof.commitment = EdwardsPoint::mul_base(&Scalar::from(5u8))
            .compress()
            .to_bytes();
        assert_eq!(
            verify(&f.ctx, &f.keys.public_key(), &proof),
            Err(ZkpError::InvalidProof)
        );
    }

    #[test]
    fn non_canonical_response_rejected() {
        let f = fixture();
        // s + ℓ is the same residue mod ℓ (would satisfy the equation if reduced) but is not
        // canonical; s < ℓ < 2^253 so the sum fits in 32 bytes.
        let mut bumped = [0u8; 32];
        let mut carry = 0u16;
        for (out, (a, b)) in bumped
            .iter_mut()
            .zip(f.proof.response.iter().zip(ELL.iter()))
        {
            let sum = u16::from(*a) + u16::from(*b) + carry;
            *out = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let proof = HandshakeProof {
            commitment: f.proof.commitment,
            response: bumped,
        };
        assert_eq!(
            verify(&f.ctx, &f.keys.public_key(), &proof),
            Err(ZkpError::NonCanonicalResponse)
        );
        // All-ones is far above ℓ.
        let proof = HandshakeProof {
            commitment: f.proof.commitment,
            response: [0xff; 32],
        };
        assert_eq!(
            verify(&f.ctx, &f.keys.public_key(), &proof),
            Err(ZkpError::NonCanonicalResponse)
        );
    }

    fn invalid_point() -> [u8; 32] {
        (0u8..=255)
            .map(|b| {
                let mut bytes = [b; 32];
                bytes[31] &= 0x7f;
                bytes
            })
            .find(|bytes| CompressedEdwardsY(*bytes).decompress().is_none())
            .unwrap()
    }

    #[test]
    fn undecodable_points_rejected() {
        let f = fixture();
        let bad = invalid_point();
        let proof = HandshakeProof {
            commitment: bad,
            response: f.proof.response,
        };
        assert_eq!(
            verify(&f.ctx, &f.keys.public_key(), &proof),
            Err(ZkpError::InvalidCommitment)
        );
        let ctx = ctx_with("example.org", "dev-1", &bad, &f.keys.x25519_static());
        assert_eq!(
            verify(&ctx, &bad, &f.proof),
            Err(ZkpError::InvalidPublicKey)
        );
    }

    #[test]
    fn prove_refuses_foreign_context() {
        let f = fixture();
        let other = DeviceKeyPair::from_seed(&[1u8; 32]);
        assert_eq!(
            prove(other.signing_key(), &f.ctx, &mut OsRng),
            Err(ZkpError::KeyMismatch)
        );
    }

    #[test]
    fn json_form() {
        let proof = HandshakeProof {
            commitment: [0x01; 32],
            response: [0xab; 32],
        };
        let json = serde_json::to_string(&proof).unwrap();
        assert_eq!(
            json,
            format!(
                "{{\"commitment\":\"{}\",\"response\":\"{}\"}}",
                "01".repeat(32),
                "ab".repeat(32)
            )
        );
        let back: HandshakeProof = serde_json::from_str(&json).unwrap();
        assert_eq!(back, proof);
        let upper = json.replace("ab", "AB");
        assert_eq!(
            serde_json::from_str::<HandshakeProof>(&upper).unwrap(),
            proof
        );
        let short = format!(
            "{{\"commitment\":\"{}\",\"response\":\"{}\"}}",
            "01".repeat(31),
            "ab".repeat(32)
        );
        assert!(serde_json::from_str::<HandshakeProof>(&short).is_err());
        assert!(serde_json::from_str::<HandshakeProof>("{\"commitment\":\"00\"}").is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            #[test]
            fn prove_verify_any_inputs(
                seed in any::<[u8; 32]>(),
                domain in ".{0,40}",
                device_id in ".{0,40}",
                client_static in any::<[u8; 32]>(),
                flip in any::<u8>(),
                flip_at in 0usize..32,
            ) {
                let keys = DeviceKeyPair::from_seed(&seed);
                let public = keys.public_key();
                let ctx = derive_handshake_context(&domain, &device_id, &public, &client_static).unwrap();
                let proof = prove(keys.signing_key(), &ctx, &mut OsRng).unwrap();
                prop_assert_eq!(verify(&ctx, &public, &proof), Ok(()));

                let json = serde_json::to_string(&proof).unwrap();
                let back: HandshakeProof = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, proof);

                prop_assume!(flip != 0);
                let mut tampered = proof;
                tampered.response[flip_at] ^= flip;
                prop_assert!(verify(&ctx, &public, &tampered).is_err());
            }
        }
    }
}
