//! Readiness and metrics counting real events.

use super::*;

/// The value of the metric line starting with `line_prefix` (`GET /metrics` without ALPN).
async fn metric(rest: &Rest, line_prefix: &str) -> u64 {
    let answer = rest
        .clients
        .call(Transport::Http1NoAlpn, Method::GET, "/metrics", None, None)
        .await;
    answer.expect(StatusCode::OK);
    assert_eq!(
        answer.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = answer.text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .unwrap_or_else(|| panic!("{line_prefix} missing in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls `metric` until it satisfies `done` (for at most 10 s).
async fn metric_becomes(rest: &Rest, line_prefix: &str, done: impl Fn(u64) -> bool) {
    eventually(line_prefix, Duration::from_secs(10), || async {
        done(metric(rest, line_prefix).await).then_some(())
    })
    .await;
}

#[tokio::test]
async fn readyz_and_metrics_count_real_events() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let ready: contract::Health = rest.call(Method::GET, "/readyz", None, None).await.decode();
    assert_eq!(ready.status, "ready");

    let ok = "commucat_handshakes_total{result=\"ok\"} ";
    let failed = "commucat_handshakes_total{result=\"failed\"} ";
    let active = "commucat_sessions_active ";
    let delivered = "commucat_frames_delivered_total ";
    assert_eq!(metric(&rest, ok).await, 0);

    let mut alice = server.connect("alice-1").await;
    let mut bob = server.connect("bob-1").await;
    // A handshake against the wrong server key fails on the server.
    let mut wrong = server.params.clone();
    wrong.server_static = [9; 32];
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let refused = Session::handshake(
        stream,
        &DeviceIdentity::generate("mallory-1"),
        &wrong,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(refused.is_err());

    alice.join(7, true).await;
    bob.join_with(7, &json!({"members": ["alice-1", "bob-1"], "relay": true}))
        .await;
    let before = metric(&rest, delivered).await;
    let relayed_before = metric(&rest, "commucat_relay_latency_seconds_count ").await;
    alice.say(7, "hi").await;
    bob.recv_on(FrameType::Msg, 7).await;
    assert!(metric(&rest, delivered).await > before);
    // The MSG was counted in from alice and out to bob, and its relay time recorded.
    assert!(metric(&rest, "commucat_frames_received_total{type=\"msg\"} ").await >= 1);
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"msg\"} ").await >= 1);
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"ack\"} ").await >= 1);
    assert_eq!(
        metric(&rest, "commucat_relay_latency_seconds_count ").await,
        relayed_before + 1
    );
    assert_eq!(
        metric(&rest, "commucat_handshake_duration_seconds_count ").await,
        2
    );
    assert_eq!(
        metric(
            &rest,
            "commucat_handshake_duration_seconds_bucket{le=\"+Inf\"} "
        )
        .await,
        2
    );
    assert_eq!(
        metric(&rest, "commucat_security_noise_handshakes_total ").await,
        2
    );
    // Features the server does not implement have no event to count: no series at all.
    let text = rest
        .clients
        .call(Transport::Http1NoAlpn, Method::GET, "/metrics", None, None)
        .await
        .text();
    // Classical sessions: no post-quantum handshake (the pq-hybrid ones are counted in
    // `pq_hybrid.rs`).
    assert_eq!(
        metric(&rest, "commucat_security_pq_handshakes_total ").await,
        0
    );
    // No session asked for `fec`: no FEC symbol generated (sessions with it: `fec.rs`).
    assert_eq!(
        metric(&rest, "commucat_security_fec_packets_total ").await,
        0
    );
    for unmeasured in [
        "commucat_security_multipath_sessions",
        "commucat_security_average_paths",
    ] {
        assert!(!text.contains(unmeasured), "{unmeasured} exported:\n{text}");
    }
    assert!(metric(&rest, "commucat_connections_accepted_total ").await >= 3);
    assert!(metric(&rest, "commucat_connections_open ").await >= 2);
    assert_eq!(metric(&rest, "commucat_online_devices ").await, 2);
    assert_eq!(metric(&rest, "commucat_mailbox_frames ").await, 0);

    assert_eq!(metric(&rest, ok).await, 2);
    metric_becomes(&rest, failed, |n| n >= 1).await;
    // Handshake frames count by type too: three HELLOs, two AUTH answers, mallory's ERROR.
    assert_eq!(
        metric(&rest, "commucat_frames_received_total{type=\"hello\"} ").await,
        3
    );
    assert_eq!(
        metric(&rest, "commucat_frames_sent_total{type=\"auth\"} ").await,
        2
    );
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"error\"} ").await >= 1);
    // The ledger's three handshake records reach the file; none were dropped.
    metric_becomes(&rest, "commucat_ledger_records_written_total ", |n| n >= 3).await;
    assert_eq!(
        metric(&rest, "commucat_ledger_records_dropped_total ").await,
        0
    );
    assert_eq!(metric(&rest, "commucat_sessions_opened_total ").await, 2);
    assert_eq!(metric(&rest, active).await, 2);
    bob.close();
    metric_becomes(&rest, active, |n| n == 1).await;
}
