//! Every scenario against the real server on 127.0.0.1:0 (and the echo fixture), with small
//! counts: the reports must count every message (nothing lost where nothing may be lost, every
//! undelivered message counted where the fixture loses them) and show real, non-zero work. No
//! timing is asserted, only bounds that follow from the run's own parameters.

use std::net::SocketAddr;

use commucat_bench::Target;
use commucat_bench::echo::EchoServer;
use commucat_client::{ServerParams, TlsTrust};
use serde_json::Value;

use crate::common::{MEMORY, num, run, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_scenario_counts_handshakes() {
    let _shared = MEMORY.read().await;
    let s = server().await;
    let r = run(&s.target, &["handshake", "--loops", "2", "--count", "6"]).await;
    assert_eq!(num(&r, "handshakes"), 6.0);
    assert_eq!(num(&r, "failures"), 0.0);
    assert_eq!(num(&r, "latency.count"), 6.0);
    assert!(num(&r, "handshakes_per_s") > 0.0);
    assert!(num(&r, "server_cpu_us_per_handshake") > 0.0);
    let r = run(
        &s.target,
        &[
            "handshake",
            "--loops",
            "2",
            "--count",
            "4",
            "--ik",
            "--fresh",
        ],
    )
    .await;
    assert_eq!(num(&r, "handshakes"), 4.0);
    assert_eq!(num(&r, "failures"), 0.0);
    assert_eq!(num(&r, "latency.count"), 4.0);
    assert!(num(&r, "server_cpu_us_per_handshake") > 0.0);
    assert_eq!(r["pattern"], "IK");
}

/// `--pq`: hybrid handshakes (a classical session would count as a failure) and a hybrid relay
/// phase beside the classical `noise-transport` one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pq_handshakes_and_hybrid_relay() {
    let _shared = MEMORY.read().await;
    let s = server().await;
    let r = run(
        &s.target,
        &["handshake", "--loops", "2", "--count", "4", "--pq"],
    )
    .await;
    assert_eq!(r["pq_hybrid"], true);
    assert_eq!(num(&r, "handshakes"), 4.0);
    assert_eq!(num(&r, "failures"), 0.0);
    assert!(num(&r, "server_cpu_us_per_handshake") > 0.0);
    let r = run(
        &s.target,
        &[
            "relay",
            "--pairs",
            "1",
            "--size",
            "100",
            "--duration",
            "30",
            "--count",
            "100",
            "--transport",
            "noise",
            "--pq",
        ],
    )
    .await;
    for phase in ["noise", "hybrid"] {
        assert_eq!(num(&r, &format!("{phase}.sent")), 200.0, "{phase}");
        assert_nothing_lost(&r, phase);
    }
    assert!(num(&r, "hybrid_pct_of_noise") > 0.0);
    assert!(r["plain"].is_null());
}

