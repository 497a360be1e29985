//! The `pq-hybrid` ratchet in the codec: two codecs over hybrid transports built as the
//! handshake builds them (seeded Noise XK, fixed ML-KEM secret and salt).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use commucat_ccp::{Frame, FrameType, MAX_FRAME_LEN};
use commucat_keys::pq::{
    HybridRole, HybridSession, KemPublicKey, LiveRatchet, OneTimeKeyPairs, OneTimePublicKeys,
};
use commucat_keys::{Handshake, HandshakePattern, NoiseError, x25519_public};

use crate::{RatchetError, RatchetPolicy, SessionCodec, StreamError};

/// Finished XK handshakes, the same bytes every time.
fn finished() -> (Handshake, Handshake) {
    let (server_private, client_private) = ([1u8; 32], [2u8; 32]);
    let mut server =
        Handshake::responder_seeded(HandshakePattern::Xk, &server_private, b"p", &[3; 32]).unwrap();
    let mut client = Handshake::initiator_seeded(
        HandshakePattern::Xk,
        &client_private,
        &x25519_public(&server_private),
        b"p",
        &[4; 32],
    )
    .unwrap();
    server
        .read_message(&client.write_message(&[]).unwrap())
        .unwrap();
    client
        .read_message(&server.write_message(&[]).unwrap())
        .unwrap();
    server
        .read_message(&client.write_message(&[]).unwrap())
        .unwrap();
    (client, server)
}

/// The codec of one side, as `commucat_handshake::pq` keys it.
fn codec(mut noise: Handshake, role: HybridRole, one_time: OneTime) -> SessionCodec {
    let classical = noise.split_secret().unwrap();
    let mut session = HybridSession::derive(&classical, &[7; 32], b"salt", role).unwrap();
    let sending = session.next_sending_key().unwrap();
    let receiving = session.next_receiving_key().unwrap();
    let (client_egress, server_egress) = match role {
        HybridRole::Decapsulator => (&sending, &receiving),
        HybridRole::Encapsulator => (&receiving, &sending),
    };
    let transport = noise
        .into_transport_with_keys(client_egress.as_bytes(), server_egress.as_bytes())
        .unwrap();
    let live = match one_time {
        OneTime::Server(keys) => LiveRatchet::encapsulator(session, classical, keys),
        OneTime::Client(keys) => LiveRatchet::decapsulator(session, classical, keys),
    };
    let mut codec = SessionCodec::new(MAX_FRAME_LEN);
    codec
        .enable_transport(transport.with_ratchet(live))
        .unwrap();
    codec
}

enum OneTime {
    Server(OneTimePublicKeys),
    Client(OneTimeKeyPairs),
}

/// A server and a client codec with `count` one-time keys.
fn pair(count: usize) -> (SessionCodec, SessionCodec) {
    let pairs = OneTimeKeyPairs::generate(count).unwrap();
    let announced = pairs
        .public_keys()
        .map(|k| KemPublicKey::from_bytes(k.as_bytes()).unwrap())
        .collect();
    let (client, server) = finished();
    (
        codec(
            server,
            HybridRole::Encapsulator,
            OneTime::Server(OneTimePublicKeys::new(announced)),
        ),
        codec(client, HybridRole::Decapsulator, OneTime::Client(pairs)),
    )
}

fn msg(sequence: u32, body: &[u8]) -> Frame {
    Frame::new(FrameType::Msg, 5, sequence, body.to_vec()).unwrap()
}

fn sealed(codec: &mut SessionCodec, frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    codec.encode(frame, &mut out).unwrap();
    out
}

/// Everything `to` reads from `bytes` (ratchet messages are consumed, not returned).
fn read_all(to: &mut SessionCodec, bytes: &[u8]) -> Result<Vec<Frame>, StreamError> {
    to.feed(bytes)?;
    let mut frames = Vec::new();
    while let Some(frame) = to.next_frame()? {
        frames.push(frame);
    }
    Ok(frames)
}

