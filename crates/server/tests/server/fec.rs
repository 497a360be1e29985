//! `fec` sessions against the real server: two SDK clients chat with every frame, both ways,
//! carried as RaptorQ symbols (plain and inside Noise records) in every binary `/connect` mode;
//! the server counts the symbols it generates; the text modes refuse `fec`.

use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::FrameType;
use commucat_client::transport::{ConnectMode, ModeStream, open_mode};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use serde_json::json;

use crate::common::TestServer;
use crate::common::modes::{join, recv_type, security_stats};

async fn connect(
    server: &TestServer,
    mode: ConnectMode,
    device_id: &str,
    options: &HandshakeOptions,
) -> Result<Session<ModeStream>, commucat_client::ClientError> {
    let stream = open_mode(mode, server.addr, "localhost", &server.trust)
        .await
        .unwrap();
    let identity = DeviceIdentity::generate(device_id);
    Session::handshake(stream, &identity, &server.params, options).await
}

/// The server's FEC symbol counter once it is non-zero (it is incremented right after a write,
/// which the client may see first).
async fn fec_packets(server: &TestServer) -> u64 {
    for _ in 0..200 {
        let n = server
            .metric("commucat_security_fec_packets_total ")
            .await
            .unwrap();
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("commucat_security_fec_packets_total stayed 0");
}

/// Two `fec` devices join a channel and exchange a small and a 200 KB message (174 source
/// symbols) both ways.
async fn fec_conversation(mode: ConnectMode, encrypted: bool) {
    let server = TestServer::start(|_| {}).await;
    let mut options = HandshakeOptions::default().with_fec();
    if encrypted {
        options = options.with_noise_transport();
    }
    let mut alice = connect(&server, mode, "alice-fec", &options).await.unwrap();
    let mut bob = connect(&server, mode, "bob-fec", &options).await.unwrap();
    for session in [&alice, &bob] {
        assert!(session.info().fec());
        assert_eq!(session.info().encrypted(), encrypted);
    }
    join(&mut alice, 7).await;
    join(&mut bob, 7).await;
    alice
        .send_bytes(FrameType::Msg, 7, Bytes::from_static(b"hello over fec"))
        .await
        .unwrap();
    assert_eq!(
        recv_type(&mut bob, FrameType::Msg).await.payload().as_ref(),
        b"hello over fec"
    );
    let big = Bytes::from((0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    bob.send_bytes(FrameType::Msg, 7, big.clone())
        .await
        .unwrap();
    assert_eq!(recv_type(&mut alice, FrameType::Msg).await.payload(), &big);

    // The server generated symbols for at least: 2 ACKs of JOIN, the small MSG (1 source +
    // 1 repair) and the big one (174 + 61).
    let n = fec_packets(&server).await;
    assert!(n >= 2 + 2 + 235, "{n}");
    let stats = security_stats(&server).await["fec_packets"]
        .as_u64()
        .unwrap();
    assert!(stats >= n, "security-stats {stats} < metric {n}");
    assert!(
        server.server_info().await["capabilities"]["handshake"]
            .as_array()
            .unwrap()
            .contains(&json!("fec"))
    );
}

mod fec_conversation {
    use commucat_client::transport::ConnectMode;

    #[tokio::test]
    async fn h2_binary() {
        super::fec_conversation(ConnectMode::H2Binary, false).await;
    }

    #[tokio::test]
    async fn h2_binary_noise_transport() {
        super::fec_conversation(ConnectMode::H2Binary, true).await;
    }

    #[tokio::test]
    async fn h1_chunked() {
        super::fec_conversation(ConnectMode::H1Chunked, false).await;
    }

    #[tokio::test]
    async fn websocket_noise_transport() {
        super::fec_conversation(ConnectMode::WebSocket, true).await;
    }
}

#[tokio::test]
async fn sessions_without_fec_generate_no_symbols() {
    let server = TestServer::start(|_| {}).await;
    let mut alice = connect(
        &server,
        ConnectMode::H2Binary,
        "alice-plain",
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    assert!(!alice.info().fec());
    join(&mut alice, 3).await;
    assert_eq!(
        server.metric("commucat_security_fec_packets_total ").await,
        Some(0)
    );
}

#[tokio::test]
async fn text_modes_refuse_fec_with_an_error_frame() {
    let server = TestServer::start(|_| {}).await;
    for mode in [ConnectMode::Sse, ConnectMode::Ndjson] {
        let err = connect(
            &server,
            mode,
            "carol-fec",
            &HandshakeOptions::default().with_fec(),
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert!(err.to_string().contains("fec"), "{mode:?}: {err}");
    }
}
