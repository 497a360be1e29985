//! `commucat bench soak` against the real server on 127.0.0.1:0: a short run in which the
//! server ends a lagging receiver's session as a slow consumer, the receiver reconnects and
//! fetches its offline queue, and the report must account for every message exactly once
//! (the disconnect and reconnect counted, no error). A second run against a server that cannot
//! queue offline frames shows the accounting failing when ACKed messages do not arrive.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use commucat_bench::{BenchArgs, Scenario, Target, run_scenario};
use commucat_client::{ServerParams, TlsTrust};
use commucat_server::{Config, Server, ServerHandle};
use serde_json::Value;

struct Running {
    _dir: tempfile::TempDir,
    _handle: ServerHandle,
    target: Target,
}

async fn server(configure: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.path().to_owned();
    config.server.domain = "chat.test".to_owned();
    config.server.shutdown_grace = Duration::from_secs(1);
    config.rate_limits.connect_per_minute = 0;
    // A receiver that stops reading is ended quickly: few frames may wait for it.
    config.limits.mailbox_capacity = 64;
    config.bounds.transport_buffer_bytes = 64 * 1024;
    configure(&mut config);
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let pem = std::fs::read(server.cert_path()).unwrap();
    let params = ServerParams::new("chat.test", server.keys().noise.public());
    let mut target = Target::new(addr, TlsTrust::CaPem(pem), params).unwrap();
    target.server_pid = Some(std::process::id());
    Running {
        _dir: dir,
        _handle: server.spawn(),
        target,
    }
}

async fn soak(target: &Target) -> Value {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }
    // 2 pairs, 100 msgs/s per device for 8 s; the second device reads nothing for the first
    // 6 s: 600 frames, more than the HTTP/2 window, the transport buffer and the mailbox hold.
    let argv = [
        "bench",
        "soak",
        "--pairs",
        "2",
        "--rate",
        "400",
        "--duration",
        "8",
        "--drain",
        "20",
        "--sample-interval",
        "1",
        "--stall-receiver",
        "6",
    ];
    let scenario: Scenario = Cli::try_parse_from(argv).unwrap().bench.scenario;
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        run_scenario(target, &scenario, false),
    )
    .await
    .expect("soak bounded in time")
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    report
}

fn num(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_reconnects_a_slow_consumer_and_accounts_for_every_message() {
    let s = server(|_| {}).await;
    let r = soak(&s.target).await;
    assert!(num(&r, "disconnects") >= 1, "no forced disconnect: {r}");
    assert_eq!(
        r["disconnect_reasons"]["Slow Consumer"].as_u64(),
        Some(num(&r, "disconnects")),
        "{r}"
    );
    assert_eq!(num(&r, "reconnects"), num(&r, "disconnects"), "{r}");
    assert!(num(&r, "receipts") > 0, "{r}");
    // No refused reconnection, no refused MSG (the channel is joined again after each one).
    assert_eq!(num(&r, "errors"), 0, "{r}");
    assert_eq!(num(&r, "unsent"), 0, "{r}");
    // Every message offered is delivered, lost, unconfirmed (sent as the connection ended) or
    // unsent, exactly once.
    assert_eq!(
        num(&r, "delivered") + num(&r, "lost") + num(&r, "unconfirmed") + num(&r, "unsent"),
        num(&r, "scheduled"),
        "{r}"
    );
    assert!(num(&r, "lost_but_queued") <= num(&r, "lost"), "{r}");
    assert!(num(&r, "delivered") > 0 && num(&r, "samples") >= 1, "{r}");
}

/// Across a `Slow Consumer` close nothing ACKed to the sender is lost (see docs/RELIABILITY.md,
/// "Soak"): frames written to the receiver but not confirmed by its receipts, and frames queued
/// while it reconnected, reach the reconnected device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_loses_nothing_across_a_slow_consumer_close() {
    let s = server(|_| {}).await;
    let r = soak(&s.target).await;
    assert!(num(&r, "disconnects") >= 1, "no forced disconnect: {r}");
    assert_eq!(num(&r, "lost"), 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_counts_acked_messages_that_never_arrive_as_lost() {
    // An offline queue of one frame per device: what the lagging receiver misses while it is
    // away is ACKed to its sender and refused by the queue, so it never arrives.
    let s = server(|c| c.bounds.offline_frames_per_device = 1).await;
    let r = soak(&s.target).await;
    assert!(num(&r, "disconnects") >= 1, "no forced disconnect: {r}");
    assert!(num(&r, "lost") > 0, "{r}");
    assert!(
        num(&r, "delivered") + num(&r, "lost") <= num(&r, "scheduled"),
        "{r}"
    );
}
