//! The HTTP/3 listener (`server.http3`): advertised with `Alt-Svc` on the TCP listener's
//! responses, absent when off, REST over HTTP/3, its connection and stream bounds, and the
//! drain on shutdown. Sessions in every scenario run over HTTP/3 in `connect_modes` (mode
//! `h3`) and `pq_hybrid`.

use std::sync::Arc;
use std::time::Duration;

use commucat_client::transport::{ConnectMode, H3Connection, ModeStream, open_mode};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};

use crate::common::TestServer;
use crate::common::poll::eventually;

const WAIT: Duration = Duration::from_secs(10);

async fn h3_server(tweak: impl FnOnce(&mut commucat_server::Config)) -> TestServer {
    TestServer::start(|c| {
        c.server.http3 = true;
        tweak(c);
    })
    .await
}

async fn h3_session(server: &TestServer, device: &str) -> Session<ModeStream> {
    let stream = open_mode(ConnectMode::H3, server.addr, "localhost", &server.trust)
        .await
        .unwrap();
    Session::handshake(
        stream,
        &DeviceIdentity::generate(device),
        &server.params,
        &HandshakeOptions::default(),
    )
    .await
    .unwrap()
}

async fn get_header(server: &TestServer, http1: bool, name: &str) -> Option<String> {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&server.pem).unwrap()])
        .resolve("localhost", server.addr);
    if http1 {
        builder = builder.http1_only();
    }
    let response = builder
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/healthz", server.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.version(),
        if http1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        }
    );
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn alt_svc_is_advertised_on_http2_and_http11() {
    let server = h3_server(|_| {}).await;
    let expected = format!("h3=\":{}\"; ma=86400", server.addr.port());
    for http1 in [false, true] {
        assert_eq!(
            get_header(&server, http1, "alt-svc").await.as_deref(),
            Some(expected.as_str()),
            "http1: {http1}"
        );
    }
}

#[tokio::test]
async fn http3_off_binds_no_udp_socket_and_advertises_nothing() {
    let server = TestServer::start(|_| {}).await;
    for http1 in [false, true] {
        assert_eq!(get_header(&server, http1, "alt-svc").await, None);
    }
    // The UDP port of the same number is free: the server holds no socket on it.
    let udp = std::net::UdpSocket::bind(server.addr);
    assert!(udp.is_ok(), "{udp:?}");

    // With HTTP/3 on, it is taken (by the server's QUIC endpoint).
    let on = h3_server(|_| {}).await;
    let taken = std::net::UdpSocket::bind(on.addr).unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn rest_answers_over_http3() {
    let server = h3_server(|_| {}).await;
    let connection = H3Connection::connect(server.addr, "localhost", &server.trust)
        .await
        .unwrap();
    let (status, body) = connection.get("/api/server-info").await.unwrap();
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["domain"], "chat.test");
    let (status, _) = connection.get("/no-such-page").await.unwrap();
    assert_eq!(status, 404);
}

/// `bounds.connections_per_ip = 1`: a second QUIC connection from the address is refused
/// while the first is open (counted as a refusal), and accepted once it has gone.
#[tokio::test]
async fn connections_per_address_are_bounded() {
    let server = h3_server(|c| c.bounds.connections_per_ip = 1).await;
    let first = h3_session(&server, "alice-3").await;
    let refused = H3Connection::connect(server.addr, "localhost", &server.trust).await;
    let error = refused.unwrap_err().to_string();
    assert!(error.to_ascii_lowercase().contains("refused"), "{error}");
    server
        .metric_becomes(
            "commucat_bound_refusals_total{bound=\"connections_per_ip\"} ",
            1,
        )
        .await;
    drop(first);
    eventually("a new connection once the first is gone", WAIT, || async {
        H3Connection::connect(server.addr, "localhost", &server.trust)
            .await
            .ok()
    })
    .await;
}

/// `limits.max_connections = 2`: a third QUIC connection is refused (UDP has no backlog to
/// wait in); the TCP listener's connections are counted apart.
#[tokio::test]
async fn connections_are_bounded() {
    let server = h3_server(|c| c.limits.max_connections = 2).await;
    let _one = h3_session(&server, "one-3").await;
    let _two = h3_session(&server, "two-3").await;
    let third = H3Connection::connect(server.addr, "localhost", &server.trust).await;
    let error = third.unwrap_err().to_string();
    assert!(error.to_ascii_lowercase().contains("refused"), "{error}");
    assert!(get_header(&server, false, "alt-svc").await.is_some());
}

/// One connection may have 16 request streams open; a 17th waits (QUIC stream flow control)
/// until one of them has ended, then proceeds.
#[tokio::test]
async fn concurrent_streams_per_connection_are_bounded() {
    let server = h3_server(|_| {}).await;
    let connection = Arc::new(
        H3Connection::connect(server.addr, "localhost", &server.trust)
            .await
            .unwrap(),
    );
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(connection.open("/connect").await.unwrap());
    }
    let waiting = {
        let connection = Arc::clone(&connection);
        tokio::spawn(async move { connection.open("/connect").await })
    };
    // The server has accepted all 16 (each answered 200) and none has ended: the 17th cannot
    // have been opened (no stream credit is given back before one ends).
    for stream in &mut open {
        let status = tokio::time::timeout(WAIT, stream.status()).await.unwrap();
        assert_eq!(status.unwrap(), 200);
    }
    assert!(!waiting.is_finished(), "a 17th stream opened beside 16");
    open.clear();
    let stream = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the 17th stream opens once others ended")
        .unwrap();
    assert!(stream.is_ok(), "{stream:?}");
}

/// Shutdown drains HTTP/3 sessions too: the session's stream ends and the server stops.
#[tokio::test]
async fn shutdown_ends_http3_sessions() {
    let mut server = h3_server(|_| {}).await;
    let mut alice = h3_session(&server, "alice-d").await;
    let stopping = async {
        server.stop().await;
    };
    let ended = async {
        loop {
            match tokio::time::timeout(WAIT, alice.recv()).await {
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None) | Err(_)) => break,
                Err(elapsed) => panic!("session still open: {elapsed}"),
            }
        }
    };
    tokio::join!(stopping, ended);
}

/// A QUIC connection with no request in progress for `bounds.idle_connection_timeout` is
/// closed by the server (counted as an idle refusal); one carrying a session stays open.
#[tokio::test]
async fn idle_http3_connections_are_closed() {
    let server = h3_server(|c| c.bounds.idle_connection_timeout = Duration::from_secs(1)).await;
    let mut alice = h3_session(&server, "alice-i").await;
    let idle = H3Connection::connect(server.addr, "localhost", &server.trust)
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, idle.quic().closed())
        .await
        .expect("the idle connection is closed");
    let reason = closed.to_string();
    assert!(
        !reason.contains("timed out"),
        "closed by the server: {reason}"
    );
    server
        .metric_becomes(
            "commucat_bound_refusals_total{bound=\"idle_connection_timeout\"} ",
            1,
        )
        .await;
    // The session's connection is still in use.
    let seq = alice
        .send_control(
            commucat_ccp::FrameType::Join,
            3,
            &serde_json::json!({"members": [], "relay": true}),
        )
        .await
        .unwrap();
    loop {
        let frame = tokio::time::timeout(WAIT, alice.recv())
            .await
            .unwrap()
            .unwrap()
            .expect("session open");
        if frame.frame_type() == commucat_ccp::FrameType::Ack {
            let ack: commucat_ccp::control::Ack = frame.parse_control().unwrap();
            assert_eq!(ack.ack, u64::from(seq));
            break;
        }
    }
}
