//! `pq-hybrid` between the two machines: negotiation, the ML-KEM exchange in AUTH, the signed
//! transcript, records keyed from the hybrid material, and each refusal (bad bundle, wrong or
//! missing signature) and downgrade (server without `pq-hybrid`, no `noise-transport`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use commucat_ccp::control::{ClientAuth, ServerAuth};
use commucat_ccp::{Frame, FrameType, ProblemKind};
use commucat_handshake::pq::{DeviceKeys, KDF, SESSION_LABEL};
use commucat_handshake::sim::{Outcome, To};
use commucat_handshake::{CAP_NOISE_TRANSPORT, CAP_PQ_HYBRID, FailReason};
use commucat_keys::{HandshakePattern, Transport};
use serde_json::Value;

use crate::pair::{Client, World, established, failure, refused};

fn pq_client(world: &World, device_id: &str, seed: u8) -> Client {
    let mut client = world.client(device_id, seed);
    client.capabilities = vec![CAP_NOISE_TRANSPORT.to_owned(), CAP_PQ_HYBRID.to_owned()];
    client.pq = Some(DeviceKeys::generate(2).unwrap());
    client
}

/// The first frame of `frame_type` sent towards `to`.
fn sent(outcome: &Outcome, to: To, frame_type: FrameType) -> Frame {
    outcome
        .frames
        .iter()
        .find(|(t, f)| *t == to && f.frame_type() == frame_type)
        .map(|(_, f)| f.clone())
        .expect("frame sent")
}

/// Both transports of an established session.
fn transports(outcome: Outcome) -> (Transport, Transport) {
    let Some(Ok((_, Some(client)))) = outcome.client else {
        panic!("client transport missing: {:?}", outcome.client);
    };
    let server = outcome.server.expect("established").transport;
    (client, server.expect("server transport"))
}

fn round_trip(from: &mut Transport, to: &mut Transport, message: &[u8]) -> bool {
    let mut sealed = bytes::BytesMut::new();
    from.seal(message, &mut sealed).unwrap();
    let mut plain = bytes::BytesMut::new();
    to.open(&sealed, &mut plain).is_ok() && plain.as_ref() == message
}

/// A change to a frame's JSON payload.
type Edit = fn(&mut Value);
/// A change to a frame's JSON payload that captures.
type BoxedEdit = Box<dyn Fn(&mut Value)>;

/// `frame` with its JSON payload changed by `edit`.
fn edited(frame: &Frame, edit: impl FnOnce(&mut Value)) -> Frame {
    let mut value: Value = frame.parse_control().unwrap();
    edit(&mut value);
    Frame::control(
        frame.frame_type(),
        frame.channel_id(),
        frame.sequence(),
        &value,
    )
    .unwrap()
}

#[test]
fn xk_and_ik_negotiate_pq_hybrid_and_key_records_from_the_hybrid_material() {
    for pattern in HandshakePattern::ALL {
        let mut world = World::new();
        let mut client = pq_client(&world, "phone", 1);
        client.pattern = pattern;
        let outcome = world.run(&client);
        let (server, info) = established(&outcome);
        assert!(server.pq_hybrid, "{pattern:?}");
        assert!(info.pq_hybrid() && info.encrypted());
        assert!(
            server
                .accepted_capabilities
                .contains(&CAP_PQ_HYBRID.to_owned())
        );

        let auth: ServerAuth = sent(&outcome, To::Client, FrameType::Auth)
            .parse_control()
            .unwrap();
        let ciphertext = BASE64.decode(auth.pq_ciphertext.unwrap()).unwrap();
        assert_eq!(ciphertext.len(), 1088, "ML-KEM-768 ciphertext");
        let context = auth.pq_context.unwrap();
        assert_eq!(
            (context.kdf.as_str(), context.label.as_str()),
            (KDF, SESSION_LABEL)
        );
        assert_eq!(BASE64.decode(&context.salt).unwrap().len(), 32);
        assert!(
            auth.accepted_capabilities
                .unwrap()
                .contains(&CAP_PQ_HYBRID.to_owned())
        );
        // Both patterns end with the client's AUTH carrying the transcript signature (IK's
        // without a Noise message).
        let client_auth: ClientAuth = sent(&outcome, To::Server, FrameType::Auth)
            .parse_control()
            .unwrap();
        assert_eq!(
            client_auth.handshake.is_empty(),
            pattern == HandshakePattern::Ik
        );
        assert!(client_auth.pq_signature.is_some());
        assert_eq!(outcome.frames.len(), 4, "HELLO, AUTH, AUTH, ACK");

        let (mut client_side, mut server_side) = transports(outcome);
        assert!(round_trip(
            &mut client_side,
            &mut server_side,
            b"to the server"
        ));
        assert!(round_trip(
            &mut server_side,
            &mut client_side,
            b"to the client"
        ));
        assert!(round_trip(&mut client_side, &mut server_side, b"again"));
    }
}

