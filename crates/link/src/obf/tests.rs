//! Wrap/unwrap, interoperability with `commucat-proto` 1.0.41 both ways, tamper detection in
//! every byte position, key rotation and padding bounds.

use bytes::BytesMut;
use commucat_ccp::{Frame, FrameType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const ROOT: [u8; 32] = [7u8; 32];

fn pair(rotate_every: u64) -> (Obfuscator, Obfuscator) {
    let max = commucat_ccp::MAX_FRAME_LEN;
    let policy = ObfPolicy::default();
    (
        Obfuscator::with_rotation(
            &ROOT,
            Role::Client,
            policy.clone(),
            [1; 32],
            max,
            rotate_every,
        ),
        Obfuscator::with_rotation(&ROOT, Role::Server, policy, [2; 32], max, rotate_every),
    )
}

fn msg(sequence: u32) -> Frame {
    Frame::new(FrameType::Msg, 9, sequence, vec![0xab; 40]).unwrap()
}

/// 1.0.41's key for epoch 0 of a direction, derived its own way from the epoch seed.
fn proto_key(direction_label: &str) -> commucat_proto::ObfuscationKey {
    let seed = blake3::derive_key(direction_label, &ROOT);
    commucat_proto::ObfuscationKey::derive(MAC_KEY_LABEL, &seed)
}

#[test]
fn wrapped_frames_unwrap_on_the_other_end_in_both_directions() {
    let (mut client, mut server) = pair(ROTATE_EVERY);
    let mut wire = BytesMut::new();
    for sequence in 1..=20 {
        client.wrap_into(&msg(sequence), &mut wire).unwrap();
    }
    for sequence in 1..=20 {
        assert_eq!(server.next_frame(&mut wire).unwrap(), Some(msg(sequence)));
    }
    assert_eq!(server.next_frame(&mut wire).unwrap(), None);
    let control = Frame::control(FrameType::Presence, 0, 3, &serde_json::json!({"s": 1})).unwrap();
    server.wrap_into(&control, &mut wire).unwrap();
    assert_eq!(client.next_frame(&mut wire).unwrap(), Some(control));
}

#[test]
fn a_partial_packet_waits_for_the_rest() {
    let (mut client, mut server) = pair(ROTATE_EVERY);
    let mut whole = BytesMut::new();
    client.wrap_into(&msg(1), &mut whole).unwrap();
    let mut wire = BytesMut::new();
    for byte in whole.iter().take(whole.len() - 1) {
        wire.extend_from_slice(&[*byte]);
        assert_eq!(server.next_frame(&mut wire).unwrap(), None);
    }
    wire.extend_from_slice(&whole[whole.len() - 1..]);
    assert_eq!(server.next_frame(&mut wire).unwrap(), Some(msg(1)));
}

#[test]
fn packets_we_wrap_verify_with_the_1_0_41_crate() {
    for flavor in ProtocolFlavor::ALL {
        let mut policy = ObfPolicy::default();
        for other in ProtocolFlavor::ALL {
            policy = policy.with_weight(other, u16::from(other == flavor));
        }
        let mut client = Obfuscator::new(&ROOT, Role::Client, policy, [3; 32], 1 << 20);
        let frame = Frame::control(FrameType::Join, 4, 77, &serde_json::json!({"c": "x"})).unwrap();
        let json = client.wrap(&frame).unwrap().encode().unwrap();
        let theirs = commucat_proto::ObfuscatedPacket::decode(&json).unwrap();
        let inner = theirs.into_frame(&proto_key(C2S_LABEL)).unwrap();
        assert_eq!(
            inner.encode().unwrap(),
            frame.to_bytes().to_vec(),
            "{flavor:?}"
        );
        assert_eq!(inner.frame_type, commucat_proto::FrameType::Join);
        // Their re-encoding of our packet is byte-identical: the same canonical JSON.
        assert_eq!(theirs.encode().unwrap(), json);
        // And a key from another direction refuses it.
        assert!(theirs.into_frame(&proto_key(S2C_LABEL)).is_err());
    }
}

#[test]
fn packets_the_1_0_41_crate_wraps_unwrap_here() {
    let mut theirs =
        commucat_proto::AdaptiveObfuscator::new(proto_key(S2C_LABEL), StdRng::seed_from_u64(5));
    let (mut client, _) = pair(ROTATE_EVERY);
    for sequence in 1..=200u64 {
        let frame = commucat_proto::Frame {
            channel_id: 3,
            sequence,
            frame_type: commucat_proto::FrameType::Msg,
            payload: commucat_proto::FramePayload::Opaque(vec![1, 2, 3]),
        };
        let json = theirs.wrap_frame(&frame).unwrap().encode().unwrap();
        let ours = client.unwrap(&json).unwrap();
        assert_eq!(ours.to_bytes().to_vec(), frame.encode().unwrap());
    }
}

#[test]
fn every_changed_byte_of_a_wrapper_is_refused_as_an_integrity_failure() {
    let (mut client, _) = pair(ROTATE_EVERY);
    let frame = msg(5);
    let json = client.wrap(&frame).unwrap().encode().unwrap();
    for flip in [0x01u8, 0x20, 0x80, 0xff] {
        for position in 0..json.len() {
            let mut tampered = json.clone();
            tampered[position] ^= flip;
            let (_, mut server) = pair(ROTATE_EVERY);
            match server.unwrap(&tampered) {
                Err(ObfError::Integrity(_)) => {}
                other => panic!("flip {flip:#x} at {position}: {other:?}"),
            }
        }
    }
    let (_, mut server) = pair(ROTATE_EVERY);
    assert_eq!(server.unwrap(&json).unwrap(), frame);
}

#[test]
fn a_changed_length_prefix_never_yields_a_frame() {
    let (mut client, _) = pair(ROTATE_EVERY);
    let mut whole = BytesMut::new();
    client.wrap_into(&msg(1), &mut whole).unwrap();
    for position in 0..LENGTH_PREFIX {
        for flip in [0x01u8, 0x80] {
            let mut wire = whole.clone();
            wire[position] ^= flip;
            let (_, mut server) = pair(ROTATE_EVERY);
            match server.next_frame(&mut wire) {
                // A longer declared length waits for bytes that never complete a valid packet.
                Ok(None) | Err(ObfError::Integrity(_)) => {}
                other => panic!("flip {flip:#x} at {position}: {other:?}"),
            }
        }
    }
}

#[test]
fn an_integrity_failure_is_reported_as_integrity_check_failed() {
    let problem = ObfError::Integrity("MAC does not verify").problem();
    assert_eq!(problem.title.as_deref(), Some(INTEGRITY_TITLE));
    let json = serde_json::to_value(&problem).unwrap();
    assert_eq!(json["title"], "IntegrityCheckFailed");
}

#[test]
fn keys_rotate_every_interval_and_old_packets_stop_verifying() {
    let (mut client, mut server) = pair(3);
    let first_key = *client.sending_key();
    let stale = client.wrap(&msg(1)).unwrap().encode().unwrap();
    assert_eq!(server.unwrap(&stale).unwrap(), msg(1));
    for sequence in 2..=10 {
        let json = client.wrap(&msg(sequence)).unwrap().encode().unwrap();
        assert_eq!(server.unwrap(&json).unwrap(), msg(sequence));
    }
    assert_eq!(client.epochs(), (3, 0));
    assert_eq!(server.epochs(), (0, 3));
    assert_ne!(*client.sending_key(), first_key);
    // Replayed from epoch 0 into epoch 3: refused.
    assert_eq!(
        server.unwrap(&stale),
        Err(ObfError::Integrity("MAC does not verify"))
    );
    // The epoch-1 key is 1.0.41's derivation from the rotated seed.
    let seed0 = blake3::derive_key(C2S_LABEL, &ROOT);
    let seed1 = blake3::derive_key(ROTATE_LABEL, &seed0);
    let (mut fresh, _) = pair(3);
    for sequence in 1..=3 {
        fresh.wrap(&msg(sequence)).unwrap();
    }
    let json = fresh.wrap(&msg(4)).unwrap().encode().unwrap();
    let theirs = commucat_proto::ObfuscatedPacket::decode(&json).unwrap();
    assert!(
        theirs
            .into_frame(&commucat_proto::ObfuscationKey::derive(
                MAC_KEY_LABEL,
                &seed1
            ))
            .is_ok()
    );
}

#[test]
fn refused_packets_do_not_advance_the_receiving_chain() {
    let (mut client, mut server) = pair(2);
    let json = client.wrap(&msg(1)).unwrap().encode().unwrap();
    let mut bad = json.clone();
    if let Some(last) = bad.iter().rposition(u8::is_ascii_digit) {
        bad[last] = if bad[last] == b'9' {
            b'8'
        } else {
            bad[last] + 1
        };
    }
    assert!(server.unwrap(&bad).is_err());
    assert_eq!(server.epochs(), (0, 0));
    assert_eq!(server.unwrap(&json).unwrap(), msg(1));
}

#[test]
fn padding_stays_within_the_policy_bound_and_reaches_both_ends() {
    for (bound, expected) in [(0u8, 0u8), (17, 17), (64, 64), (200, 64)] {
        let policy = ObfPolicy::new(bound);
        assert_eq!(policy.padding_bounds(), (expected, expected));
        let mut client = Obfuscator::new(&ROOT, Role::Client, policy, [9; 32], 1 << 20);
        let (mut min, mut max) = (usize::MAX, 0);
        for sequence in 1..=2000 {
            let packet = client.wrap(&msg(sequence)).unwrap();
            for len in [packet.random_prefix_s1.len(), packet.random_suffix_s2.len()] {
                min = min.min(len);
                max = max.max(len);
            }
        }
        assert_eq!((min, max), (0, usize::from(expected)), "bound {bound}");
    }
}

#[test]
fn every_decoy_flavor_is_drawn_by_the_default_mix() {
    let policy = ObfPolicy::default();
    let mut rng = StdRng::seed_from_u64(11);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let snapshot = policy.snapshot(&mut rng);
        let tag = serde_json::to_value(&snapshot.mimicry).unwrap()["protocol"].clone();
        assert_eq!(
            tag,
            serde_json::to_value(snapshot.flavor).unwrap(),
            "mimicry matches its flavor"
        );
        seen.insert(format!("{:?}", snapshot.flavor));
    }
    assert_eq!(seen.len(), ProtocolFlavor::ALL.len());
}

