//! Every scenario against the real server on 127.0.0.1:0 (and the echo fixture), with small
//! counts: the reports must show real, non-zero work. No timing is asserted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use commucat_bench::echo::EchoServer;
use commucat_bench::{BenchArgs, Scenario, Target, run_scenario};
use commucat_client::{ServerParams, TlsTrust};
use commucat_server::{Config, Server, ServerHandle};
use serde_json::Value;

struct Running {
    _dir: tempfile::TempDir,
    _handle: ServerHandle,
    target: Target,
    data_dir: std::path::PathBuf,
}

async fn server() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.path().to_owned();
    config.server.domain = "chat.test".to_owned();
    config.server.shutdown_grace = Duration::from_secs(1);
    // The load tool is a flood from loopback by design: no per-IP `/connect` budget.
    config.rate_limits.connect_per_minute = 0;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let pem = std::fs::read(server.cert_path()).unwrap();
    let params = ServerParams::new("chat.test", server.keys().noise.public());
    let mut target = Target::new(addr, TlsTrust::CaPem(pem), params).unwrap();
    target.server_pid = Some(std::process::id());
    Running {
        data_dir: dir.path().to_owned(),
        _dir: dir,
        _handle: server.spawn(),
        target,
    }
}

/// Parses a scenario as the command line would.
fn scenario(args: &[&str]) -> Scenario {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap().bench.scenario
}

async fn run(target: &Target, args: &[&str]) -> Value {
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        run_scenario(target, &scenario(args), false),
    )
    .await
    .expect("scenario bounded in time")
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    report
}

fn num(report: &Value, path: &str) -> f64 {
    let mut v = report;
    for key in path.split('.') {
        v = &v[key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path} missing in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_scenario_counts_handshakes() {
    let s = server().await;
    let r = run(&s.target, &["handshake", "--loops", "2", "--count", "6"]).await;
    assert_eq!(num(&r, "handshakes"), 6.0);
    assert_eq!(num(&r, "failures"), 0.0);
    assert!(num(&r, "handshakes_per_s") > 0.0);
    assert!(num(&r, "latency.p50_us") > 0.0);
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
    assert_eq!(r["pattern"], "IK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_scenario_delivers_plain_noise_and_echo() {
    let s = server().await;
    let echo = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &s.data_dir)
        .await
        .unwrap();
    let echo_addr = echo.addr.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let echo_task = tokio::spawn(echo.run(async {
        let _ = stopped.await;
    }));
    let r = run(
        &s.target,
        &[
            "relay",
            "--pairs",
            "2",
            "--size",
            "100",
            "--duration",
            "1",
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
        assert_eq!(num(&r, &format!("{phase}.errors")), 0.0, "{phase}");
        // 4 senders, at most 200 messages each (fewer if the second of sending ends first),
        // every one delivered exactly once.
        let sent = num(&r, &format!("{phase}.sent"));
        assert!(sent > 0.0 && sent <= 800.0, "{phase}");
        assert_eq!(num(&r, &format!("{phase}.delivered")), sent, "{phase}");
        assert!(num(&r, &format!("{phase}.msgs_per_s")) > 0.0, "{phase}");
        assert!(num(&r, &format!("{phase}.latency.p99_us")) > 0.0, "{phase}");
    }
    assert!(num(&r, "plain_pct_of_echo") > 0.0);
    assert!(num(&r, "noise_pct_of_echo") > 0.0);
    // Open loop at a target rate.
    let r = run(
        &s.target,
        &["relay", "--pairs", "1", "--rate", "200", "--duration", "1"],
    )
    .await;
    assert!(num(&r, "plain.delivered") > 0.0);
    assert_eq!(num(&r, "offered_rate"), 200.0);
    let _ = stop.send(());
    echo_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_scenario_delivers_to_every_member() {
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
    assert_eq!(num(&r, "deliveries"), 80.0);
    assert_eq!(num(&r, "errors"), 0.0);
    assert!(num(&r, "deliveries_per_s") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_scenario_reads_memory_per_session() {
    let s = server().await;
    let r = run(&s.target, &["idle", "--sessions", "20", "--hold", "0"]).await;
    assert_eq!(num(&r, "sessions_open"), 20.0);
    assert_eq!(num(&r, "failures"), 0.0);
    assert!(num(&r, "server_rss_after_hold_bytes") > 0.0);
    assert!(r["server_bytes_per_session"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_scenario_replays_every_envelope() {
    let s = server().await;
    let r = run(
        &s.target,
        &["offline", "--envelopes", "150", "--window", "16"],
    )
    .await;
    assert_eq!(num(&r, "queued"), 150.0);
    assert_eq!(num(&r, "replayed"), 150.0);
    assert_eq!(num(&r, "queue_errors"), 0.0);
    assert!(num(&r, "replay_ms") > 0.0);
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
