//! `pq_bundle` validation, one defect at a time, and the whole hybrid exchange in memory:
//! bundle → encapsulation → both sessions → signed transcript → ratchet steps until the
//! one-time keys run out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use commucat_ccp::control::PqBundle;
use commucat_keys::pq::{
    BundleError, HybridRole, HybridSession, HybridTranscript, KemKeyPair, KemPublicKey,
    MAX_ONE_TIME_KEYS, OneTimeKeyPairs, OneTimePublicKeys, PqError, SigningKeyPair, encode_bundle,
    validate_bundle,
};

struct Client {
    kem: KemKeyPair,
    signing: SigningKeyPair,
    one_time: OneTimeKeyPairs,
}

fn client(one_time: usize) -> Client {
    Client {
        kem: KemKeyPair::generate().unwrap(),
        signing: SigningKeyPair::generate().unwrap(),
        one_time: OneTimeKeyPairs::generate(one_time).unwrap(),
    }
}

fn bundle_of(client: &Client) -> PqBundle {
    encode_bundle(
        client.kem.public(),
        client.signing.public(),
        client.one_time.public_keys(),
    )
}

#[test]
fn a_good_bundle_round_trips() {
    let c = client(3);
    let bundle = bundle_of(&c);
    assert!(bundle.kem_ciphertext.is_none());
    let valid = validate_bundle(&bundle).unwrap();
    assert_eq!(valid.kem_public.as_bytes(), c.kem.public().as_bytes());
    assert_eq!(
        valid.signature_public.as_bytes(),
        c.signing.public().as_bytes()
    );
    let announced: Vec<&[u8]> = c
        .one_time
        .public_keys()
        .map(KemPublicKey::as_bytes)
        .collect();
    let validated: Vec<&[u8]> = valid
        .one_time_keys
        .iter()
        .map(KemPublicKey::as_bytes)
        .collect();
    assert_eq!(announced, validated);
    // Through the wire JSON too.
    let json = serde_json::to_string(&bundle).unwrap();
    let parsed: PqBundle = serde_json::from_str(&json).unwrap();
    validate_bundle(&parsed).unwrap();
}

#[test]
fn every_bundle_defect_has_its_own_error() {
    let c = client(2);
    let good = bundle_of(&c);
    let check = |edit: &dyn Fn(&mut PqBundle), want: BundleError, code: &str| {
        let mut bundle = good.clone();
        edit(&mut bundle);
        let err = validate_bundle(&bundle).unwrap_err();
        assert_eq!(err, want);
        assert_eq!(err.code(), code);
    };
    let kem_bytes = STANDARD.decode(&good.kem_public).unwrap();
    let mut unreduced = kem_bytes.clone();
    unreduced[0] = 0xff;
    unreduced[1] |= 0x0f;

    check(
        &|b| b.kem_ciphertext = Some("AA==".into()),
        BundleError::UnexpectedCiphertext,
        "unexpected_ciphertext",
    );
    check(
        &|b| b.kem_public = "not base64!".into(),
        BundleError::KemPublicEncoding,
        "kem_public_encoding",
    );
    check(
        &|b| b.kem_public = STANDARD.encode(&kem_bytes[..1000]),
        BundleError::KemPublic(PqError::KemPublicLength { len: 1000 }),
        "kem_public_invalid",
    );
    check(
        &|b| b.kem_public = STANDARD.encode(&unreduced),
        BundleError::KemPublic(PqError::KemPublicNotReduced),
        "kem_public_invalid",
    );
    check(
        &|b| b.signature_public = "@@".into(),
        BundleError::SignaturePublicEncoding,
        "signature_public_encoding",
    );
    check(
        &|b| b.signature_public = STANDARD.encode([0u8; 1951]),
        BundleError::SignaturePublic(PqError::SignaturePublicLength { len: 1951 }),
        "signature_public_invalid",
    );
    check(
        &|b| b.one_time_keys = vec![good.one_time_keys[0].clone(); MAX_ONE_TIME_KEYS + 1],
        BundleError::TooManyOneTimeKeys { count: 33, max: 32 },
        "too_many_one_time_keys",
    );
    check(
        &|b| b.one_time_keys[1] = "%%%".into(),
        BundleError::OneTimeKeyEncoding { index: 1 },
        "one_time_key_encoding",
    );
    check(
        &|b| b.one_time_keys[1] = STANDARD.encode([7u8; 1185]),
        BundleError::OneTimeKey {
            index: 1,
            source: PqError::KemPublicLength { len: 1185 },
        },
        "one_time_key_invalid",
    );
    check(
        &|b| b.one_time_keys[0] = b.kem_public.clone(),
        BundleError::DuplicateKey { index: 0 },
        "duplicate_key",
    );
    check(
        &|b| b.one_time_keys[1] = b.one_time_keys[0].clone(),
        BundleError::DuplicateKey { index: 1 },
        "duplicate_key",
    );
    // No one-time keys at all is a valid bundle (its first ratchet step is exhaustion).
    check_ok_without_one_time_keys(&good);
}

fn check_ok_without_one_time_keys(good: &PqBundle) {
    let mut bundle = good.clone();
    bundle.one_time_keys.clear();
    let valid = validate_bundle(&bundle).unwrap();
    let mut keys = OneTimePublicKeys::new(valid.one_time_keys);
    let mut session =
        HybridSession::derive(&[0; 32], &[0; 32], b"", HybridRole::Encapsulator).unwrap();
    assert_eq!(
        session
            .ratchet_encapsulate(&mut keys, &[0; 32])
            .unwrap_err(),
        PqError::OneTimeKeysExhausted
    );
}

