//! `adaptive-obf` sessions against the real server: two SDK clients converse with wrapped
//! frames in every `/connect` mode that carries records (and on top of `pq-hybrid`); a server
//! with it off gives plain records; a wrapper with a bad MAC ends the session with an ERROR
//! titled `IntegrityCheckFailed`, counted and ledgered.

use bytes::{Bytes, BytesMut};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::transport::{ConnectMode, ModeStream, open_mode};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use commucat_link::ByteStream;
use commucat_link::obf::{ObfPolicy, Obfuscator, Role};

use crate::common::modes::{join, recv_type};
use crate::common::{TestServer, ledger_records};

async fn connect(
    server: &TestServer,
    mode: ConnectMode,
    identity: &DeviceIdentity,
    options: &HandshakeOptions,
) -> Session<ModeStream> {
    let stream = open_mode(mode, server.addr, "localhost", &server.trust)
        .await
        .unwrap();
    Session::handshake(stream, identity, &server.params, options)
        .await
        .unwrap()
}

/// Alice and Bob, both wrapped, join a channel and exchange a small and a large message.
async fn wrapped_conversation(mode: ConnectMode, options: HandshakeOptions, pq: bool) {
    let server = TestServer::start(|c| c.server.http3 = mode == ConnectMode::H3).await;
    let identity = |name: &str| {
        let id = DeviceIdentity::generate(name);
        if pq { id.with_pq_keys().unwrap() } else { id }
    };
    let (alice_id, bob_id) = (identity("alice-obf"), identity("bob-obf"));
    let mut alice = connect(&server, mode, &alice_id, &options).await;
    let mut bob = connect(&server, mode, &bob_id, &options).await;
    for session in [&mut alice, &mut bob] {
        assert!(session.info().adaptive_obf() && session.info().encrypted());
        assert_eq!(session.info().pq_hybrid(), pq);
        assert!(session.connection_mut().codec_mut().is_obfuscated());
    }
    join(&mut alice, 7).await;
    join(&mut bob, 7).await;
    alice
        .send_bytes(FrameType::Msg, 7, Bytes::from_static(b"hello, wrapped"))
        .await
        .unwrap();
    assert_eq!(
        recv_type(&mut bob, FrameType::Msg).await.payload().as_ref(),
        b"hello, wrapped"
    );
    let big = Bytes::from(vec![0xa5u8; 150_000]);
    bob.send_bytes(FrameType::Msg, 7, big.clone())
        .await
        .unwrap();
    assert_eq!(recv_type(&mut alice, FrameType::Msg).await.payload(), &big);
    for session in [&mut alice, &mut bob] {
        let codec = session.connection_mut().codec_mut();
        assert!(codec.obfuscator().is_some_and(|o| o.epochs() == (0, 0)));
    }
    server
        .metric_becomes("commucat_obf_sessions_total ", 2)
        .await;
    assert_eq!(
        server
            .metric("commucat_obf_integrity_failures_total ")
            .await,
        Some(0)
    );
}

mod wrapped_conversation {
    use commucat_client::HandshakeOptions;
    use commucat_client::transport::ConnectMode;

    fn obf() -> HandshakeOptions {
        HandshakeOptions::default().with_adaptive_obf()
    }

    #[tokio::test]
    async fn h2_binary() {
        super::wrapped_conversation(ConnectMode::H2Binary, obf(), false).await;
    }

    #[tokio::test]
    async fn h1_chunked() {
        super::wrapped_conversation(ConnectMode::H1Chunked, obf(), false).await;
    }

    #[tokio::test]
    async fn websocket() {
        super::wrapped_conversation(ConnectMode::WebSocket, obf(), false).await;
    }

    #[tokio::test]
    async fn websocket_h2() {
        super::wrapped_conversation(ConnectMode::WebSocketH2, obf(), false).await;
    }

    #[tokio::test]
    async fn h3() {
        super::wrapped_conversation(ConnectMode::H3, obf(), false).await;
    }

    #[tokio::test]
    async fn h2_binary_with_pq_hybrid() {
        let options = obf().with_pq_hybrid();
        super::wrapped_conversation(ConnectMode::H2Binary, options, true).await;
    }
}

