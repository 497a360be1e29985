//! The transport manager through the real server: a `/connect` over one transport that dies
//! before its handshake, then a handshake completed on another from the same network, is one
//! censorship deflection (security stats and `/metrics`), and the assist answer ranks the
//! transport that worked first with its measured handshake time.

use commucat_client::transport::{ConnectMode, open_mode};

use super::*;

#[tokio::test]
async fn a_failed_transport_then_another_is_a_deflection_and_reranks_the_relay() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let deflections = "commucat_security_censorship_deflections_total ";
    server.metric_becomes(deflections, 0).await;

    // HTTP/1.1 chunked `/connect`, closed before any handshake frame: a link failure on
    // `binary/h1` (the server counts the failed handshake).
    let dead = open_mode(
        ConnectMode::H1Chunked,
        server.addr,
        "localhost",
        &server.trust,
    )
    .await
    .unwrap();
    drop(dead);
    server
        .metric_becomes("commucat_handshakes_total{result=\"failed\"} ", 1)
        .await;
    assert_eq!(server.metric(deflections).await, Some(0));

    // The same network completes a handshake over WebSocket (HTTP/1.1): a deflection.
    let identity = DeviceIdentity::generate("deflector-1").with_handle("deflector_1");
    let stream = open_mode(
        ConnectMode::WebSocket,
        server.addr,
        "localhost",
        &server.trust,
    )
    .await
    .unwrap();
    let session = Session::handshake(
        stream,
        &identity,
        &server.params,
        &HandshakeOptions::default(),
    )
    .await
    .unwrap();
    server.metric_becomes(deflections, 1).await;
    let bearer = session.info().session_id.clone();
    let stats = rest
        .call(Method::GET, "/api/security-stats", None, None)
        .await
        .body;
    assert_eq!(stats["censorship_deflections"], 1, "{stats}");

    // Assist: the relay is offered over the transport that worked from this network, with
    // its measured handshake time; the failed one ranks last.
    let answer = rest
        .post("/api/p2p/assist", Some(&bearer), &json!({}))
        .await;
    let body = answer.body.clone();
    let assist: deployed::P2pAssistResponse = answer.decode();
    let relay = assist.transports.last().unwrap();
    assert_eq!(relay.path_id, "relay");
    assert_eq!(relay.transport, "websocket/h1", "{body}");
    assert!(relay.latency.ends_with(" ms"), "{body}");
    let ranked = body["relay_transports"].as_array().unwrap();
    assert_eq!(ranked.len(), 8, "{body}");
    assert_eq!(ranked[0]["id"], "websocket/h1");
    assert_eq!(ranked[0]["measured_on_network"], true);
    assert_eq!(ranked[0]["record"]["successes"], 1);
    let last = ranked.last().unwrap();
    assert_eq!(last["id"], "binary/h1", "{body}");
    assert_eq!(last["record"]["failures"], 1);

    // Another success from the network, its failure already answered, is not another
    // deflection (the outcome is recorded before the handshake counter moves).
    let again = server.connect("deflector-2").await;
    server
        .metric_becomes("commucat_handshakes_total{result=\"ok\"} ", 2)
        .await;
    drop(again);
    drop(session);
    let stats = rest
        .call(Method::GET, "/api/security-stats", None, None)
        .await
        .body;
    assert_eq!(stats["censorship_deflections"], 1, "{stats}");
}
