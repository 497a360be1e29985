//! The hybrid derivations against vectors computed by `commucat-crypto` 1.0.41 itself (its `pq`
//! feature, in the throwaway oracle workspace `tests/fixtures/pq-oracle/`; see
//! `tests/fixtures/README.md`). Equal bytes here mean equal sessions with that crate.

use commucat_keys::pq::{
    HybridRole, HybridSession, KemKeyPair, KemPublicKey, PqError, SignaturePublicKey,
    SigningKeyPair,
};
use serde_json::Value;

const FIXTURE: &str = include_str!("../fixtures/pq-derivation.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

fn bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap()).unwrap()
}

fn array32(value: &Value) -> [u8; 32] {
    bytes(value).try_into().unwrap()
}

fn role(name: &str) -> HybridRole {
    match name {
        "encapsulator" => HybridRole::Encapsulator,
        "decapsulator" => HybridRole::Decapsulator,
        other => panic!("unknown role {other}"),
    }
}

fn hex_of(key: &[u8]) -> String {
    hex::encode(key)
}

/// Root, chains and the first three message keys of each chain.
fn assert_chains(session: &mut HybridSession, want: &Value, what: &str) {
    assert_eq!(hex_of(session.root_key()), want["root_key"], "{what}: root");
    for (i, key) in want["sending_keys"].as_array().unwrap().iter().enumerate() {
        let ours = session.next_sending_key().unwrap();
        assert_eq!(hex_of(ours.as_bytes()), *key, "{what}: sending key {i}");
    }
    for (i, key) in want["receiving_keys"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let ours = session.next_receiving_key().unwrap();
        assert_eq!(hex_of(ours.as_bytes()), *key, "{what}: receiving key {i}");
    }
}

#[test]
fn session_derivation_matches_commucat_crypto() {
    let fixture = fixture();
    let cases = fixture["sessions"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for (n, case) in cases.iter().enumerate() {
        let classical = array32(&case["classical"]);
        let kem = bytes(&case["kem_shared"]);
        // 1.0.41 without a salt and with an empty one: both are our empty salt.
        let salt = case["salt"]
            .as_str()
            .map_or_else(Vec::new, |_| bytes(&case["salt"]));
        for (name, want) in case["roles"].as_object().unwrap() {
            let mut session = HybridSession::derive(&classical, &kem, &salt, role(name)).unwrap();
            let what = format!("case {n} {name}");
            assert_eq!(hex_of(session.root_key()), want["root_key"], "{what}");
            assert_eq!(
                hex_of(session.sending_chain()),
                want["sending_chain"],
                "{what}"
            );
            assert_eq!(
                hex_of(session.receiving_chain()),
                want["receiving_chain"],
                "{what}"
            );
            assert_chains(&mut session, &want["chains"], &what);
        }
    }
}

#[test]
fn ratchet_steps_match_commucat_crypto() {
    let fixture = fixture();
    let case = &fixture["ratchet"];
    let classical = array32(&case["classical"]);
    let kem = bytes(&case["kem_shared"]);
    let salt = bytes(&case["salt"]);
    let steps = case["steps"].as_array().unwrap();
    for (name, after) in case["after_step"].as_object().unwrap() {
        let mut session = HybridSession::derive(&classical, &kem, &salt, role(name)).unwrap();
        session.next_sending_key().unwrap();
        session.next_receiving_key().unwrap();
        for (i, (step, want)) in steps.iter().zip(after.as_array().unwrap()).enumerate() {
            session
                .ratchet(&array32(&step["classical"]), &bytes(&step["kem_shared"]))
                .unwrap();
            assert_eq!(session.epoch(), u64::try_from(i).unwrap() + 1);
            assert_chains(&mut session, want, &format!("{name} after step {i}"));
        }
    }
}

#[test]
fn ml_kem_exchange_of_commucat_crypto_decapsulates_here() {
    let fixture = fixture();
    for case in fixture["kem_exchanges"].as_array().unwrap() {
        // 1.0.41's RustCrypto ML-KEM key, imported into aws-lc.
        let pair = KemKeyPair::from_secret_bytes(&bytes(&case["dk"])).unwrap();
        assert_eq!(hex_of(pair.public().as_bytes()), case["ek"]);
        let shared = pair.decapsulate(&bytes(&case["ciphertext"])).unwrap();
        assert_eq!(hex_of(shared.as_bytes()), case["kem_shared"]);
        let classical = array32(&case["classical"]);
        let salt = bytes(&case["salt"]);
        for (name, hybrid_role) in [
            ("encapsulator", HybridRole::Encapsulator),
            ("decapsulator", HybridRole::Decapsulator),
        ] {
            let session =
                HybridSession::derive(&classical, shared.as_bytes(), &salt, hybrid_role).unwrap();
            let want = &case[name];
            assert_eq!(hex_of(session.root_key()), want["root_key"]);
            assert_eq!(hex_of(session.sending_chain()), want["sending_chain"]);
            assert_eq!(hex_of(session.receiving_chain()), want["receiving_chain"]);
        }
        // And the other way: aws-lc encapsulates to 1.0.41's public key, which the imported
        // secret opens.
        let public = KemPublicKey::from_bytes(&bytes(&case["ek"])).unwrap();
        let (ciphertext, sent) = public.encapsulate().unwrap();
        assert_eq!(pair.decapsulate(&ciphertext).unwrap(), sent);
    }
}

#[test]
fn ml_dsa_keys_and_signatures_of_commucat_crypto_verify_here() {
    let fixture = fixture();
    for case in fixture["dsa_keys"].as_array().unwrap() {
        let seed: [u8; 32] = array32(&case["seed"]);
        // Same seed, same key in both implementations (FIPS 204 key generation).
        let pair = SigningKeyPair::from_seed(&seed).unwrap();
        assert_eq!(hex_of(pair.public().as_bytes()), case["public_key"]);
        let public = SignaturePublicKey::from_bytes(&bytes(&case["public_key"])).unwrap();
        let message = bytes(&case["message"]);
        let signature = bytes(&case["signature"]);
        public.verify(&message, &signature).unwrap();
        let mut other = message.clone();
        other.push(0);
        assert_eq!(
            public.verify(&other, &signature).unwrap_err(),
            PqError::BadSignature
        );
        // Our (hedged) signature verifies under 1.0.41's encoding of the key too.
        let ours = pair.sign(&message).unwrap();
        public.verify(&message, &ours).unwrap();
    }
}
