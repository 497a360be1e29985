//! `commucat bench crash` against the built binary: a `commucat serve` child is SIGKILLed at
//! random moments while senders queue MSGs for devices that are not connected, and restarted
//! on the same data directory (SQLite) or the same PostgreSQL schema (a fresh one per run);
//! every acknowledged envelope must then be replayed to its recipient. The long run (20 kills
//! per backend) is `docs/RELIABILITY.md`'s; this one kills 3 times.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::BIN;

/// Runs the crash scenario with 3 kills and returns its report; `store` adds the PostgreSQL
/// options.
fn crash(store: &[&str]) -> Value {
    crash_with(&["--senders", "3", "--rate", "150"], store)
}

/// [`crash`] with `load` (senders, rate, window) instead of the light default.
fn crash_with(load: &[&str], store: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let out = Command::new(BIN)
        .args(["bench", "--json", "crash", "--kills", "3"])
        .args(load)
        .args(["--min-uptime-ms", "300", "--max-uptime-ms", "1500"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--server-log")
        .arg(&log)
        .args(store)
        .output()
        .expect("running commucat bench crash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench crash failed: {stdout}\n{stderr}\nserver log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    eprintln!("{report}");
    report
}

fn assert_nothing_acked_lost(report: &Value) {
    assert_eq!(report["kills"], 3, "{report}");
    assert_eq!(report["restarts"], 3, "{report}");
    assert!(report["acked"].as_u64().unwrap() > 0, "{report}");
    // Every kill came while ACKs were flowing, and the senders reconnected.
    assert_eq!(report["kills_under_load"], 3, "{report}");
    assert!(report["sender_sessions"].as_u64().unwrap() > 3, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    let delivered = report["delivered"].as_u64().unwrap();
    let acked = report["acked"].as_u64().unwrap();
    assert!(delivered >= acked, "{report}");
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged_on_sqlite() {
    let report = crash(&[]);
    assert_eq!(report["backend"], "sqlite");
    assert_nothing_acked_lost(&report);
}

#[test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
fn sigkill_under_load_loses_nothing_acknowledged_on_postgres() {
    let url = std::env::var("COMMUCAT_TEST_POSTGRES").expect("COMMUCAT_TEST_POSTGRES");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("crash_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let report = crash(&["--store-url", &url, "--store-schema", &schema]);
    assert_eq!(report["backend"], "postgres");
    assert_nothing_acked_lost(&report);
}

/// Enough concurrent senders that the store's group-commit writer always has a batch of
/// several enqueues in flight when the server is killed: whatever the kill interrupts (a batch
/// being collected, written or committed), no acknowledged envelope may be missing.
const GROUP_COMMIT_LOAD: &[&str] = &["--senders", "16", "--rate", "3000", "--window", "16"];

#[test]
fn sigkill_during_group_commits_loses_nothing_acknowledged_on_sqlite() {
    let report = crash_with(GROUP_COMMIT_LOAD, &[]);
    assert_eq!(report["backend"], "sqlite");
    assert_nothing_acked_lost(&report);
}

#[test]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
fn sigkill_during_group_commits_loses_nothing_acknowledged_on_postgres() {
    let url = std::env::var("COMMUCAT_TEST_POSTGRES").expect("COMMUCAT_TEST_POSTGRES");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("crashgc_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let report = crash_with(
        GROUP_COMMIT_LOAD,
        &["--store-url", &url, "--store-schema", &schema],
    );
    assert_eq!(report["backend"], "postgres");
    assert_nothing_acked_lost(&report);
}
