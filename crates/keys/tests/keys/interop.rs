//! Interoperability with the deployed client's crate `commucat-crypto` 1.0.41 (the oracle).
//!
//! The oracle's `DeviceKeyPair { public, private }` stores the 32-byte device secret in
//! `private`; the client uses those bytes as the Ed25519 seed and as its Noise X25519 private
//! key. Our `DeviceKeyPair::from_seed(private)` must agree with it byte for byte.

use std::error::Error;

use commucat_crypto as oracle;
use commucat_keys::{
    DeviceCertificate, DeviceCertificateData, DeviceKeyPair, HandshakeProof,
    derive_handshake_context, encode_hex, prove, verify,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::{OsRng, StdRng};

fn oracle_keys(ours: &DeviceKeyPair) -> oracle::DeviceKeyPair {
    oracle::DeviceKeyPair {
        public: ours.public_key(),
        private: *ours.seed(),
    }
}

fn oracle_proof(proof: &HandshakeProof) -> oracle::zkp::KnowledgeProof {
    oracle::zkp::KnowledgeProof {
        commitment: proof.commitment,
        response: proof.response,
    }
}

fn our_proof(proof: &oracle::zkp::KnowledgeProof) -> HandshakeProof {
    HandshakeProof {
        commitment: proof.commitment,
        response: proof.response,
    }
}

fn oracle_data(d: &DeviceCertificateData) -> oracle::DeviceCertificateData {
    oracle::DeviceCertificateData::new(
        d.serial,
        d.user_id.clone(),
        d.device_id.clone(),
        d.public_key,
        d.issuer,
        d.issued_at,
        d.expires_at,
    )
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

#[test]
fn seed_material_derivation_matches_oracle_from_seed() {
    let material = b"federation-seed-federation-seed-federation-seed";
    let theirs = oracle::DeviceKeyPair::from_seed(material).unwrap();
    let ours = DeviceKeyPair::from_seed_material(material).unwrap();
    assert_eq!(*ours.seed(), theirs.private);
    assert_eq!(ours.public_key(), theirs.public);
    assert!(oracle::DeviceKeyPair::from_seed(&[0u8; 31]).is_err());
    assert!(DeviceKeyPair::from_seed_material(&[0u8; 31]).is_err());
}

#[test]
fn signatures_match_oracle() {
    let ours = DeviceKeyPair::from_seed(&[0x5a; 32]);
    let theirs = oracle_keys(&ours);
    let message = b"commucat";
    assert_eq!(ours.sign(message), theirs.sign(message).unwrap());
    let verifier = oracle::EventVerifier {
        public: ours.public_key(),
    };
    verifier.verify(message, &ours.sign(message)).unwrap();
}

/// Runs a Noise XK handshake where the *oracle* is the initiator with the device secret as
/// its local private key (exactly what the client does) and a plain snow responder learns the
/// initiator's static key from message 3. That key must be our `x25519_static()`.
fn client_static_seen_by_server(device: &DeviceKeyPair) -> Result<Vec<u8>, Box<dyn Error>> {
    let server_private = [0x33u8; 32];
    let server_public = commucat_keys::x25519_public(&server_private);
    let config = oracle::NoiseConfig {
        pattern: oracle::HandshakePattern::Xk,
        prologue: b"commucat".to_vec(),
        local_private: *device.seed(),
        local_static_public: None,
        remote_static_public: Some(server_public),
    };
    let mut initiator = oracle::build_handshake(&config, true)?;
    let params: snow::params::NoiseParams = "Noise_XK_25519_ChaChaPoly_BLAKE2s".parse()?;
    let mut responder = snow::Builder::new(params)
        .prologue(b"commucat")?
        .local_private_key(&server_private)?
        .build_responder()?;
    let mut buf = vec![0u8; 1024];
    let msg1 = initiator.write_message(&[])?;
    responder.read_message(&msg1, &mut buf)?;
    let len = responder.write_message(b"{}", &mut buf)?;
    let msg2 = buf.get(..len).ok_or("msg2 length")?.to_vec();
    initiator.read_message(&msg2)?;
    let msg3 = initiator.write_message(&[])?;
    if msg1.len() != 48 || msg3.len() != 64 {
        return Err(format!("XK sizes {} / {}", msg1.len(), msg3.len()).into());
    }
    responder.read_message(&msg3, &mut buf)?;
    if !responder.is_handshake_finished() {
        return Err("handshake not finished".into());
    }
    Ok(responder
        .get_remote_static()
        .ok_or("no remote static")?
        .to_vec())
}

#[test]
fn x25519_static_equals_oracle_client_noise_static() {
    for seed in [[0u8; 32], [0xff; 32], [0x42; 32]] {
        let device = DeviceKeyPair::from_seed(&seed);
        assert_eq!(
            client_static_seen_by_server(&device).unwrap(),
            device.x25519_static().to_vec()
        );
    }
    let device = DeviceKeyPair::generate();
    assert_eq!(
        client_static_seen_by_server(&device).unwrap(),
        device.x25519_static().to_vec()
    );
}

// ---------------------------------------------------------------------------------------------
// Handshake proof
// ---------------------------------------------------------------------------------------------

#[test]
fn context_bytes_match_oracle() {
    let device = DeviceKeyPair::from_seed(&[1u8; 32]);
    let ours = derive_handshake_context(
        "example.org",
        "dev-1",
        &device.public_key(),
        &device.x25519_static(),
    )
    .unwrap();
    let theirs = oracle::zkp::derive_handshake_context(
        "example.org",
        "dev-1",
        &device.public_key(),
        &device.x25519_static(),
    );
    assert_eq!(ours.as_bytes(), theirs.as_slice());
    assert_eq!(theirs.len(), 113);
}

#[test]
fn oracle_proof_verifies_with_ours_and_vice_versa() {
    let device = DeviceKeyPair::generate();
    let public = device.public_key();
    let client_static = device.x25519_static();
    let ctx =
        derive_handshake_context("chat.example", "device-1", &public, &client_static).unwrap();
    let raw_ctx =
        oracle::zkp::derive_handshake_context("chat.example", "device-1", &public, &client_static);

    let theirs = oracle::zkp::prove_handshake(&oracle_keys(&device), &raw_ctx).unwrap();
    assert_eq!(verify(&ctx, &public, &our_proof(&theirs)), Ok(()));

    let ours = prove(device.signing_key(), &ctx, &mut OsRng).unwrap();
    oracle::zkp::verify_handshake(&public, &raw_ctx, &oracle_proof(&ours)).unwrap();

    // Tampering is rejected by both.
    let mut bad = ours;
    bad.response[3] ^= 0x10;
    assert!(verify(&ctx, &public, &bad).is_err());
    assert!(oracle::zkp::verify_handshake(&public, &raw_ctx, &oracle_proof(&bad)).is_err());
}

#[test]
fn same_randomness_gives_identical_proof_bytes() {
    let device = DeviceKeyPair::from_seed(&[9u8; 32]);
    let public = device.public_key();
    let st = device.x25519_static();
    let ctx = derive_handshake_context("example.org", "dev-1", &public, &st).unwrap();
    let raw_ctx = oracle::zkp::derive_handshake_context("example.org", "dev-1", &public, &st);
    let ours = prove(device.signing_key(), &ctx, &mut StdRng::seed_from_u64(7)).unwrap();
    let theirs = oracle::zkp::prove_with_rng(
        &oracle_keys(&device),
        &raw_ctx,
        &mut StdRng::seed_from_u64(7),
    )
    .unwrap();
    assert_eq!(ours, our_proof(&theirs));
    // And the JSON forms are identical.
    assert_eq!(
        serde_json::to_string(&ours).unwrap(),
        serde_json::to_string(&theirs).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

const NOW: i64 = 1_700_000_000;

fn sample_data(ca: &DeviceKeyPair) -> DeviceCertificateData {
    DeviceCertificateData {
        serial: u64::MAX,
        user_id: "user-1".into(),
        device_id: "device-1".into(),
        public_key: DeviceKeyPair::from_seed(&[3u8; 32]).public_key(),
        issuer: ca.public_key(),
        issued_at: NOW,
        expires_at: NOW + 30 * 86_400,
    }
}

#[test]
fn our_certificate_verifies_with_oracle() {
    let ca = DeviceKeyPair::from_seed(&[0xca; 32]);
    let cert = DeviceCertificate::issue(ca.signing_key(), sample_data(&ca)).unwrap();
    let json = serde_json::to_string(&cert).unwrap();
    let theirs: oracle::DeviceCertificate = serde_json::from_str(&json).unwrap();
    theirs.verify(&ca.public_key()).unwrap();
    assert_eq!(
        theirs.data().canonical_message(),
        cert.data.canonical_message()
    );
    assert_eq!(serde_json::to_string(&theirs).unwrap(), json);
}

#[test]
fn oracle_certificate_verifies_with_ours() {
    let ca = DeviceKeyPair::from_seed(&[0xcb; 32]);
    let data = sample_data(&ca);
    let signer = oracle::EventSigner::new(&oracle_keys(&ca));
    let theirs = signer.sign_certificate(&oracle_data(&data));
    let json = serde_json::to_string(&theirs).unwrap();
    let ours: DeviceCertificate = serde_json::from_str(&json).unwrap();
    assert_eq!(ours.data, data);
    assert_eq!(ours.verify(&ca.public_key(), NOW, 300), Ok(()));
    assert_eq!(serde_json::to_string(&ours).unwrap(), json);
    assert_eq!(ours.signature, theirs.signature);
}

#[test]
fn federation_seed_ca_interop() {
    // The reference server's CA key: from_seed(federation seed bytes).
    let federation_seed = [0x77u8; 48];
    let theirs = oracle::DeviceKeyPair::from_seed(&federation_seed).unwrap();
    let ours = DeviceKeyPair::from_seed_material(&federation_seed).unwrap();
    let data = sample_data(&ours);
    let cert = oracle::EventSigner::new(&theirs).sign_certificate(&oracle_data(&data));
    let mine = DeviceCertificate::issue(ours.signing_key(), data).unwrap();
    assert_eq!(mine.signature, cert.signature);
}

#[test]
fn tampering_rejected_by_both() {
    let ca = DeviceKeyPair::from_seed(&[0xcc; 32]);
    let mut cert = DeviceCertificate::issue(ca.signing_key(), sample_data(&ca)).unwrap();
    cert.data.user_id = "user-2".into();
    let json = serde_json::to_string(&cert).unwrap();
    let theirs: oracle::DeviceCertificate = serde_json::from_str(&json).unwrap();
    assert!(theirs.verify(&ca.public_key()).is_err());
    assert!(cert.verify(&ca.public_key(), NOW, 300).is_err());
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\/\\x00-\\x1f\\x7f a-zé😀\u{2028}]{0,24}",
    ]
}

fn any_hexish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{64}",
        "[0-9a-fA-F]{62,66}",
        "[0-9a-gA-G x]{64}",
        ".{0,70}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn canonical_bytes_and_json_equal_oracle(
        serial in any::<u64>(),
        user_id in tricky_string(),
        device_id in tricky_string(),
        public_key in any::<[u8; 32]>(),
        issued_at in any::<i64>(),
        expires_at in any::<i64>(),
    ) {
        let ca = DeviceKeyPair::from_seed(&[0xcd; 32]);
        let data = DeviceCertificateData {
            serial,
            user_id,
            device_id,
            public_key,
            issuer: ca.public_key(),
            issued_at,
            expires_at,
        };
        let theirs_data = oracle_data(&data);
        prop_assert_eq!(data.canonical_message(), theirs_data.canonical_message());

        // Ours -> JSON -> oracle: same JSON text, oracle verifies our signature.
        let cert = DeviceCertificate::issue(ca.signing_key(), data.clone()).unwrap();
        let json = serde_json::to_string(&cert).unwrap();
        let theirs: oracle::DeviceCertificate = serde_json::from_str(&json).unwrap();
        prop_assert!(theirs.verify(&ca.public_key()).is_ok());
        prop_assert_eq!(serde_json::to_string(&theirs).unwrap(), json.clone());

        // Oracle -> JSON -> ours: identical data and signature, our signature check passes.
        let signed = oracle::EventSigner::new(&oracle_keys(&ca)).sign_certificate(&theirs_data);
        let their_json = serde_json::to_string(&signed).unwrap();
        prop_assert_eq!(&their_json, &json);
        let back: DeviceCertificate = serde_json::from_str(&their_json).unwrap();
        prop_assert_eq!(&back, &cert);
        prop_assert_eq!(back.verify_signature(&ca.public_key()), Ok(()));
    }

    #[test]
    fn proof_json_decoding_agrees_with_oracle(commitment in any_hexish(), response in any_hexish()) {
        let json = serde_json::json!({"commitment": commitment, "response": response}).to_string();
        let ours = serde_json::from_str::<HandshakeProof>(&json);
        let theirs = serde_json::from_str::<oracle::zkp::KnowledgeProof>(&json);
        prop_assert_eq!(ours.is_ok(), theirs.is_ok());
        if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
            prop_assert_eq!(ours, our_proof(&theirs));
            prop_assert_eq!(encode_hex(&ours.commitment), commitment.to_lowercase());
        }
    }

    #[test]
    fn proofs_interoperate_for_any_context(
        seed in any::<[u8; 32]>(),
        domain in ".{0,32}",
        device_id in ".{0,32}",
        rng_seed in any::<u64>(),
    ) {
        let device = DeviceKeyPair::from_seed(&seed);
        let public = device.public_key();
        let st = device.x25519_static();
        let ctx = derive_handshake_context(&domain, &device_id, &public, &st).unwrap();
        let raw_ctx = oracle::zkp::derive_handshake_context(&domain, &device_id, &public, &st);
        prop_assert_eq!(ctx.as_bytes(), raw_ctx.as_slice());
        let ours = prove(device.signing_key(), &ctx, &mut StdRng::seed_from_u64(rng_seed)).unwrap();
        let theirs = oracle::zkp::prove_with_rng(
            &oracle_keys(&device),
            &raw_ctx,
            &mut StdRng::seed_from_u64(rng_seed),
        )
        .unwrap();
        prop_assert_eq!(ours, our_proof(&theirs));
        prop_assert!(oracle::zkp::verify_handshake(&public, &raw_ctx, &oracle_proof(&ours)).is_ok());
        prop_assert_eq!(verify(&ctx, &public, &our_proof(&theirs)), Ok(()));
    }
}
