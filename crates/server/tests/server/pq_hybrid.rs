//! `pq-hybrid` sessions against the real server: two SDK clients chat over hybrid sessions in
//! every `/connect` mode that carries records; the counters, server-info and the ledger tell
//! the truth; a bad bundle is refused with its own title; a server without `pq-hybrid` gives
//! the classical session.

use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::{Frame, FrameType, Problem, ProblemKind};
use commucat_client::transport::{ConnectMode, ModeStream};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use commucat_handshake::client::{ClientHandshake, ClientParams, Input, Outgoing, Step};
use commucat_link::Connection;
use serde_json::{Value, json};

use crate::common::modes::{join, open, recv_type, security_stats};
use crate::common::{TestServer, ledger_records};

fn pq_identity(device_id: &str) -> DeviceIdentity {
    DeviceIdentity::generate(device_id).with_pq_keys().unwrap()
}

async fn connect_pq(
    server: &TestServer,
    mode: ConnectMode,
    identity: &DeviceIdentity,
) -> Session<ModeStream> {
    let options = HandshakeOptions::default().with_pq_hybrid();
    Session::handshake(open(server, mode).await, identity, &server.params, &options)
        .await
        .unwrap()
}

/// Two devices with hybrid sessions join a channel and exchange messages both ways (one
/// larger than a Noise message); the server counts two hybrid handshakes.
async fn hybrid_conversation(mode: ConnectMode) {
    let server = TestServer::start(|c| c.server.http3 = mode == ConnectMode::H3).await;
    let alice_id = pq_identity("alice-pq");
    let bob_id = pq_identity("bob-pq");
    let mut alice = connect_pq(&server, mode, &alice_id).await;
    let mut bob = connect_pq(&server, mode, &bob_id).await;
    for session in [&alice, &bob] {
        assert!(session.info().pq_hybrid() && session.info().encrypted());
    }

    join(&mut alice, 7).await;
    join(&mut bob, 7).await;
    alice
        .send_bytes(FrameType::Msg, 7, Bytes::from_static(b"hello over pq"))
        .await
        .unwrap();
    let msg = recv_type(&mut bob, FrameType::Msg).await;
    assert_eq!(msg.payload().as_ref(), b"hello over pq");
    let big = Bytes::from(vec![0x5au8; 200_000]);
    bob.send_bytes(FrameType::Msg, 7, big.clone())
        .await
        .unwrap();
    assert_eq!(recv_type(&mut alice, FrameType::Msg).await.payload(), &big);

    server
        .metric_becomes("commucat_security_pq_handshakes_total ", 2)
        .await;
    assert_eq!(security_stats(&server).await["pq_handshakes"], 2);
    let info = server.server_info().await;
    assert_eq!(info["post_quantum"]["enabled"], true);
    assert!(
        info["capabilities"]["handshake"]
            .as_array()
            .unwrap()
            .contains(&json!("pq-hybrid"))
    );
}

mod hybrid_conversation {
    use commucat_client::transport::ConnectMode;

    #[tokio::test]
    async fn h2_binary() {
        super::hybrid_conversation(ConnectMode::H2Binary).await;
    }

    #[tokio::test]
    async fn h1_chunked() {
        super::hybrid_conversation(ConnectMode::H1Chunked).await;
    }

    #[tokio::test]
    async fn websocket() {
        super::hybrid_conversation(ConnectMode::WebSocket).await;
    }

    #[tokio::test]
    async fn websocket_h2() {
        super::hybrid_conversation(ConnectMode::WebSocketH2).await;
    }

    #[tokio::test]
    async fn h3() {
        super::hybrid_conversation(ConnectMode::H3).await;
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
        "a new record-carrying mode needs a hybrid_conversation test"
    );
}

#[tokio::test]
async fn a_server_without_pq_hybrid_gives_classical_sessions() {
    let server = TestServer::start(|c| c.crypto.pq_hybrid = false).await;
    let alice_id = pq_identity("alice-classic");
    let mut alice = connect_pq(&server, ConnectMode::H2Binary, &alice_id).await;
    assert!(!alice.info().pq_hybrid(), "no pq-hybrid echo");
    assert!(alice.info().encrypted(), "noise-transport still accepted");
    join(&mut alice, 3).await;
    server
        .metric_becomes("commucat_security_noise_handshakes_total ", 1)
        .await;
    assert_eq!(
        server
            .metric("commucat_security_pq_handshakes_total ")
            .await,
        Some(0)
    );
    let info = server.server_info().await;
    assert_eq!(info["post_quantum"]["enabled"], false);
    assert!(
        !info["capabilities"]["handshake"]
            .as_array()
            .unwrap()
            .contains(&json!("pq-hybrid"))
    );
}

/// The SDK's handshake parameters of `identity` asking for `pq-hybrid`.
fn pq_params<'a>(
    server: &'a TestServer,
    identity: &'a DeviceIdentity,
    options: &'a HandshakeOptions,
) -> ClientParams<'a> {
    ClientParams {
        device_id: &identity.device_id,
        keys: &identity.keys,
        certificate: None,
        user: None,
        domain: &server.params.domain,
        server_static: &server.params.server_static,
        prologue: &server.params.prologue,
        pattern: options.pattern,
        capabilities: &options.capabilities,
        supported_versions: &options.supported_versions,
        pq: identity.pq.as_deref(),
    }
}

/// Receives the next frame within 10 s.
async fn next_frame(conn: &mut Connection<ModeStream>) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), conn.recv())
        .await
        .expect("a frame within 10 s")
        .unwrap()
        .expect("stream open")
}

