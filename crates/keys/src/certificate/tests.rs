//! Unit tests of device certificates: canonical bytes, signatures, validity windows and the
//! wire form.

use super::*;
use crate::DeviceKeyPair;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn ca() -> DeviceKeyPair {
    DeviceKeyPair::from_seed(&[0xca; 32])
}

fn data(ca: &DeviceKeyPair) -> DeviceCertificateData {
    DeviceCertificateData {
        serial: u64::MAX,
        user_id: "user-1".into(),
        device_id: "device-1".into(),
        public_key: DeviceKeyPair::from_seed(&[0xde; 32]).public_key(),
        issuer: ca.public_key(),
        issued_at: NOW,
        expires_at: NOW + 30 * DAY,
    }
}

fn issued() -> (DeviceKeyPair, DeviceCertificate) {
    let ca = ca();
    let cert = DeviceCertificate::issue(ca.signing_key(), data(&ca)).unwrap();
    (ca, cert)
}

#[test]
fn issue_and_verify() {
    let (ca, cert) = issued();
    assert_eq!(cert.verify(&ca.public_key(), NOW, 300), Ok(()));
    assert_eq!(cert.verify(&ca.public_key(), NOW + 30 * DAY, 0), Ok(()));
}

#[test]
fn canonical_message_exact_bytes() {
    let (_, cert) = issued();
    let d = &cert.data;
    let expected = format!(
        "{{\"serial\":18446744073709551615,\"user_id\":\"user-1\",\"device_id\":\"device-1\",\
         \"public_key\":\"{}\",\"issuer\":\"{}\",\"issued_at\":1700000000,\"expires_at\":1702592000}}",
        encode_hex(&d.public_key),
        encode_hex(&d.issuer)
    );
    assert_eq!(d.canonical_message(), expected.as_bytes());
    assert_eq!(d.canonical_message(), serde_json::to_vec(d).unwrap());
}

#[test]
fn escaping_matches_serde_json_for_every_ascii_byte() {
    let all: String = (0u8..=0x7f).map(char::from).collect();
    let mut d = data(&ca());
    d.user_id = format!("{all}/é😀\u{2028}");
    d.device_id = "\"\\".into();
    d.issued_at = i64::MIN;
    d.expires_at = -1;
    d.serial = 0;
    assert_eq!(d.canonical_message(), serde_json::to_vec(&d).unwrap());
}

#[test]
fn wire_json_shape_and_round_trip() {
    let (_, cert) = issued();
    let json = serde_json::to_string(&cert).unwrap();
    let canonical = String::from_utf8(cert.data.canonical_message()).unwrap();
    let expected = format!(
        "{},\"signature\":\"{}\"}}",
        canonical.strip_suffix('}').unwrap(),
        encode_hex(&cert.signature)
    );
    assert_eq!(json, expected);
    let back: DeviceCertificate = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cert);
    // Full u64 serial survives.
    assert_eq!(back.data.serial, u64::MAX);
    // Uppercase hex and unknown keys are accepted.
    let upper = json.replace(
        &encode_hex(&cert.signature),
        &encode_hex(&cert.signature).to_uppercase(),
    );
    let with_extra = format!("{},\"extra\":1}}", upper.strip_suffix('}').unwrap());
    let back: DeviceCertificate = serde_json::from_str(&with_extra).unwrap();
    assert_eq!(back, cert);
}

#[test]
fn wire_json_rejects_bad_fields() {
    let (_, cert) = issued();
    let json = serde_json::to_string(&cert).unwrap();
    let sig = encode_hex(&cert.signature);
    let short_sig = json.replace(&sig, &sig[..126]);
    assert!(serde_json::from_str::<DeviceCertificate>(&short_sig).is_err());
    let missing = json.replace(&format!(",\"signature\":\"{sig}\""), "");
    assert!(serde_json::from_str::<DeviceCertificate>(&missing).is_err());
    let negative_serial = json.replace("18446744073709551615", "-1");
    assert!(serde_json::from_str::<DeviceCertificate>(&negative_serial).is_err());
    let too_big = json.replace("18446744073709551615", "18446744073709551616");
    assert!(serde_json::from_str::<DeviceCertificate>(&too_big).is_err());
}

#[test]
fn issue_requires_matching_issuer() {
    let ca = ca();
    let mut d = data(&ca);
    d.issuer = [1u8; 32];
    assert_eq!(
        DeviceCertificate::issue(ca.signing_key(), d),
        Err(CertificateError::IssuerMismatch)
    );
}

#[test]
fn wrong_ca_rejected() {
    let (_, cert) = issued();
    let other = DeviceKeyPair::from_seed(&[0xcb; 32]);
    assert_eq!(
        cert.verify(&other.public_key(), NOW, 300),
        Err(CertificateError::IssuerMismatch)
    );
    // A certificate claiming another issuer but signed by the trusted CA fails too.
    let mut forged = cert.clone();
    forged.data.issuer = other.public_key();
    assert_eq!(
        forged.verify(&other.public_key(), NOW, 300),
        Err(CertificateError::BadSignature)
    );
}

