//! Connection bounds against hostile clients, each while a bystander completes a handshake and
//! chats: connections per address, idle connections (an HTTP/2 connection that never opens a
//! stream), slowloris on the TLS handshake, on HTTP/1.1 request heads and on REST bodies.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::FrameType;
use commucat_client::transport::{self, H2Stream};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestServer, WAIT};

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Two devices connecting from `from` complete their handshakes, JOIN a channel and exchange
/// a MSG.
async fn bystanders_chat(server: &TestServer, from: IpAddr, tag: &str) {
    let mut a = session_from(server, from, &format!("{tag}-a")).await;
    let mut b = session_from(server, from, &format!("{tag}-b")).await;
    for session in [&mut a, &mut b] {
        session
            .send_control(FrameType::Join, 11, &json!({"members": [], "relay": true}))
            .await
            .unwrap();
    }
    // b's JOIN notice lists both, so a's MSG reaches b.
    wait_for(&mut b, "JOIN notice of two", |f| {
        f.frame_type() == FrameType::Join
            && f.parse_control::<commucat_ccp::control::Join>()
                .is_ok_and(|j| j.members.len() == 2)
    })
    .await;
    a.send_bytes(FrameType::Msg, 11, Bytes::from_static(b"still served"))
        .await
        .unwrap();
    let msg = wait_for(&mut b, "MSG", |f| f.frame_type() == FrameType::Msg).await;
    assert_eq!(msg.payload().as_ref(), b"still served");
}