#[test]
fn steps_under_traffic_until_the_one_time_keys_run_out() {
    let (mut server, mut client) = pair(3);
    let policy = RatchetPolicy {
        messages: 4,
        interval: Duration::from_secs(3600),
    };
    let start = Instant::now();
    assert!(server.schedule_ratchet(policy, start));
    assert!(
        !client.schedule_ratchet(policy, start),
        "only the server schedules"
    );
    let mut sequence = 100;
    for epoch in 1..=3u64 {
        // Traffic both ways under the current keys until a step is due.
        while !server.ratchet_due(start) {
            sequence += 1;
            let down = sealed(&mut server, &msg(sequence, b"down"));
            assert_eq!(
                read_all(&mut client, &down).unwrap(),
                [msg(sequence, b"down")]
            );
            let up = sealed(&mut client, &msg(sequence, b"up"));
            assert_eq!(read_all(&mut server, &up).unwrap(), [msg(sequence, b"up")]);
        }
        // The step, then server frames under the new key in the same bytes.
        let mut down = BytesMut::new();
        server.start_ratchet(999, start, &mut down).unwrap();
        assert_eq!(server.ratchet_epoch(), Some(epoch));
        assert!(server.ratchet_deadline().is_none(), "waiting for the ack");
        assert!(!server.ratchet_due(start));
        assert_eq!(
            server
                .start_ratchet(999, start, &mut BytesMut::new())
                .unwrap_err(),
            StreamError::Ratchet(RatchetError::Pending)
        );
        down.extend_from_slice(&sealed(&mut server, &msg(1, b"after")));
        assert_eq!(read_all(&mut client, &down).unwrap(), [msg(1, b"after")]);
        assert_eq!(client.ratchet_epoch(), Some(epoch));
        // The acknowledgement goes first, before the client's next frame, in one write.
        assert!(client.outgoing().is_some());
        let up = sealed(&mut client, &msg(2, b"reply"));
        assert!(client.outgoing().is_none());
        assert_eq!(read_all(&mut server, &up).unwrap(), [msg(2, b"reply")]);
        assert!(server.ratchet_deadline().is_some(), "ack read");
    }
    assert_eq!(server.one_time_keys_left(), Some(0));
    assert_eq!(client.one_time_keys_left(), Some(0));
    while !server.ratchet_due(start) {
        let down = sealed(&mut server, &msg(1, b"x"));
        read_all(&mut client, &down).unwrap();
    }
    assert_eq!(
        server
            .start_ratchet(999, start, &mut BytesMut::new())
            .unwrap_err(),
        StreamError::Ratchet(RatchetError::Exhausted)
    );
    // Nothing changed: the session still carries frames.
    let down = sealed(&mut server, &msg(3, b"still"));
    assert_eq!(read_all(&mut client, &down).unwrap(), [msg(3, b"still")]);
}

#[test]
fn the_interval_alone_makes_a_step_due() {
    let (mut server, _) = pair(1);
    let start = Instant::now();
    let policy = RatchetPolicy {
        messages: 1_000,
        interval: Duration::from_secs(60),
    };
    server.schedule_ratchet(policy, start);
    assert!(!server.ratchet_due(start));
    assert_eq!(
        server.ratchet_deadline(),
        Some(start + Duration::from_secs(60))
    );
    assert!(server.ratchet_due(start + Duration::from_secs(60)));
}

#[test]
fn a_client_frame_under_the_old_key_after_the_ack_is_refused() {
    let (mut server, mut client) = pair(1);
    // A client that never took the step: same keys and nonces as `client` before it.
    let (_, mut stale) = pair(0);
    let mut step = BytesMut::new();
    server.start_ratchet(7, Instant::now(), &mut step).unwrap();
    assert!(read_all(&mut client, &step).unwrap().is_empty());
    let ack = client.outgoing().unwrap();
    client.outgoing_written();
    // The stale client's second record (nonce 1, like the first record after the ack) is
    // sealed under the old key.
    let _ = sealed(&mut stale, &msg(1, b"first"));
    let old = sealed(&mut stale, &msg(2, b"old key"));
    assert!(read_all(&mut server, &ack).unwrap().is_empty());
    assert_eq!(
        read_all(&mut server, &old).unwrap_err(),
        StreamError::Noise(NoiseError::Decrypt)
    );
    // The same position under the new key opens (on a fresh run of the same step).
    let (mut server, mut client) = pair(1);
    let mut step = BytesMut::new();
    server.start_ratchet(7, Instant::now(), &mut step).unwrap();
    read_all(&mut client, &step).unwrap();
    let up = sealed(&mut client, &msg(2, b"new key"));
    assert_eq!(read_all(&mut server, &up).unwrap(), [msg(2, b"new key")]);
}

#[test]
fn a_server_frame_under_the_old_key_after_the_step_is_refused() {
    let (mut server, mut client) = pair(1);
    let (mut stale, _) = pair(0);
    let mut step = BytesMut::new();
    server.start_ratchet(7, Instant::now(), &mut step).unwrap();
    // The stale server (no step) seals its second record under the old key.
    let _ = sealed(&mut stale, &msg(1, b"first"));
    let old = sealed(&mut stale, &msg(2, b"old key"));
    assert!(read_all(&mut client, &step).unwrap().is_empty());
    assert_eq!(
        read_all(&mut client, &old).unwrap_err(),
        StreamError::Noise(NoiseError::Decrypt)
    );
}

#[test]
fn bytes_after_a_step_in_its_record_are_refused() {
    let (_, mut client) = pair(1);
    // Make a step message and append a frame inside the same plaintext, as a peer that does
    // not end the record there would.
    let (mut twin, _) = pair(1);
    let mut plain = BytesMut::new();
    let ciphertext = vec![0u8; commucat_keys::pq::KEM_CIPHERTEXT_LEN];
    let frame = crate::ratchet::step_frame(
        1,
        &commucat_keys::pq::RatchetStep {
            index: 0,
            ciphertext,
        },
        7,
    )
    .unwrap();
    frame.encode(&mut plain);
    msg(8, b"smuggled").encode(&mut plain);
    // Seal `plain` as one record with the twin's transport (same keys as `server`'s first).
    let mut out = BytesMut::new();
    twin.transport_mut_for_tests()
        .seal(&plain, &mut out)
        .unwrap();
    assert_eq!(
        read_all(&mut client, &out).unwrap_err(),
        StreamError::Ratchet(RatchetError::NotAtRecordEnd)
    );
}