#[tokio::test]
async fn every_record_carrying_mode_is_covered() {
    let carrying: Vec<_> = ConnectMode::ALL
        .iter()
        .filter(|m| m.carries_noise_transport())
        .collect();
    assert_eq!(
        carrying,
        [
            &ConnectMode::H2Binary,
            &ConnectMode::H1Chunked,
            &ConnectMode::WebSocket,
            &ConnectMode::WebSocketH2,
            &ConnectMode::H3
        ],
        "a new record-carrying mode needs a wrapped_conversation test"
    );
}

#[tokio::test]
async fn a_server_with_it_off_gives_plain_records_without_echo() {
    let server = TestServer::start(|c| c.crypto.adaptive_obf = false).await;
    let options = HandshakeOptions::default().with_adaptive_obf();
    let mut alice = connect(
        &server,
        ConnectMode::H2Binary,
        &DeviceIdentity::generate("alice-plain"),
        &options,
    )
    .await;
    assert!(!alice.info().adaptive_obf() && alice.info().encrypted());
    assert!(!alice.connection_mut().codec_mut().is_obfuscated());
    join(&mut alice, 3).await;
    server
        .metric_becomes("commucat_security_noise_handshakes_total ", 1)
        .await;
    assert_eq!(server.metric("commucat_obf_sessions_total ").await, Some(0));
}

#[tokio::test]
async fn a_client_that_does_not_offer_it_is_not_wrapped() {
    let server = TestServer::start(|_| {}).await;
    let options = HandshakeOptions::default().with_noise_transport();
    let mut alice = connect(
        &server,
        ConnectMode::WebSocket,
        &DeviceIdentity::generate("alice-unwrapped"),
        &options,
    )
    .await;
    assert!(!alice.info().adaptive_obf());
    assert!(!alice.connection_mut().codec_mut().is_obfuscated());
    join(&mut alice, 4).await;
}

#[tokio::test]
async fn a_wrapper_with_a_bad_mac_ends_the_session_with_integrity_check_failed() {
    let server = TestServer::start(|_| {}).await;
    let options = HandshakeOptions::default().with_adaptive_obf();
    let mut alice = connect(
        &server,
        ConnectMode::H2Binary,
        &DeviceIdentity::generate("alice-tamper"),
        &options,
    )
    .await;
    join(&mut alice, 5).await;
    // A genuine wrapper of a MSG under Alice's current key, one MAC bit flipped, sealed in a
    // valid record: only the wrapper check can refuse it.
    let root = alice.info().obf_root.clone().expect("adaptive-obf root");
    let mut forger = Obfuscator::new(
        root.as_bytes(),
        Role::Client,
        ObfPolicy::default(),
        [4; 32],
        1 << 20,
    );
    let frame = Frame::new(FrameType::Msg, 5, 1000, &b"tampered"[..]).unwrap();
    let mut packet = forger.wrap(&frame).unwrap();
    packet.integrity_mac[3] ^= 0x10;
    let json = packet.encode().unwrap();
    let mut plain = BytesMut::new();
    plain.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
    plain.extend_from_slice(&json);
    let conn = alice.connection_mut();
    let mut sealed = BytesMut::new();
    conn.codec_mut().seal_plain(&plain, &mut sealed).unwrap();
    conn.stream_mut().write(sealed.freeze()).await.unwrap();

    let error = recv_type(&mut alice, FrameType::Error).await;
    let problem: Problem = error.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("IntegrityCheckFailed"));
    assert_eq!(
        problem.type_uri.as_deref(),
        Some("urn:commucat:problem:integrity-check-failed")
    );
    server
        .metric_becomes("commucat_obf_integrity_failures_total ", 1)
        .await;
    let ledger = server.data_dir().join("ledger.jsonl");
    let records = ledger_records(&ledger, 1, |l| l["scope"] == "obfuscation").await;
    let record = records
        .iter()
        .find(|l| l["scope"] == "obfuscation")
        .unwrap();
    assert_eq!(record["title"], "IntegrityCheckFailed");
    assert_eq!(record["device"], "alice-tamper");
}