async fn session_from(server: &TestServer, from: IpAddr, device: &str) -> Session<H2Stream> {
    let stream = transport::open_from(
        Some(from),
        server.addr,
        "localhost",
        &server.trust,
        "/connect",
    )
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

async fn wait_for(
    session: &mut Session<H2Stream>,
    what: &str,
    wanted: impl Fn(&commucat_ccp::Frame) -> bool,
) -> commucat_ccp::Frame {
    loop {
        let frame = tokio::time::timeout(WAIT, session.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
            .unwrap()
            .expect("stream open");
        if wanted(&frame) {
            return frame;
        }
    }
}

/// `commucat_bound_refusals_total{bound}` as `/metrics` reports it (asked from `from`).
async fn refusals(server: &TestServer, from: IpAddr, bound: &str) -> u64 {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&server.pem).unwrap()])
        .resolve("localhost", server.addr)
        .local_address(from)
        .build()
        .unwrap();
    let text = client
        .get(format!("https://localhost:{}/metrics", server.addr.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("commucat_bound_refusals_total{{bound=\"{bound}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|n| n.parse().unwrap())
        .unwrap_or_else(|| panic!("{prefix} missing"))
}

/// TLS to the server from `from` over HTTP/1.1.
async fn tls_h1(server: &TestServer, from: IpAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    transport::tls_connect(
        Some(from),
        server.addr,
        "localhost",
        &server.trust,
        b"http/1.1",
    )
    .await
    .unwrap()
}

/// Reads until the server closes the stream (EOF or reset); panics after [`WAIT`].
async fn closed_by_server(stream: &mut (impl AsyncReadExt + Unpin), what: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => panic!("{what}: still open after {WAIT:?}"),
            Ok(Ok(0) | Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Two connections per address: a third from the same address is closed at once (and
/// counted); another address is served; a freed place admits the address again.
#[tokio::test]
async fn connections_per_address_are_capped() {
    let server = TestServer::start(|c| c.bounds.connections_per_ip = 2).await;
    let held_a = tls_h1(&server, ip(1)).await;
    let _held_b = tls_h1(&server, ip(1)).await;
    let third =
        transport::tls_connect(Some(ip(1)), server.addr, "localhost", &server.trust, b"h2").await;
    let refused = match third {
        Err(_) => true,
        // The handshake may complete from buffered bytes before the close is seen.
        Ok(mut tls) => closed_by_server(&mut tls, "third connection")
            .await
            .is_empty(),
    };
    assert!(refused, "third connection from one address was served");

    bystanders_chat(&server, ip(2), "other-address").await;
    assert!(refusals(&server, ip(3), "connections_per_ip").await >= 1);

    drop(held_a);
    // The server frees the place once it sees the close: retry until admitted.
    let admitted = tokio::time::timeout(WAIT, async {
        loop {
            let attempt = transport::open_from(
                Some(ip(1)),
                server.addr,
                "localhost",
                &server.trust,
                "/connect",
            )
            .await;
            if let Ok(stream) = attempt {
                let session = Session::handshake(
                    stream,
                    &DeviceIdentity::generate("readmitted"),
                    &server.params,
                    &HandshakeOptions::default(),
                )
                .await;
                if session.is_ok() {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(admitted.is_ok(), "freed place not given back");
}

/// An HTTP/2 connection that never opens a stream is closed after the idle time-out although
/// it answers every PING; a session's connection (a stream in progress) is not.
#[tokio::test]
async fn idle_http2_connection_is_closed() {
    let server = TestServer::start(|c| {
        c.bounds.idle_connection_timeout = Duration::from_secs(1);
        c.session.keepalive = Duration::from_secs(1);
    })
    .await;
    let mut a = session_from(&server, ip(1), "busy-a").await;
    let tls = transport::tls_connect(None, server.addr, "localhost", &server.trust, b"h2")
        .await
        .unwrap();
    let (_client, connection) = h2::client::handshake(tls).await.unwrap();
    // The connection future ends when the server closes the connection.
    let ended = tokio::time::timeout(WAIT, connection).await;
    assert!(
        ended.is_ok(),
        "idle HTTP/2 connection still open after {WAIT:?}"
    );
    // a's session outlived the idle time-out on its own connection.
    a.send_control(FrameType::Join, 4, &json!({"members": [], "relay": true}))
        .await
        .unwrap();
    wait_for(&mut a, "ACK", |f| f.frame_type() == FrameType::Ack).await;
    bystanders_chat(&server, ip(2), "after-idle").await;
    assert!(refusals(&server, ip(3), "idle_connection_timeout").await >= 1);
}

/// Clients that start a TLS handshake and never finish it are dropped after
/// `limits.tls_handshake_timeout`; a bystander is served meanwhile.
#[tokio::test]
async fn slowloris_on_tls_is_dropped() {
    let server =
        TestServer::start(|c| c.limits.tls_handshake_timeout = Duration::from_secs(1)).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        // The first bytes of a TLS record header, then nothing.
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
        stalled.push(tcp);
    }
    bystanders_chat(&server, ip(2), "during-tls-slowloris").await;
    for tcp in &mut stalled {
        closed_by_server(tcp, "stalled TLS handshake").await;
    }
}

/// A client that trickles its HTTP/1.1 request head is closed after the idle time-out (no
/// request in progress until the head is complete); a bystander is served meanwhile.
#[tokio::test]
async fn slowloris_on_http1_headers_is_closed() {
    let server =
        TestServer::start(|c| c.bounds.idle_connection_timeout = Duration::from_secs(1)).await;
    let tls = tls_h1(&server, ip(1)).await;
    let (mut read, mut write) = tokio::io::split(tls);
    let trickle = tokio::spawn(async move {
        write
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
            .await
            .unwrap();
        // One header line every 200 ms, for at most a minute, until the server closes.
        for i in 0..300 {
            let line = format!("x-slow-{i}: .\r\n");
            if write.write_all(line.as_bytes()).await.is_err() || write.flush().await.is_err() {
                return;
            }
            // The trickle is the attack under test.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    bystanders_chat(&server, ip(2), "during-header-slowloris").await;
    let seen = closed_by_server(&mut read, "trickled request head").await;
    assert!(
        !String::from_utf8_lossy(&seen).contains("200 OK"),
        "the trickled request was served"
    );
    trickle.abort();
    assert!(refusals(&server, ip(3), "idle_connection_timeout").await >= 1);
}

/// A REST body that does not arrive within `bounds.rest_body_timeout` gets 408 problem+json;
/// a bystander is served meanwhile.
#[tokio::test]
async fn slowloris_on_rest_body_gets_408() {
    let server = TestServer::start(|c| c.bounds.rest_body_timeout = Duration::from_secs(1)).await;
    let mut tls = tls_h1(&server, ip(1)).await;
    tls.write_all(
        b"POST /api/pair/claim HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"pair_code\":",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    bystanders_chat(&server, ip(2), "during-body-slowloris").await;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = tokio::time::timeout(WAIT, async {
        loop {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without a response");
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if text.contains("\r\n\r\n") && text.contains("Request Timeout\"") {
                return;
            }
        }
    })
    .await;
    assert!(head_end.is_ok(), "no 408 within {WAIT:?}");
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 408"), "{text}");
    assert!(
        text.contains("content-type: application/problem+json"),
        "{text}"
    );
    assert!(refusals(&server, ip(3), "rest_body_timeout").await >= 1);
}