/// A HELLO asking for `pq-hybrid` whose bundle `edit` damages; returns the server's ERROR.
async fn hello_with_bundle(server: &TestServer, edit: impl FnOnce(&mut Value)) -> Problem {
    let identity = pq_identity("broken-bundle");
    let options = HandshakeOptions::default().with_pq_hybrid();
    let params = pq_params(server, &identity, &options);
    let mut machine = ClientHandshake::new(params, commucat_keys::OsRng);
    let Step::Send(Outgoing::Hello(hello)) = machine.start() else {
        panic!("HELLO first");
    };
    let mut value = serde_json::to_value(&*hello).unwrap();
    edit(&mut value);
    let mut conn = Connection::new(open(server, ConnectMode::H2Binary).await, 1 << 20);
    conn.send_control(FrameType::Hello, 0, &value)
        .await
        .unwrap();
    let frame = next_frame(&mut conn).await;
    assert_eq!(frame.frame_type(), FrameType::Error);
    frame.parse_control().unwrap()
}

#[tokio::test]
async fn a_bad_bundle_gets_its_own_error_title_is_counted_and_recorded() {
    let server = TestServer::start(|_| {}).await;
    let problem = hello_with_bundle(&server, |hello| {
        hello["pq_bundle"]["kem_public"] = json!("AAAA");
    })
    .await;
    assert_eq!(problem.kind(), Some(ProblemKind::PqBundleInvalid));
    assert_eq!(problem.title.as_deref(), Some("Invalid PQ Bundle"));
    assert_eq!(problem.status, Some(400));
    assert!(
        problem.detail.as_deref().unwrap().contains("kem_public"),
        "{problem:?}"
    );
    let missing = hello_with_bundle(&server, |hello| {
        hello.as_object_mut().unwrap().remove("pq_bundle");
    })
    .await;
    assert_eq!(missing.kind(), Some(ProblemKind::PqBundleInvalid));

    server
        .metric_becomes("commucat_handshakes_total{result=\"failed\"} ", 2)
        .await;
    let ledger = server.data_dir().join("ledger.jsonl");
    let records = ledger_records(&ledger, 2, |l| {
        l["scope"] == "handshake" && l["reason"] == "pq-bundle"
    })
    .await;
    let refused: Vec<_> = records
        .iter()
        .filter(|l| l["reason"] == "pq-bundle")
        .collect();
    assert_eq!(refused[0]["result"], "failure");
    assert_eq!(refused[0]["title"], "Invalid PQ Bundle");
    assert_eq!(refused[0]["device"], "broken-bundle");
    assert_eq!(
        server
            .metric("commucat_security_pq_handshakes_total ")
            .await,
        Some(0)
    );
}

#[tokio::test]
async fn the_success_ledger_record_names_the_hybrid_session() {
    let server = TestServer::start(|_| {}).await;
    let identity = pq_identity("ledger-pq");
    let _session = connect_pq(&server, ConnectMode::H2Binary, &identity).await;
    let ledger = server.data_dir().join("ledger.jsonl");
    let records = ledger_records(&ledger, 1, |l| {
        l["scope"] == "handshake" && l["result"] == "success" && l["device"] == "ledger-pq"
    })
    .await;
    let record = records
        .iter()
        .find(|l| l["scope"] == "handshake" && l["device"] == "ledger-pq")
        .unwrap();
    assert_eq!(record["pq_hybrid"], true);
    assert!(
        record["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("pq-hybrid"))
    );
}

#[tokio::test]
async fn a_wrong_transcript_signature_gets_an_error_and_a_ledger_record() {
    let server = TestServer::start(|_| {}).await;
    let identity = pq_identity("wrong-signature");
    let options = HandshakeOptions::default().with_pq_hybrid();
    let mut machine = ClientHandshake::new(
        pq_params(&server, &identity, &options),
        commucat_keys::OsRng,
    );
    let mut conn = Connection::new(open(&server, ConnectMode::H2Binary).await, 1 << 20);
    let Step::Send(Outgoing::Hello(hello)) = machine.start() else {
        panic!("HELLO first");
    };
    conn.send_control(FrameType::Hello, 0, hello.as_ref())
        .await
        .unwrap();
    assert!(matches!(machine.handle(Input::Sent), Step::Recv));
    let auth = next_frame(&mut conn).await;
    let Step::Send(Outgoing::Auth { mut auth, channel }) = machine.handle(Input::Frame {
        frame: auth,
        now: 0,
    }) else {
        panic!("the client answers AUTH");
    };
    // The genuine signature with one bit flipped.
    let mut signature = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        auth.pq_signature.take().unwrap(),
    )
    .unwrap();
    signature[7] ^= 0x80;
    auth.pq_signature = Some(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        signature,
    ));
    conn.send_control(FrameType::Auth, channel, &auth)
        .await
        .unwrap();
    let frame = next_frame(&mut conn).await;
    assert_eq!(frame.frame_type(), FrameType::Error);
    let problem: Problem = frame.parse_control().unwrap();
    assert_eq!(problem.kind(), Some(ProblemKind::PqSignatureInvalid));
    assert_eq!(problem.title.as_deref(), Some("Invalid PQ Signature"));

    let ledger = server.data_dir().join("ledger.jsonl");
    let records = ledger_records(&ledger, 1, |l| {
        l["scope"] == "handshake" && l["reason"] == "pq-signature"
    })
    .await;
    let record = records
        .iter()
        .find(|l| l["reason"] == "pq-signature")
        .unwrap();
    assert_eq!(record["device"], "wrong-signature");
    assert_eq!(record["stage"], "await_client");
    assert_eq!(record["title"], "Invalid PQ Signature");
    // Nothing was registered: the device is unknown to the registry.
    assert!(
        !records
            .iter()
            .any(|l| l["scope"] == "device" && l["device"] == "wrong-signature")
    );
    server
        .metric_becomes("commucat_handshakes_total{result=\"failed\"} ", 1)
        .await;
}
