//! `idle`: open N sessions, hold them, and read the server's resident memory per session.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use commucat_client::Session;
use commucat_client::transport::H2Stream;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;

use crate::args::IdleArgs;
use crate::procfs;
use crate::report;
use crate::target::{Target, options};

/// The result of `idle`.
#[derive(Debug, Serialize)]
pub(crate) struct IdleReport {
    scenario: &'static str,
    sessions_requested: usize,
    sessions_open: usize,
    failures: usize,
    first_failure: Option<String>,
    open_s: f64,
    sessions_per_s: f64,
    hold_s: u64,
    server_rss_before_bytes: Option<u64>,
    server_rss_open_bytes: Option<u64>,
    server_rss_after_hold_bytes: Option<u64>,
    /// Sessions the server ended before the memory was read after the hold (their memory
    /// may already be freed, which would flatter the per-session figures).
    sessions_closed_during_hold: usize,
    /// (RSS after the hold − RSS before) / sessions open.
    server_bytes_per_session: Option<u64>,
    /// The same for this process (the client side of the sessions).
    client_bytes_per_session: Option<u64>,
}

pub(crate) async fn run(target: &Target, args: &IdleArgs, progress: bool) -> Result<IdleReport> {
    let wanted = args.sessions.max(1);
    let rss = || target.server_pid.map(procfs::rss_bytes).transpose();
    let me = std::process::id();
    let server_before = rss()?;
    let client_before = procfs::rss_bytes(me)?;
    let bar = report::progress(progress, u64::try_from(wanted)?, "sessions");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration.max(1));
    let opened: Vec<_> = futures_util::stream::iter(0..wanted)
        .map(|i| {
            let bar = bar.clone();
            async move {
                if Instant::now() >= deadline {
                    bail!("not opened within --duration");
                }
                let identity = target.identity("i", i);
                let session = target.connect(i, &identity, &options(false, false)).await;
                bar.inc(1);
                session
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let open_s = start.elapsed();
    bar.finish_and_clear();
    let mut sessions = Vec::with_capacity(wanted);
    let mut failures = 0;
    let mut first_failure = None;
    for result in opened {
        match result {
            Ok(session) => sessions.push(session),
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_open = rss()?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let server_after = rss()?;
    let client_after = procfs::rss_bytes(me)?;
    let closed = closed_sessions(&mut sessions);
    let open = sessions.len();
    let per_session = |before: u64, after: u64| {
        u64::try_from(open)
            .ok()
            .filter(|n| *n > 0)
            .map(|n| after.saturating_sub(before) / n)
    };
    drop(sessions);
    Ok(IdleReport {
        scenario: "idle",
        sessions_requested: wanted,
        sessions_open: open,
        failures,
        first_failure,
        open_s: report::round2(open_s.as_secs_f64()),
        sessions_per_s: report::per_second(u64::try_from(open)?, open_s),
        hold_s: args.hold,
        server_rss_before_bytes: server_before,
        server_rss_open_bytes: server_open,
        server_rss_after_hold_bytes: server_after,
        sessions_closed_during_hold: closed,
        server_bytes_per_session: server_before
            .zip(server_after)
            .and_then(|(b, a)| per_session(b, a)),
        client_bytes_per_session: per_session(client_before, client_after),
    })
}

/// How many of `sessions` the server has ended: their stream is closed or failed. Frames that
/// arrived meanwhile are read and dropped; nothing waits.
fn closed_sessions(sessions: &mut [Session<H2Stream>]) -> usize {
    let mut closed = 0;
    for session in sessions {
        let conn = session.connection_mut();
        for _ in 0..64 {
            match conn.fill().now_or_never() {
                Some(Ok(true)) => while let Ok(Some(_)) = conn.next_buffered() {},
                Some(Ok(false) | Err(_)) => {
                    closed += 1;
                    break;
                }
                None => break,
            }
        }
    }
    closed
}