#[test]
fn hybrid_exchange_in_memory() {
    let mut c = client(2);
    // Server: validate, encapsulate to kem_public, derive.
    let valid = validate_bundle(&bundle_of(&c)).unwrap();
    let classical = [0x11; 32];
    let salt = [0x22; 32];
    let (ciphertext, server_secret) = valid.kem_public.encapsulate().unwrap();
    let mut server = HybridSession::derive(
        &classical,
        server_secret.as_bytes(),
        &salt,
        HybridRole::Encapsulator,
    )
    .unwrap();
    // Client: decapsulate, derive, sign the transcript.
    let client_secret = c.kem.decapsulate(&ciphertext).unwrap();
    let mut client_session = HybridSession::derive(
        &classical,
        client_secret.as_bytes(),
        &salt,
        HybridRole::Decapsulator,
    )
    .unwrap();
    let offered = vec!["noise-transport".to_owned(), "pq-hybrid".to_owned()];
    let accepted = vec!["pq-hybrid".to_owned()];
    let transcript = HybridTranscript {
        handshake_hash: &[0x33; 32],
        pq_ciphertext: &ciphertext,
        salt: &salt,
        device_id: "device-1",
        offered_capabilities: &offered,
        accepted_capabilities: &accepted,
    };
    let signature = c.signing.sign_transcript(&transcript).unwrap();
    // Server: verify before the session counts as established.
    valid
        .signature_public
        .verify_transcript(&transcript, &signature)
        .unwrap();
    let dropped = HybridTranscript {
        accepted_capabilities: &[],
        ..transcript
    };
    assert_eq!(
        valid
            .signature_public
            .verify_transcript(&dropped, &signature)
            .unwrap_err(),
        PqError::BadSignature
    );
    assert_eq!(
        server.next_sending_key().unwrap(),
        client_session.next_receiving_key().unwrap()
    );
    assert_eq!(
        client_session.next_sending_key().unwrap(),
        server.next_receiving_key().unwrap()
    );

    // Ratchet until the two one-time keys are spent; old keys stop matching at each step.
    let mut announced = OneTimePublicKeys::new(valid.one_time_keys);
    for step_number in 0..2u8 {
        let old = *server.sending_chain();
        let step_classical = [step_number; 32];
        let step = server
            .ratchet_encapsulate(&mut announced, &step_classical)
            .unwrap();
        client_session
            .ratchet_decapsulate(&mut c.one_time, &step, &step_classical)
            .unwrap();
        assert_ne!(server.sending_chain(), &old);
        assert_eq!(server.sending_chain(), client_session.receiving_chain());
        assert_eq!(
            server.next_sending_key().unwrap(),
            client_session.next_receiving_key().unwrap()
        );
    }
    assert_eq!(
        server
            .ratchet_encapsulate(&mut announced, &[9; 32])
            .unwrap_err(),
        PqError::OneTimeKeysExhausted
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// For any inputs the two roles hold mirrored chains, and a ratchet step with the same
    /// secrets keeps them mirrored.
    #[test]
    fn roles_mirror_for_any_inputs(
        classical in proptest::array::uniform32(proptest::num::u8::ANY),
        kem in proptest::array::uniform32(proptest::num::u8::ANY),
        salt in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
        step in proptest::array::uniform32(proptest::num::u8::ANY),
    ) {
        let mut a = HybridSession::derive(&classical, &kem, &salt, HybridRole::Encapsulator).unwrap();
        let mut b = HybridSession::derive(&classical, &kem, &salt, HybridRole::Decapsulator).unwrap();
        proptest::prop_assert_eq!(a.sending_chain(), b.receiving_chain());
        proptest::prop_assert_eq!(a.receiving_chain(), b.sending_chain());
        a.ratchet(&step, &kem).unwrap();
        b.ratchet(&step, &kem).unwrap();
        proptest::prop_assert_eq!(a.next_sending_key().unwrap(), b.next_receiving_key().unwrap());
        proptest::prop_assert_eq!(b.next_sending_key().unwrap(), a.next_receiving_key().unwrap());
    }

    /// Different transcripts never encode to the same bytes.
    #[test]
    fn transcript_encoding_is_injective(
        parts in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..4), 10),
    ) {
        let text = |v: &Vec<u8>| v.iter().map(|b| char::from(b'a' + b)).collect::<String>();
        let caps = |range: std::ops::Range<usize>| parts[range].iter().map(text).collect::<Vec<_>>();
        let (offered_a, accepted_a) = (caps(4..6), caps(6..7));
        let (offered_b, accepted_b) = (caps(7..8), caps(8..10));
        let device_a = text(&parts[3]);
        let a = HybridTranscript {
            handshake_hash: &parts[0],
            pq_ciphertext: &parts[1],
            salt: &parts[2],
            device_id: &device_a,
            offered_capabilities: &offered_a,
            accepted_capabilities: &accepted_a,
        };
        let b = HybridTranscript {
            handshake_hash: &parts[1],
            pq_ciphertext: &parts[0],
            salt: &parts[3],
            device_id: &device_a,
            offered_capabilities: &offered_b,
            accepted_capabilities: &accepted_b,
        };
        proptest::prop_assert_eq!(a == b, a.encode().unwrap() == b.encode().unwrap());
    }
}