#[test]
fn tampered_fields_or_signature_rejected() {
    let (ca, cert) = issued();
    let trusted = ca.public_key();
    let mutations: [fn(&mut DeviceCertificate); 8] = [
        |c| c.signature[0] ^= 1,
        |c| c.signature[63] ^= 0x80,
        |c| c.data.serial ^= 1,
        |c| c.data.user_id.push('x'),
        |c| c.data.device_id = "device-2".into(),
        |c| c.data.public_key[5] ^= 1,
        |c| c.data.issued_at -= 1,
        |c| c.data.expires_at += 1,
    ];
    for mutate in mutations {
        let mut tampered = cert.clone();
        mutate(&mut tampered);
        assert_eq!(
            tampered.verify(&trusted, NOW, 300),
            Err(CertificateError::BadSignature)
        );
    }
}

#[test]
fn expiry_and_not_yet_valid() {
    let (ca, cert) = issued();
    let trusted = ca.public_key();
    let expires = cert.data.expires_at;
    assert_eq!(cert.verify(&trusted, expires, 300), Ok(()));
    assert_eq!(
        cert.verify(&trusted, expires + 1, 300),
        Err(CertificateError::Expired {
            expires_at: expires,
            now: expires + 1
        })
    );
    // issued_at <= now + skew.
    assert_eq!(cert.verify(&trusted, NOW - 300, 300), Ok(()));
    assert_eq!(
        cert.verify(&trusted, NOW - 301, 300),
        Err(CertificateError::NotYetValid {
            issued_at: NOW,
            now: NOW - 301
        })
    );
    assert_eq!(
        cert.verify(&trusted, NOW - 1, -5),
        Err(CertificateError::NotYetValid {
            issued_at: NOW,
            now: NOW - 1
        })
    );
    // Extreme clocks do not overflow.
    assert!(matches!(
        cert.verify(&trusted, i64::MAX, i64::MAX),
        Err(CertificateError::Expired { .. })
    ));
    assert!(matches!(
        cert.verify(&trusted, i64::MIN, i64::MAX),
        Err(CertificateError::NotYetValid { .. })
    ));
    assert_eq!(cert.verify(&trusted, NOW, i64::MAX), Ok(()));
}

#[test]
fn empty_window_rejected() {
    let ca = ca();
    let mut d = data(&ca);
    d.expires_at = d.issued_at;
    let cert = DeviceCertificate::issue(ca.signing_key(), d).unwrap();
    assert_eq!(
        cert.verify(&ca.public_key(), NOW, 300),
        Err(CertificateError::InvalidValidityWindow {
            issued_at: NOW,
            expires_at: NOW
        })
    );
}

#[test]
fn invalid_ca_key_reported() {
    let (_, mut cert) = issued();
    // Find a 32-byte string that is not a valid Ed25519 point.
    let bad = (0u8..=255)
        .map(|b| {
            let mut k = [b; 32];
            k[31] &= 0x7f;
            k
        })
        .find(|k| VerifyingKey::from_bytes(k).is_err())
        .unwrap();
    cert.data.issuer = bad;
    assert_eq!(
        cert.verify(&bad, NOW, 300),
        Err(CertificateError::InvalidCaKey)
    );
}

#[test]
fn remaining_validity_helper() {
    let (_, cert) = issued();
    assert_eq!(
        cert.remaining_validity(NOW),
        Some(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(
        cert.remaining_validity(cert.data.expires_at),
        Some(Duration::ZERO)
    );
    assert_eq!(cert.remaining_validity(cert.data.expires_at + 1), None);
    let mut d = cert.data.clone();
    d.expires_at = i64::MAX;
    assert_eq!(
        d.remaining_validity(i64::MIN),
        Some(Duration::from_secs(u64::MAX))
    );
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\/\\x00-\\x1f\\x7f a-zé😀\u{2028}]{0,24}",
    ]
}

proptest! {
    #[test]
    fn json_round_trip_and_canonical_matches_serde_json(
        serial in any::<u64>(),
        user_id in tricky_string(),
        device_id in tricky_string(),
        public_key in any::<[u8; 32]>(),
        issued_at in any::<i64>(),
        expires_at in any::<i64>(),
        signature in any::<[u8; 32]>(),
    ) {
        let d = DeviceCertificateData {
            serial,
            user_id,
            device_id,
            public_key,
            issuer: [0x11; 32],
            issued_at,
            expires_at,
        };
        prop_assert_eq!(d.canonical_message(), serde_json::to_vec(&d).unwrap());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&signature);
        sig[32..].copy_from_slice(&signature);
        let cert = DeviceCertificate { data: d, signature: sig };
        let json = serde_json::to_string(&cert).unwrap();
        let back: DeviceCertificate = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &cert);
        // Pretty-printed input decodes to the same certificate.
        let pretty = serde_json::to_string_pretty(&cert).unwrap();
        let back: DeviceCertificate = serde_json::from_str(&pretty).unwrap();
        prop_assert_eq!(back, cert);
    }

    #[test]
    fn issued_certificates_verify(
        serial in any::<u64>(),
        user_id in tricky_string(),
        device_id in tricky_string(),
        issued_at in -1_000_000i64..1_000_000,
        lifetime in 1i64..1_000_000,
    ) {
        let ca = ca();
        let d = DeviceCertificateData {
            serial,
            user_id,
            device_id,
            public_key: [0x22; 32],
            issuer: ca.public_key(),
            issued_at,
            expires_at: issued_at + lifetime,
        };
        let cert = DeviceCertificate::issue(ca.signing_key(), d).unwrap();
        let json = serde_json::to_string(&cert).unwrap();
        let back: DeviceCertificate = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.verify(&ca.public_key(), issued_at, 0), Ok(()));
    }
}
