//! The connect flood at test scale: 1,000 TLS connections that never send a request, each from
//! its own loopback source address, held against the real server while bystander pairs
//! complete handshakes and chat. The full-size run (15,000 connections, server in its own
//! process) is `crates/bench/scripts/flood.sh`; its figures are in `docs/RELIABILITY.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use commucat_bench::{BenchArgs, Target, run_scenario};
use commucat_client::{ServerParams, TlsTrust};
use commucat_server::{Config, Server};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_silent_connections_and_bystanders_served() {
    const CONNECTIONS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.path().to_owned();
    config.server.domain = "chat.test".to_owned();
    config.server.shutdown_grace = Duration::from_secs(1);
    config.rate_limits.connect_per_minute = 0;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let pem = std::fs::read(server.cert_path()).unwrap();
    let params = ServerParams::new("chat.test", server.keys().noise.public());
    let mut target = Target::new(addr, TlsTrust::CaPem(pem), params).unwrap();
    target.server_pid = Some(std::process::id());
    let _handle = server.spawn();

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }
    let cli = Cli::try_parse_from([
        "bench",
        "flood",
        "--connections",
        &CONNECTIONS.to_string(),
        "--hold",
        "1",
        "--bystanders",
        "2",
        "--messages",
        "5",
        "--duration",
        "120",
    ])
    .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(300),
        run_scenario(&target, &cli.bench.scenario, false),
    )
    .await
    .expect("flood bounded in time")
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    let n = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {report}"))
    };
    assert_eq!(n("connections_opened"), CONNECTIONS, "{report}");
    assert_eq!(n("connect_failures"), 0);
    // The default idle time-out (30 s) is longer than the run: every connection is held.
    assert_eq!(n("connections_held_after_open"), CONNECTIONS);
    assert_eq!(n("connections_held_after_hold"), CONNECTIONS);
    assert!(n("bystander_handshakes") >= 2, "{report}");
    assert_eq!(n("bystander_handshake_failures"), 0, "{report}");
    assert_eq!(n("bystander_message_failures"), 0, "{report}");
    assert!(n("bystander_messages_delivered") > 0, "{report}");
    assert_eq!(
        n("bystander_messages_delivered"),
        n("bystander_messages_sent")
    );
    assert!(report["server_rss_peak_bytes"].as_u64().is_some());
    let _: &Value = &report;
}