#[test]
fn a_declared_length_over_the_bound_is_refused_before_buffering() {
    let (_, mut server) = pair(ROTATE_EVERY);
    let mut wire = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
    assert!(matches!(
        server.next_frame(&mut wire),
        Err(ObfError::Integrity(_))
    ));
}

#[test]
fn the_root_depends_on_every_input() {
    let base = derive_root(&[1; 32], &[2; 32], None).unwrap();
    assert_ne!(*base, *derive_root(&[1; 32], &[3; 32], None).unwrap());
    assert_ne!(*base, *derive_root(&[4; 32], &[2; 32], None).unwrap());
    assert_ne!(
        *base,
        *derive_root(&[1; 32], &[2; 32], Some(&[5; 32])).unwrap()
    );
    assert_eq!(*base, *derive_root(&[1; 32], &[2; 32], None).unwrap());
}

/// The wrapper's size against the frame's, for random payloads (figures quoted in
/// `docs/obfuscation.md`; `cargo test -p commucat-link --lib wrapper_size -- --nocapture`).
#[test]
fn wrapper_size_stays_within_the_declared_bound() {
    use rand::RngCore;
    let (mut client, _) = pair(ROTATE_EVERY);
    let mut rng = StdRng::seed_from_u64(3);
    for len in [0usize, 16, 100, 1000, 10_000, 100_000] {
        let (mut min, mut max, mut total) = (usize::MAX, 0usize, 0usize);
        let runs = 200;
        for sequence in 1..=runs {
            let mut payload = vec![0u8; len];
            rng.fill_bytes(&mut payload);
            let frame = Frame::new(FrameType::Msg, 7, sequence, payload).unwrap();
            let json = client.wrap(&frame).unwrap().encode().unwrap().len();
            assert!(json <= max_packet_len(frame.encoded_len()));
            min = min.min(json);
            max = max.max(json);
            total += json;
        }
        let frame_len = Frame::new(FrameType::Msg, 7, 1, vec![0u8; len])
            .unwrap()
            .encoded_len();
        eprintln!(
            "payload {len:>6} B: frame {frame_len:>6} B, wrapper min {min} / mean {} / max {} B",
            total / runs as usize,
            max
        );
    }
}
