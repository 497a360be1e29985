//! Known-answer tests from NIST's ACVP vectors for FIPS 203 / FIPS 204 (source and selection
//! in `tests/fixtures/README.md`).
//!
//! aws-lc-rs has no key generation from `(d, z)` and no encapsulation with a given `m`, so
//! ML-KEM-768 is checked where it can be: decapsulation (the server's and client's operation
//! on a received ciphertext) against every ML-KEM-768 decapsulation vector, including the
//! modified ciphertexts that must give the implicit-rejection secret, and against the
//! encapsulation vectors' `(dk, c) → k`; and the `ek` inside every `dk`. ML-DSA-65 key
//! generation from `ξ` is checked against the keyGen vectors (public and expanded secret key).

use aws_lc_rs::encoding::AsRawBytes as _;
use aws_lc_rs::signature::{ML_DSA_65_SIGNING, PqdsaKeyPair};
use commucat_keys::pq::{KemKeyPair, SigningKeyPair};
use serde_json::Value;

const ML_KEM: &str = include_str!("../fixtures/nist-mlkem768.json");
const ML_DSA: &str = include_str!("../fixtures/nist-mldsa65.json");

fn bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap()).unwrap()
}

fn upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

#[test]
fn ml_kem_768_decapsulation_vectors() {
    let fixture: Value = serde_json::from_str(ML_KEM).unwrap();
    let group = &fixture["decapsulation"];
    let pair = KemKeyPair::from_secret_bytes(&bytes(&group["dk"])).unwrap();
    assert_eq!(upper(pair.public().as_bytes()), group["ek"]);
    let tests = group["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 10);
    let mut modified = 0;
    for test in tests {
        let shared = pair.decapsulate(&bytes(&test["c"])).unwrap();
        assert_eq!(upper(shared.as_bytes()), test["k"], "tcId {}", test["tcId"]);
        modified += usize::from(test["reason"] == "modify ciphertext");
    }
    assert_eq!(modified, 5, "implicit rejection is covered");
}

#[test]
fn ml_kem_768_encapsulation_vectors_decapsulate() {
    let fixture: Value = serde_json::from_str(ML_KEM).unwrap();
    let tests = fixture["encapsulation"]["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3);
    for test in tests {
        let pair = KemKeyPair::from_secret_bytes(&bytes(&test["dk"])).unwrap();
        assert_eq!(
            upper(pair.public().as_bytes()),
            test["ek"],
            "tcId {}",
            test["tcId"]
        );
        let shared = pair.decapsulate(&bytes(&test["c"])).unwrap();
        assert_eq!(upper(shared.as_bytes()), test["k"], "tcId {}", test["tcId"]);
    }
}

#[test]
fn ml_dsa_65_key_generation_vectors() {
    let fixture: Value = serde_json::from_str(ML_DSA).unwrap();
    let tests = fixture["keygen"]["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 4);
    for test in tests {
        let seed: [u8; 32] = bytes(&test["seed"]).try_into().unwrap();
        let pair = SigningKeyPair::from_seed(&seed).unwrap();
        assert_eq!(
            upper(pair.public().as_bytes()),
            test["pk"],
            "tcId {}",
            test["tcId"]
        );
        let raw = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &seed).unwrap();
        let secret = raw.private_key().as_raw_bytes().unwrap();
        assert_eq!(upper(secret.as_ref()), test["sk"], "tcId {}", test["tcId"]);
    }
}
