//! `/connect` end to end: the real server on 127.0.0.1:0, real TLS and HTTP/2, the project's
//! client SDK, and a client built only from the deployed crates (`commucat-proto` and
//! `commucat-crypto` 1.0.41).

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::control::{Ack, Join};
use commucat_ccp::{Frame, FrameType};
use commucat_client::transport::{self, H2Stream};
use commucat_client::{
    ClientError, DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust,
};
use commucat_keys::{HandshakePattern, decode_hex32};
use commucat_link::ByteStream;
use commucat_server::Config;
use serde_json::json;

use crate::common::StoreBackend;
use crate::common::TestServer as Running;

async fn start(tweak: impl FnOnce(&mut Config)) -> Running {
    start_on(StoreBackend::Sqlite, tweak).await
}

async fn start_on(backend: StoreBackend, tweak: impl FnOnce(&mut Config)) -> Running {
    let server = Running::start_on(backend, tweak).await;
    // The pinned key the SDK uses is the one a client learns from GET /api/server-info.
    let info = server.server_info().await;
    assert_eq!(
        info["noise_public"].as_str().unwrap(),
        hex::encode(server.params.server_static)
    );
    server
}

async fn connect(
    server: &Running,
    identity: &DeviceIdentity,
    options: &HandshakeOptions,
) -> Result<Session<H2Stream>, ClientError> {
    commucat_client::connect(
        server.addr,
        "localhost",
        &server.trust,
        identity,
        &server.params,
        options,
    )
    .await
}

async fn recv(session: &mut Session<H2Stream>) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), session.recv())
        .await
        .expect("frame within 10 s")
        .unwrap()
        .expect("stream open")
}

/// Receives until a frame of `frame_type` arrives, returning it.
async fn recv_type(session: &mut Session<H2Stream>, frame_type: FrameType) -> Frame {
    loop {
        let frame = recv(session).await;
        if frame.frame_type() == frame_type {
            return frame;
        }
    }
}

async fn join(session: &mut Session<H2Stream>, channel: u32) {
    let seq = session
        .send_control(
            FrameType::Join,
            channel,
            &json!({"members": [], "relay": true}),
        )
        .await
        .unwrap();
    let ack: Ack = recv_type(session, FrameType::Ack)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(ack.ack, u64::from(seq));
}

async fn two_devices_talk_plain_and_noise_transport_xk_and_ik(backend: StoreBackend) {
    let server = start_on(backend, |_| {}).await;
    let alice_id = DeviceIdentity::generate("alice-phone").with_handle("alice");
    let bob_id = DeviceIdentity::generate("bob-laptop").with_handle("bob");
    let mut alice = connect(&server, &alice_id, &HandshakeOptions::default())
        .await
        .unwrap();
    let bob_options = HandshakeOptions::default()
        .with_pattern(HandshakePattern::Ik)
        .with_noise_transport();
    let mut bob = commucat_client::connect(
        server.addr,
        "localhost",
        &TlsTrust::fingerprint(&server.fingerprint).unwrap(),
        &bob_id,
        &server.params,
        &bob_options,
    )
    .await
    .unwrap();
    assert!(!alice.info().encrypted());
    assert!(bob.info().encrypted());
    assert!(alice.info().issued_certificate.is_some());

    join(&mut alice, 7).await;
    join(&mut bob, 7).await;
    // Both learn the merged member list (alice gets it twice: after each JOIN).
    let members: Join = recv_type(&mut bob, FrameType::Join)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(members.members, ["alice-phone", "bob-laptop"]);
    loop {
        let notice: Join = recv_type(&mut alice, FrameType::Join)
            .await
            .parse_control()
            .unwrap();
        if notice.members.len() == 2 {
            break;
        }
    }

    let seq = alice
        .send_bytes(FrameType::Msg, 7, Bytes::from_static(b"hello bob"))
        .await
        .unwrap();
    let ack: Ack = recv_type(&mut alice, FrameType::Ack)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(ack.ack, u64::from(seq));
    let msg = recv_type(&mut bob, FrameType::Msg).await;
    assert_eq!(msg.payload().as_ref(), b"hello bob");
    assert_eq!(msg.channel_id(), 7);

    // Larger than one Noise message: split into records and reassembled on both legs.
    let big = Bytes::from(vec![0xabu8; 200_000]);
    bob.send_bytes(FrameType::Msg, 7, big.clone())
        .await
        .unwrap();
    let got = recv_type(&mut alice, FrameType::Msg).await;
    assert_eq!(got.payload(), &big);

    // Server sequence numbers are strictly increasing on each connection.
    alice
        .send_bytes(FrameType::Msg, 7, Bytes::from_static(b"1"))
        .await
        .unwrap();
    alice
        .send_bytes(FrameType::Msg, 7, Bytes::from_static(b"2"))
        .await
        .unwrap();
    // Bob's next frames: the ACK of his large MSG, then alice's two MSGs.
    let mut last = msg.sequence();
    for _ in 0..3 {
        let frame = recv(&mut bob).await;
        assert!(frame.sequence() > last);
        last = frame.sequence();
    }
}