/// A fixture on the echo's stack serving `router` on the server's certificate; stops when the
/// sender is dropped or sent to.
async fn fixture(
    data_dir: &std::path::Path,
    router: axum::Router,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let echo = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir)
        .await
        .unwrap();
    let addr = echo.addr.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(echo.serve(router, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Checks a phase where nothing may be lost: every message sent was delivered once, and the
/// latency histogram holds exactly one entry per message.
fn assert_nothing_lost(r: &Value, phase: &str) {
    let sent = num(r, &format!("{phase}.sent"));
    assert!(sent > 0.0, "{phase}");
    assert_eq!(num(r, &format!("{phase}.errors")), 0.0, "{phase}");
    assert_eq!(num(r, &format!("{phase}.delivered")), sent, "{phase}");
    assert_eq!(num(r, &format!("{phase}.lost")), 0.0, "{phase}");
    assert_eq!(num(r, &format!("{phase}.latency.count")), sent, "{phase}");
    assert!(num(r, &format!("{phase}.msgs_per_s")) > 0.0, "{phase}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_scenario_delivers_plain_noise_and_echo() {
    let _shared = MEMORY.read().await;
    let s = server().await;
    let echo = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &s.data_dir)
        .await
        .unwrap();
    let echo_addr = echo.addr.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let echo_task = tokio::spawn(echo.run(async {
        let _ = stopped.await;
    }));
    // Maximum rate: 4 senders of 200 messages each (the 30 s bound is never reached).
    let r = run(
        &s.target,
        &[
            "relay",
            "--pairs",
            "2",
            "--size",
            "100",
            "--duration",
            "30",
            "--count",
            "200",
            "--transport",
            "both",
            "--echo",
            &echo_addr,
        ],
    )
    .await;
    for phase in ["echo", "plain", "noise"] {
        assert_eq!(num(&r, &format!("{phase}.sent")), 800.0, "{phase}");
        assert_nothing_lost(&r, phase);
        assert!(r[phase]["scheduled"].is_null() && r[phase]["unsent"].is_null());
    }
    for phase in ["plain", "noise"] {
        assert!(
            num(&r, &format!("{phase}.server_cpu_us_per_msg")) > 0.0,
            "{phase}"
        );
    }
    assert!(r["echo"]["server_cpu_us_per_msg"].is_null());
    assert!(num(&r, "plain_pct_of_echo") > 0.0);
    assert!(num(&r, "noise_pct_of_echo") > 0.0);
    // Open loop at a low target rate: 2 senders × 100 msgs/s × 1 s, every slot sent and
    // delivered, and the rate is over the sending second (never above what was offered).
    let r = run(
        &s.target,
        &[
            "relay",
            "--pairs",
            "1",
            "--rate",
            "200",
            "--duration",
            "1",
            "--echo",
            &echo_addr,
        ],
    )
    .await;
    assert_eq!(num(&r, "offered_rate"), 200.0);
    for phase in ["echo", "plain"] {
        assert_eq!(num(&r, &format!("{phase}.scheduled")), 200.0, "{phase}");
        assert_eq!(num(&r, &format!("{phase}.sent")), 200.0, "{phase}");
        assert_eq!(num(&r, &format!("{phase}.unsent")), 0.0, "{phase}");
        assert_nothing_lost(&r, phase);
        assert_eq!(num(&r, &format!("{phase}.measured_s")), 1.0, "{phase}");
        assert!(num(&r, &format!("{phase}.msgs_per_s")) <= 200.0, "{phase}");
    }
    assert!(num(&r, "plain.server_cpu_us_per_msg") > 0.0);
    let _ = stop.send(());
    echo_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_scenario_counts_every_undelivered_message() {
    let _shared = MEMORY.read().await;
    let s = server().await;
    // Takes every message and never answers.
    let (black_hole, _stop_hole) = fixture(
        &s.data_dir,
        axum::Router::new().route(
            "/connect",
            axum::routing::post(|body: axum::body::Body| async move {
                let _held = body;
                std::future::pending::<()>().await;
            }),
        ),
    )
    .await;
    // Ends every stream at once.
    let (closer, _stop_closer) = fixture(
        &s.data_dir,
        axum::Router::new().route("/connect", axum::routing::post(|| async { "" })),
    )
    .await;
    let drain_us = 1e6;
    let all_lost = |r: &Value, offered: f64| {
        assert_eq!(num(r, "echo.delivered"), 0.0);
        assert_eq!(num(r, "echo.lost"), num(r, "echo.sent"));
        assert_eq!(num(r, "echo.msgs_per_s"), 0.0);
        // Every message is in the percentiles, at no less than the drain (it was due before
        // the end of the sending phase and never arrived by the end of the drain).
        assert_eq!(num(r, "echo.latency.count"), offered);
        assert!(num(r, "echo.latency.min_us") >= drain_us, "{r}");
    };
    // Maximum rate, 2 senders × 10 messages into the black hole.
    let r = run(
        &s.target,
        &[
            "relay",
            "--pairs",
            "1",
            "--count",
            "10",
            "--duration",
            "1",
            "--drain",
            "1",
            "--echo",
            &black_hole,
        ],
    )
    .await;
    assert_eq!(num(&r, "echo.sent"), 20.0);
    assert_eq!(num(&r, "echo.errors"), 0.0);
    all_lost(&r, 20.0);
    // Both senders sent their count early, but something was lost: the rate is over the
    // whole run (sending phase and drain), not up to some early moment.
    assert!(num(&r, "echo.measured_s") >= 2.0, "{r}");
    assert_nothing_lost(&r, "plain");
    // Open loop into the black hole: every slot sent, none delivered.
    let args = |to: &str| {
        vec![
            "relay".to_owned(),
            "--pairs".to_owned(),
            "1".to_owned(),
            "--rate".to_owned(),
            "100".to_owned(),
            "--duration".to_owned(),
            "1".to_owned(),
            "--drain".to_owned(),
            "1".to_owned(),
            "--echo".to_owned(),
            to.to_owned(),
        ]
    };
    let hole = args(&black_hole);
    let r = run(
        &s.target,
        &hole.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(num(&r, "echo.scheduled"), 100.0);
    assert_eq!(num(&r, "echo.sent"), 100.0);
    assert_eq!(num(&r, "echo.unsent"), 0.0);
    all_lost(&r, 100.0);
    // Open loop against a server that ends the streams: the flows fail at once, and the
    // messages they never sent stay in the count and the percentiles.
    let close = args(&closer);
    let r = run(
        &s.target,
        &close.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    assert!(num(&r, "echo.errors") >= 2.0, "{r}");
    assert_eq!(num(&r, "echo.scheduled"), 100.0);
    assert_eq!(num(&r, "echo.sent") + num(&r, "echo.unsent"), 100.0, "{r}");
    assert!(num(&r, "echo.unsent") > 0.0, "{r}");
    all_lost(&r, 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_scenario_delivers_to_every_member() {
    let _shared = MEMORY.read().await;
    let s = server().await;
    let r = run(
        &s.target,
        &[
            "fanout",
            "--members",
            "5",
            "--messages",
            "20",
            "--window",
            "4",
        ],
    )
    .await;
    assert_eq!(num(&r, "messages_sent"), 20.0);
    assert_eq!(num(&r, "deliveries_expected"), 80.0);
    assert_eq!(num(&r, "deliveries"), 80.0);
    assert_eq!(num(&r, "lost"), 0.0);
    assert_eq!(num(&r, "errors"), 0.0);
    assert_eq!(num(&r, "latency.count"), 80.0);
    assert!(num(&r, "deliveries_per_s") > 0.0);
    assert!(num(&r, "server_cpu_us_per_delivery") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_scenario_reads_memory_per_session() {
    // Alone: another test freeing memory meanwhile would hide this one's growth.
    let _alone = MEMORY.write().await;
    let s = server().await;
    let r = run(&s.target, &["idle", "--sessions", "40", "--hold", "0"]).await;
    assert_eq!(num(&r, "sessions_open"), 40.0);
    assert_eq!(num(&r, "failures"), 0.0);
    assert_eq!(num(&r, "sessions_closed_during_hold"), 0.0);
    assert!(num(&r, "server_rss_before_bytes") > 0.0);
    assert!(num(&r, "server_rss_after_hold_bytes") > 0.0);
    // Server and client share this process: both figures see the sessions' memory.
    assert!(num(&r, "server_bytes_per_session") > 0.0);
    assert!(num(&r, "client_bytes_per_session") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_scenario_replays_every_envelope() {
    let _shared = MEMORY.read().await;
    let s = server().await;
    let r = run(
        &s.target,
        &["offline", "--envelopes", "150", "--window", "16"],
    )
    .await;
    assert_eq!(num(&r, "sent"), 150.0);
    assert_eq!(num(&r, "queued"), 150.0);
    assert_eq!(num(&r, "replayed"), 150.0);
    assert_eq!(num(&r, "lost"), 0.0);
    assert_eq!(num(&r, "queue_errors"), 0.0);
    assert_eq!(num(&r, "queued_latency.count"), 150.0);
    assert!(num(&r, "replay_ms") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_scenario_with_concurrent_senders_replays_every_envelope() {
    let _shared = MEMORY.read().await;
    let s = server().await;
    let r = run(
        &s.target,
        &[
            "offline",
            "--envelopes",
            "203",
            "--senders",
            "8",
            "--window",
            "4",
        ],
    )
    .await;
    assert_eq!(num(&r, "senders"), 8.0);
    assert_eq!(num(&r, "sent"), 203.0);
    assert_eq!(num(&r, "queued"), 203.0);
    assert_eq!(num(&r, "replayed"), 203.0);
    assert_eq!(num(&r, "lost"), 0.0);
    assert_eq!(num(&r, "queue_errors"), 0.0);
}

#[test]
fn refuses_non_loopback_targets() {
    let params = ServerParams::new("chat.test", [1; 32]);
    let err = Target::new(
        SocketAddr::from(([192, 0, 2, 1], 8443)),
        TlsTrust::Fingerprint([0; 32]),
        params,
    )
    .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}