#[test]
fn a_server_without_pq_hybrid_gives_the_classical_session_without_echo() {
    let mut world = World::new();
    world.pq_hybrid = false;
    let client = pq_client(&world, "phone", 1);
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(!server.pq_hybrid);
    assert!(!info.pq_hybrid());
    assert!(info.encrypted(), "noise-transport is still accepted");
    assert_eq!(server.accepted_capabilities, [CAP_NOISE_TRANSPORT]);
    let auth: ServerAuth = sent(&outcome, To::Client, FrameType::Auth)
        .parse_control()
        .unwrap();
    assert!(auth.pq_ciphertext.is_none() && auth.pq_context.is_none());
    let client_auth: ClientAuth = sent(&outcome, To::Server, FrameType::Auth)
        .parse_control()
        .unwrap();
    assert!(client_auth.pq_signature.is_none());
    let (mut client_side, mut server_side) = transports(outcome);
    assert!(round_trip(&mut client_side, &mut server_side, b"classical"));
}

#[test]
fn pq_hybrid_without_noise_transport_is_not_accepted() {
    let mut world = World::new();
    let mut client = pq_client(&world, "phone", 1);
    client.capabilities = vec![CAP_PQ_HYBRID.to_owned()];
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(!server.pq_hybrid && !info.pq_hybrid() && !info.encrypted());
    assert!(server.accepted_capabilities.is_empty());
    assert!(server.transport.is_none());
}

#[test]
fn a_bad_bundle_is_refused_with_its_own_title_and_nothing_is_stored() {
    let defects: [(&str, Edit); 6] = [
        ("missing", |hello| {
            hello.as_object_mut().unwrap().remove("pq_bundle");
        }),
        ("short kem_public", |hello| {
            hello["pq_bundle"]["kem_public"] = BASE64.encode([1u8; 1000]).into();
        }),
        ("kem_public not base64", |hello| {
            hello["pq_bundle"]["kem_public"] = "not base64!".into();
        }),
        ("long signature_public", |hello| {
            hello["pq_bundle"]["signature_public"] = BASE64.encode([1u8; 1953]).into();
        }),
        ("too many one-time keys", |hello| {
            let key = hello["pq_bundle"]["one_time_keys"][0].clone();
            hello["pq_bundle"]["one_time_keys"] = Value::Array(vec![key; 33]);
        }),
        ("ciphertext in HELLO", |hello| {
            hello["pq_bundle"]["kem_ciphertext"] = BASE64.encode([0u8; 1088]).into();
        }),
    ];
    for (what, defect) in defects {
        let mut world = World::new();
        let client = pq_client(&world, "phone", 1);
        let (outcome, _) = world.run_tampered(&client, |to, frame| {
            Some(
                if to == To::Server && frame.frame_type() == FrameType::Hello {
                    edited(&frame, defect)
                } else {
                    frame
                },
            )
        });
        assert_eq!(
            refused(&outcome, FailReason::PqBundle),
            Some(ProblemKind::PqBundleInvalid),
            "{what}"
        );
        assert_eq!(failure(&outcome).device_id.as_deref(), Some("phone"));
        assert!(world.store.devices.is_empty() && world.store.sessions.is_empty());
    }
    assert_eq!(ProblemKind::PqBundleInvalid.title(), "Invalid PQ Bundle");
}