async fn a_failing_handshake_does_not_disturb_an_established_session(backend: StoreBackend) {
    let server = start_on(backend, |_| {}).await;
    let mut alice = connect(
        &server,
        &DeviceIdentity::generate("alice-1"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    // Wrong domain → invalid proof; a changed key → key mismatch; a stranger claiming a handle.
    let wrong = ServerParams::new("other.test", server.params.server_static);
    let err = commucat_client::connect(
        server.addr,
        "localhost",
        &server.trust,
        &DeviceIdentity::generate("x-1"),
        &wrong,
        &HandshakeOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.title(), Some("Invalid Handshake Proof"));
    let err = connect(
        &server,
        &DeviceIdentity::generate("alice-1"),
        &HandshakeOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.title(), Some("Device Key Mismatch"));
    join(&mut alice, 3).await;
    alice
        .send_bytes(FrameType::Msg, 3, Bytes::from_static(b"still here"))
        .await
        .unwrap();
    recv_type(&mut alice, FrameType::Ack).await;
    // Sending to a channel without joining it is an ERROR, not a silent drop.
    alice
        .send_bytes(FrameType::Msg, 99, Bytes::from_static(b"nope"))
        .await
        .unwrap();
    let problem: commucat_ccp::Problem = recv_type(&mut alice, FrameType::Error)
        .await
        .parse_control()
        .unwrap();
    assert_eq!(problem.title.as_deref(), Some("Not A Channel Member"));
}

#[tokio::test]
async fn handshake_timeout_closes_a_silent_client() {
    let server = start(|c| c.session.handshake_timeout = Duration::from_secs(1)).await;
    let mut stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let bytes = tokio::time::timeout(Duration::from_secs(10), stream.read())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (frame, _) = Frame::decode(&bytes).unwrap().unwrap();
    let problem: commucat_ccp::Problem = frame.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Handshake Timeout"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), stream.read())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
}

use crate::common::deployed;

#[tokio::test]
async fn the_deployed_client_completes_xk_and_verifies_its_certificate() {
    use commucat_crypto as dc;
    use commucat_proto as dp;
    let server = start(|_| {}).await;
    let (mut client, ack, keys) =
        deployed::handshake(&server, "device-1700000000000", [21u8; 32]).await;
    // The certificate parses as the deployed type and verifies under the announced CA key.
    let cert: dc::DeviceCertificate =
        serde_json::from_value(ack["device_certificate"].clone()).unwrap();
    let ca = decode_hex32(ack["device_ca_public"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex::encode(ca),
        server.server_info().await["device_ca_public"]
            .as_str()
            .unwrap()
    );
    cert.verify(&ca).unwrap();
    assert_eq!(cert.data.device_id, "device-1700000000000");
    assert_eq!(cert.data.public_key, keys.public);
    assert_eq!(cert.data.user_id, ack["user_id"].as_str().unwrap());
    // Plain frames after the ACK (no noise-transport asked): JOIN and its ACK decode with the
    // deployed codec; the membership notice carries `members`.
    client
        .send(
            dp::FrameType::Join,
            7,
            dp::FramePayload::Control(dp::ControlEnvelope {
                properties: json!({"members": ["device-1700000000000"], "relay": true}),
            }),
        )
        .await;
    let mut saw_ack = false;
    let mut saw_members = false;
    while !(saw_ack && saw_members) {
        let frame = client.recv().await;
        match frame.frame_type {
            dp::FrameType::Ack => {
                assert_eq!(deployed::properties(&frame)["ack"], 3);
                saw_ack = true;
            }
            dp::FrameType::Join => {
                assert_eq!(
                    deployed::properties(&frame)["members"],
                    json!(["device-1700000000000"])
                );
                saw_members = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

// The handshake scenarios that read and write the device registry run on both stores.
common::on_each_store!(
    two_devices_talk_plain_and_noise_transport_xk_and_ik,
    a_failing_handshake_does_not_disturb_an_established_session,
);
