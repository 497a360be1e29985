//! Our Noise responder against the deployed client's initiator (`commucat-crypto` 1.0.41), and
//! our record layer against its transport messages.

use bytes::BytesMut;
use commucat_crypto as oracle;
use commucat_keys::noise::{
    DEFAULT_PROLOGUE, Handshake, HandshakePattern, MAX_RECORD_PLAINTEXT, NoiseError,
};
use commucat_keys::{DeviceKeyPair, x25519_public};

const SERVER_PRIVATE: [u8; 32] = [7; 32];

fn oracle_initiator(
    pattern: oracle::HandshakePattern,
    device: &DeviceKeyPair,
) -> oracle::NoiseHandshake {
    let config = oracle::NoiseConfig {
        pattern,
        prologue: DEFAULT_PROLOGUE.to_vec(),
        local_private: *device.seed(),
        local_static_public: None,
        remote_static_public: Some(x25519_public(&SERVER_PRIVATE)),
    };
    oracle::build_handshake(&config, true).unwrap()
}

/// Frames a transport message the way the record layer does: `varint(len) || ct`.
fn record(ct: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    commucat_ccp::varint::encode(ct.len() as u64, &mut out);
    out.extend_from_slice(ct);
    out
}

#[test]
fn deployed_xk_initiator_completes_against_our_responder() {
    let device = DeviceKeyPair::generate();
    let mut client = oracle_initiator(oracle::HandshakePattern::Xk, &device);
    let mut server =
        Handshake::responder(HandshakePattern::Xk, &SERVER_PRIVATE, DEFAULT_PROLOGUE).unwrap();

    let msg1 = client.write_message(&[]).unwrap();
    assert_eq!(msg1.len(), 48);
    assert!(server.read_message(&msg1).unwrap().is_empty());
    let session = br#"{"session":"0123456789abcdef"}"#;
    let msg2 = server.write_message(session).unwrap();
    assert_eq!(client.read_message(&msg2).unwrap(), session);
    let msg3 = client.write_message(&[]).unwrap();
    assert_eq!(msg3.len(), 64);
    server.read_message(&msg3).unwrap();
    assert!(server.is_finished());
    // The static key the client reveals is the X25519 key of its device seed: `client_static`.
    assert_eq!(server.remote_static(), Some(device.x25519_static()));

    let mut ours = server.into_transport().unwrap();
    let mut theirs = client.into_transport().unwrap();
    // Client → server: one oracle transport message is one record.
    let mut plain = BytesMut::new();
    let ct = theirs.write_message(b"hello server").unwrap();
    ours.open(&record(&ct), &mut plain).unwrap();
    assert_eq!(plain.as_ref(), b"hello server");
    // Server → client: each record's body is one message the oracle decrypts.
    let mut wire = BytesMut::new();
    ours.seal(b"hello client", &mut wire).unwrap();
    let (len, prefix) = commucat_ccp::varint::decode(&wire).unwrap();
    assert_eq!(usize::try_from(len).unwrap(), wire.len() - prefix);
    assert_eq!(
        theirs.read_message(&wire[prefix..]).unwrap(),
        b"hello client"
    );
    // A plaintext over one message spans records the oracle decrypts in order.
    let big = vec![0x5a; MAX_RECORD_PLAINTEXT + 10];
    let mut wire = BytesMut::new();
    ours.seal(&big, &mut wire).unwrap();
    let mut rest = &wire[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let (len, prefix) = commucat_ccp::varint::decode(rest).unwrap();
        let end = prefix + usize::try_from(len).unwrap();
        got.extend(theirs.read_message(&rest[prefix..end]).unwrap());
        rest = &rest[end..];
    }
    assert_eq!(got, big);
}

#[test]
fn deployed_ik_initiator_finishes_after_message_two() {
    let device = DeviceKeyPair::generate();
    let mut client = oracle_initiator(oracle::HandshakePattern::Ik, &device);
    let mut server =
        Handshake::responder(HandshakePattern::Ik, &SERVER_PRIVATE, DEFAULT_PROLOGUE).unwrap();
    let msg1 = client.write_message(&[]).unwrap();
    server.read_message(&msg1).unwrap();
    // IK reveals the client static in message 1.
    assert_eq!(server.remote_static(), Some(device.x25519_static()));
    let msg2 = server.write_message(b"{}").unwrap();
    assert!(server.is_finished());
    client.read_message(&msg2).unwrap();
    // The deployed client then tries a third message, which IK does not have.
    assert!(client.write_message(&[]).is_err());
    let mut theirs = client.into_transport().unwrap();
    let mut ours = server.into_transport().unwrap();
    let mut plain = BytesMut::new();
    ours.open(&record(&theirs.write_message(b"ik").unwrap()), &mut plain)
        .unwrap();
    assert_eq!(plain.as_ref(), b"ik");
}

#[test]
fn message_one_for_another_server_key_is_rejected() {
    let device = DeviceKeyPair::generate();
    let mut client = oracle_initiator(oracle::HandshakePattern::Xk, &device);
    let msg1 = client.write_message(&[]).unwrap();
    let mut server =
        Handshake::responder(HandshakePattern::Xk, &[8; 32], DEFAULT_PROLOGUE).unwrap();
    assert!(matches!(
        server.read_message(&msg1),
        Err(NoiseError::Handshake(_))
    ));
}