#[test]
fn a_wrong_or_missing_transcript_signature_is_refused_before_anything_is_stored() {
    let forged = {
        // A valid signature by another key: the bundle's signature_public does not verify it.
        let mut world = World::new();
        let client = pq_client(&world, "forger", 9);
        let outcome = world.run(&client);
        let auth: ClientAuth = sent(&outcome, To::Server, FrameType::Auth)
            .parse_control()
            .unwrap();
        auth.pq_signature.unwrap()
    };
    let tampers: [(&str, BoxedEdit); 3] = [
        (
            "another key's signature",
            Box::new(move |auth| auth["pq_signature"] = forged.clone().into()),
        ),
        (
            "missing",
            Box::new(|auth| {
                auth.as_object_mut().unwrap().remove("pq_signature");
            }),
        ),
        (
            "one bit flipped",
            Box::new(|auth| {
                let mut bytes = BASE64
                    .decode(auth["pq_signature"].as_str().unwrap())
                    .unwrap();
                bytes[100] ^= 1;
                auth["pq_signature"] = BASE64.encode(bytes).into();
            }),
        ),
    ];
    for pattern in HandshakePattern::ALL {
        for (what, tamper) in &tampers {
            let mut world = World::new();
            let mut client = pq_client(&world, "phone", 1);
            client.pattern = pattern;
            let (outcome, _) = world.run_tampered(&client, |to, frame| {
                Some(
                    if to == To::Server && frame.frame_type() == FrameType::Auth {
                        edited(&frame, tamper)
                    } else {
                        frame
                    },
                )
            });
            assert_eq!(
                refused(&outcome, FailReason::PqSignature),
                Some(ProblemKind::PqSignatureInvalid),
                "{pattern:?}: {what}"
            );
            assert!(world.store.devices.is_empty() && world.store.sessions.is_empty());
        }
    }
}

#[test]
fn a_replaced_ciphertext_breaks_the_signed_transcript() {
    // The AUTH JSON is not authenticated by Noise: a ciphertext swapped in transit (here: a
    // fresh encapsulation to the client's own key) gives the client other keys, and the
    // server, verifying the transcript over the ciphertext it sent, refuses.
    let mut world = World::new();
    let client = pq_client(&world, "phone", 1);
    let substitute = {
        let mut other_world = World::new();
        let outcome = other_world.run(&client);
        let auth: ServerAuth = sent(&outcome, To::Client, FrameType::Auth)
            .parse_control()
            .unwrap();
        auth.pq_ciphertext.unwrap()
    };
    let (outcome, _) = world.run_tampered(&client, |to, frame| {
        Some(
            if to == To::Client && frame.frame_type() == FrameType::Auth {
                edited(&frame, |auth| {
                    auth["pq_ciphertext"] = substitute.clone().into();
                })
            } else {
                frame
            },
        )
    });
    assert_eq!(
        refused(&outcome, FailReason::PqSignature),
        Some(ProblemKind::PqSignatureInvalid)
    );
}

#[test]
fn the_client_refuses_an_unknown_kdf_and_needs_its_keys() {
    let mut world = World::new();
    let client = pq_client(&world, "phone", 1);
    let (outcome, _) = world.run_tampered(&client, |to, frame| {
        Some(
            if to == To::Client && frame.frame_type() == FrameType::Auth {
                edited(&frame, |auth| {
                    auth["pq_context"]["kdf"] = "hkdf-sha256".into();
                })
            } else {
                frame
            },
        )
    });
    let Some(Err(commucat_handshake::client::ClientFailure::Protocol(message))) = &outcome.client
    else {
        panic!("client should refuse: {:?}", outcome.client);
    };
    assert!(message.contains("kdf"), "{message}");
    assert!(outcome.server.is_err());

    let mut keyless = pq_client(&world, "tablet", 2);
    keyless.pq = None;
    let outcome = world.run(&keyless);
    assert!(matches!(
        outcome.client,
        Some(Err(commucat_handshake::client::ClientFailure::Config(_)))
    ));
}
