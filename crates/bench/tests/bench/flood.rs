//! The connect flood at test scale: 1,000 TLS connections that never send a request, each from
//! its own loopback source address, held against the real server while bystander pairs
//! complete handshakes and chat. The full-size run (15,000 connections, server in its own
//! process) is `crates/bench/scripts/flood.sh`; its figures are in `docs/RELIABILITY.md`.

use std::time::Duration;

use crate::common::{MEMORY, run_within, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_silent_connections_and_bystanders_served() {
    const CONNECTIONS: u64 = 1000;
    // The flood holds a thousand connections in this process and reads its memory: alone.
    let _alone = MEMORY.write().await;
    let s = server().await;
    let connections = CONNECTIONS.to_string();
    let report = run_within(
        Duration::from_secs(300),
        &s.target,
        &[
            "flood",
            "--connections",
            &connections,
            "--hold",
            "1",
            "--bystanders",
            "2",
            "--messages",
            "5",
            "--duration",
            "120",
        ],
    )
    .await;
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
}
