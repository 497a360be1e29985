//! Test vectors from wire-compat §13, computed by hand (the digest input is spelled out byte
//! by byte here, independently of [`canonical_json`]) and pinned.

use super::*;

/// The federation key of the vectors: the Ed25519 seed 0x42 repeated.
fn key() -> DeviceKeyPair {
    DeviceKeyPair::from_seed(&[0x42; 32])
}

/// 2026-01-02T03:04:05.123456789Z in nanoseconds since the epoch (`date -u -d … +%s` gives
/// 1767323045 seconds).
const NANOS: i64 = 1_767_323_045_123_456_789;

fn event() -> Event {
    Event {
        event_id: "evt-0001".to_owned(),
        origin: "a.test".to_owned(),
        created_at: "2026-01-02T03:04:05.123456789Z".to_owned(),
        // Built in unsorted order on purpose.
        payload: serde_json::json!({
            "target": "bob@b.test",
            "payload": "0501020300",
            "sequence": 12,
            "channel": 7,
        }),
        scope: "b.test".to_owned(),
    }
}

/// The digest input of [`event`], spelled out.
fn digest_input() -> Vec<u8> {
    let mut input = Vec::new();
    input.extend_from_slice(b"evt-0001");
    input.extend_from_slice(b"a.test");
    input.extend_from_slice(b"b.test");
    input.extend_from_slice(&NANOS.to_le_bytes());
    input.extend_from_slice(
        br#"{"channel":7,"payload":"0501020300","sequence":12,"target":"bob@b.test"}"#,
    );
    input
}

/// BLAKE3 of [`digest_input`].
const DIGEST_HEX: &str = "90f64ed78ed3f93a9b6df7fc04e5b340b60a3dbfdca268081f5ba62b7928417c";
/// Ed25519 (RFC 8032) by the seed 0x42×32 over the digest bytes, computed outside this code
/// base (Python `cryptography`, OpenSSL's Ed25519).
const SIGNATURE_HEX: &str = "71a39f056c89cfbb20374d2e24622ed7af10fbe9601e0db91fb9c5272b11e3e19f70b502b92f488ffb3deac2c95b5d0a2e1bc52d63088620c1d76b53ed73e909";

#[test]
fn created_at_parses_to_the_nanoseconds_the_digest_counts() {
    assert_eq!(created_at_nanos(&event().created_at), Some(NANOS));
    assert_eq!(format_created_at(NANOS), event().created_at);
    // chrono's other forms: no fraction, an offset.
    assert_eq!(
        created_at_nanos("2026-01-02T03:04:05Z"),
        Some(1_767_323_045_000_000_000)
    );
    assert_eq!(
        created_at_nanos("2026-01-02T05:04:05.5+02:00"),
        Some(1_767_323_045_500_000_000)
    );
    assert_eq!(created_at_nanos("yesterday"), None);
    // Outside i64 nanoseconds: 0, as the reference digests it.
    assert_eq!(created_at_nanos("2300-01-01T00:00:00Z"), Some(0));
}

#[test]
fn the_digest_is_blake3_of_the_spelled_out_input() {
    let expected = *blake3::hash(&digest_input()).as_bytes();
    assert_eq!(digest(&event()), Some(expected));
    assert_eq!(hex::encode(expected), DIGEST_HEX);
}

#[test]
fn the_signature_is_ed25519_over_the_digest_and_pinned() {
    let signed = sign(event(), &key()).unwrap();
    assert_eq!(hex::encode(&signed.digest), DIGEST_HEX);
    assert_eq!(hex::encode(&signed.signature), SIGNATURE_HEX);
    verify(&signed, &key().verifying_key()).unwrap();
}

#[test]
fn the_wire_form_uses_number_arrays_and_round_trips() {
    let signed = sign(event(), &key()).unwrap();
    let json = serde_json::to_value(&signed).unwrap();
    assert_eq!(json["digest"].as_array().unwrap().len(), DIGEST_LEN);
    assert_eq!(json["signature"].as_array().unwrap().len(), SIGNATURE_LEN);
    assert_eq!(
        json["event"]["created_at"],
        "2026-01-02T03:04:05.123456789Z"
    );
    let back: SignedEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, signed);
    // Key order on the wire does not matter: the payload is re-sorted for the digest.
    let reordered: SignedEvent = serde_json::from_str(&format!(
        r#"{{"digest":{:?},"signature":{:?},"event":{{"scope":"b.test","payload":{{"channel":7,"sequence":12,"target":"bob@b.test","payload":"0501020300"}},"origin":"a.test","event_id":"evt-0001","created_at":"2026-01-02T03:04:05.123456789Z"}}}}"#,
        signed.digest, signed.signature
    ))
    .unwrap();
    verify(&reordered, &key().verifying_key()).unwrap();
}

#[test]
fn tampering_with_any_part_is_detected() {
    let signed = sign(event(), &key()).unwrap();
    let verifying = key().verifying_key();
    let mut changed = signed.clone();
    changed.event.payload["target"] = "mallory@b.test".into();
    assert_eq!(
        verify(&changed, &verifying),
        Err(VerifyError::DigestMismatch)
    );
    let mut changed = signed.clone();
    changed.event.scope = "c.test".to_owned();
    assert_eq!(
        verify(&changed, &verifying),
        Err(VerifyError::DigestMismatch)
    );
    let mut changed = signed.clone();
    changed.event.created_at = "2026-01-02T03:04:05.123456788Z".to_owned();
    assert_eq!(
        verify(&changed, &verifying),
        Err(VerifyError::DigestMismatch)
    );
    // A digest recomputed for the altered event, with the old signature.
    let mut changed = signed.clone();
    changed.event.event_id = "evt-0002".to_owned();
    changed.digest = digest(&changed.event).unwrap().to_vec();
    assert_eq!(verify(&changed, &verifying), Err(VerifyError::BadSignature));
    let mut changed = signed.clone();
    changed.signature[0] ^= 1;
    assert_eq!(verify(&changed, &verifying), Err(VerifyError::BadSignature));
    let mut changed = signed.clone();
    changed.signature.pop();
    assert_eq!(verify(&changed, &verifying), Err(VerifyError::BadSignature));
    // Another domain's key.
    let other = DeviceKeyPair::from_seed(&[0x43; 32]).verifying_key();
    assert_eq!(verify(&signed, &other), Err(VerifyError::BadSignature));
}

#[test]
fn canonical_json_sorts_nested_objects() {
    let value = serde_json::json!({"b": {"z": 1, "a": [ {"y": 2, "x": 3} ]}, "a": "é\n"});
    assert_eq!(
        canonical_json(&value),
        r#"{"a":"é\n","b":{"a":[{"x":3,"y":2}],"z":1}}"#
    );
}
