//! `flood`: open N TLS connections that never send a request, each from its own loopback
//! source address, and hold them; meanwhile bystander pairs keep completing device handshakes
//! and exchanging MSGs. Reports the connections held (and those the server closed, e.g. after
//! `bounds.idle_connection_timeout`), every bystander handshake and message with its failures,
//! and the server's resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use commucat_ccp::FrameType;
use commucat_client::transport;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::args::FloodArgs;
use crate::procfs;
use crate::report::{self, Latencies, LatencySummary};
use crate::target::{CONNECT_TIMEOUT, Target, options};

/// Source-address index of the first bystander: far above any flood connection's.
const BYSTANDER_SOURCES: usize = 8_000_000;
/// Time a bystander waits for each MSG of its peer.
const MSG_WAIT: Duration = Duration::from_secs(10);
/// Interval between samples of the server's resident memory.
const RSS_SAMPLE: Duration = Duration::from_millis(500);

/// The result of `flood`.
#[derive(Debug, Serialize)]
pub(crate) struct FloodReport {
    scenario: &'static str,
    connections_requested: usize,
    connections_opened: usize,
    connect_failures: usize,
    first_connect_failure: Option<String>,
    open_s: f64,
    /// Flood connections still open when the last one had been opened.
    connections_held_after_open: usize,
    hold_s: u64,
    /// Flood connections still open at the end of the hold.
    connections_held_after_hold: usize,
    /// Flood connections the server closed before the end of the hold.
    connections_closed_by_server: usize,
    bystander_pairs: usize,
    bystander_rounds: u64,
    bystander_handshakes: u64,
    bystander_handshake_failures: u64,
    bystander_messages_sent: u64,
    bystander_messages_delivered: u64,
    bystander_message_failures: u64,
    first_bystander_failure: Option<String>,
    bystander_handshake_latency: LatencySummary,
    server_rss_before_bytes: Option<u64>,
    server_rss_peak_bytes: Option<u64>,
    server_rss_after_hold_bytes: Option<u64>,
    /// File descriptors the server has open at the end of the hold.
    server_open_fds_after_hold: Option<usize>,
}

#[allow(
    clippy::disallowed_methods,
    reason = "the load tool's own sampler and bystander tasks, each awaited before the report"
)]
pub(crate) async fn run(target: &Target, args: &FloodArgs, progress: bool) -> Result<FloodReport> {
    let wanted = args.connections;
    let rss = || target.server_pid.map(procfs::rss_bytes).transpose();
    let rss_before = rss()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = target.server_pid.map(|pid| {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(procfs::rss_bytes(pid).unwrap_or(0));
                tokio::time::sleep(RSS_SAMPLE).await;
            }
            peak
        })
    });
    let bystanders: Vec<_> = (0..args.bystanders)
        .map(|pair| {
            let (target, stop) = (target.clone(), Arc::clone(&stop));
            let messages = args.messages;
            tokio::spawn(async move { bystander(&target, pair, messages, &stop).await })
        })
        .collect();

    let bar = report::progress(progress, u64::try_from(wanted)?, "connections");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration.max(1));
    let opened: Vec<Result<TlsStream<TcpStream>>> = futures_util::stream::iter(0..wanted)
        .map(|i| {
            let bar = bar.clone();
            async move {
                if Instant::now() >= deadline {
                    return Err(anyhow!("not opened within --duration"));
                }
                let tls = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    transport::tls_connect(
                        target.source(i),
                        target.addr,
                        &target.server_name,
                        &target.trust,
                        b"h2",
                    ),
                )
                .await
                .map_err(|_| anyhow!("TLS connect took over {CONNECT_TIMEOUT:?}"))??;
                bar.inc(1);
                Ok(tls)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let open_s = start.elapsed();
    bar.finish_and_clear();
    let mut held = Vec::with_capacity(wanted);
    let (mut connect_failures, mut first_connect_failure) = (0, None);
    for result in opened {
        match result {
            Ok(tls) => held.push(tls),
            Err(e) => {
                connect_failures += 1;
                first_connect_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let connections_opened = held.len();
    let held_after_open = connections_opened - closed(&mut held);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let rss_after = rss()?;
    let fds_after = target
        .server_pid
        .and_then(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(Iterator::count);
    let closed_by_server = closed(&mut held);
    stop.store(true, Ordering::Relaxed);
    let mut totals = Bystander::new()?;
    for task in bystanders {
        totals.merge(task.await??);
    }
    let peak = match sampler {
        Some(task) => Some(task.await?),
        None => None,
    };
    drop(held);
    Ok(FloodReport {
        scenario: "flood",
        connections_requested: wanted,
        connections_opened,
        connect_failures,
        first_connect_failure,
        open_s: report::round2(open_s.as_secs_f64()),
        connections_held_after_open: held_after_open,
        hold_s: args.hold,
        connections_held_after_hold: connections_opened - closed_by_server,
        connections_closed_by_server: closed_by_server,
        bystander_pairs: args.bystanders,
        bystander_rounds: totals.rounds,
        bystander_handshakes: totals.handshakes,
        bystander_handshake_failures: totals.handshake_failures,
        bystander_messages_sent: totals.sent,
        bystander_messages_delivered: totals.delivered,
        bystander_message_failures: totals.message_failures,
        first_bystander_failure: totals.first_failure,
        bystander_handshake_latency: totals.latencies.summary(),
        server_rss_before_bytes: rss_before,
        server_rss_peak_bytes: peak.map(|p| p.max(rss_after.unwrap_or(0))),
        server_rss_after_hold_bytes: rss_after,
        server_open_fds_after_hold: fds_after,
    })
}

/// How many of `connections` the server has closed (end of stream or error); nothing waits.
/// Each read runs outside the task's cooperative budget, which would otherwise report every
/// stream after the first hundred or so as not ready.
fn closed(connections: &mut [TlsStream<TcpStream>]) -> usize {
    let mut buf = [0u8; 512];
    connections
        .iter_mut()
        .map(|tls| {
            let read = tokio::task::unconstrained(tls.read(&mut buf)).now_or_never();
            matches!(read, Some(Ok(0) | Err(_)))
        })
        .filter(|closed| *closed)
        .count()
}

/// What one bystander pair did.
struct Bystander {
    rounds: u64,
    handshakes: u64,
    handshake_failures: u64,
    sent: u64,
    delivered: u64,
    message_failures: u64,
    first_failure: Option<String>,
    latencies: Latencies,
}

impl Bystander {
    fn new() -> Result<Self> {
        Ok(Self {
            rounds: 0,
            handshakes: 0,
            handshake_failures: 0,
            sent: 0,
            delivered: 0,
            message_failures: 0,
            first_failure: None,
            latencies: Latencies::new()?,
        })
    }

    fn merge(&mut self, other: Self) {
        self.rounds += other.rounds;
        self.handshakes += other.handshakes;
        self.handshake_failures += other.handshake_failures;
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.message_failures += other.message_failures;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies.merge(&other.latencies);
    }

    fn failed(&mut self, what: &str, error: &anyhow::Error) {
        self.first_failure
            .get_or_insert_with(|| format!("{what}: {error:#}"));
    }
}

/// Rounds of one bystander pair until `stop`: two fresh devices connect (from their own source
/// addresses), JOIN a channel of their own, one sends `messages` MSGs the other must receive;
/// then both disconnect.
async fn bystander(
    target: &Target,
    pair: usize,
    messages: u64,
    stop: &AtomicBool,
) -> Result<Bystander> {
    let mut done = Bystander::new()?;
    while !stop.load(Ordering::Relaxed) {
        done.rounds += 1;
        let channel = target.channels(1)?;
        let mut ids = Vec::with_capacity(2);
        let round = usize::try_from(done.rounds).unwrap_or(0);
        let mut sessions = Vec::with_capacity(2);
        for side in 0..2 {
            let source = BYSTANDER_SOURCES + pair * 2 + side;
            let identity = target.identity(&format!("by{pair}r{round}s"), side);
            ids.push(identity.device_id.clone());
            let began = Instant::now();
            match target
                .connect(source, &identity, &options(false, false))
                .await
            {
                Ok(session) => {
                    done.latencies.record(began.elapsed());
                    done.handshakes += 1;
                    sessions.push(session);
                }
                Err(e) => {
                    done.handshake_failures += 1;
                    done.failed("handshake", &e);
                }
            }
        }
        let Ok([mut a, mut b]) = <[_; 2]>::try_from(sessions) else {
            continue;
        };
        let chat = async {
            for session in [&mut a, &mut b] {
                session
                    .send_control(
                        FrameType::Join,
                        channel,
                        &serde_json::json!({"members": [], "relay": true}),
                    )
                    .await?;
            }
            // b waits until a JOIN notice lists both devices.
            loop {
                let frame = tokio::time::timeout(MSG_WAIT, b.recv())
                    .await
                    .map_err(|_| anyhow!("no JOIN notice within {MSG_WAIT:?}"))??
                    .ok_or_else(|| anyhow!("stream closed before the JOIN notice"))?;
                if frame.frame_type() == FrameType::Join
                    && frame
                        .parse_control::<commucat_ccp::control::Join>()
                        .is_ok_and(|j| ids.iter().all(|id| j.members.contains(id)))
                {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        if let Err(e) = chat.await {
            done.message_failures += 1;
            done.failed("join", &e);
            continue;
        }
        for n in 0..messages {
            done.sent += 1;
            let payload = Bytes::from(format!("bystander {pair} round {round} msg {n}"));
            let exchanged = async {
                a.send_bytes(FrameType::Msg, channel, payload.clone())
                    .await?;
                loop {
                    let frame = tokio::time::timeout(MSG_WAIT, b.recv())
                        .await
                        .map_err(|_| anyhow!("MSG not delivered within {MSG_WAIT:?}"))??
                        .ok_or_else(|| anyhow!("stream closed before the MSG"))?;
                    if frame.frame_type() == FrameType::Msg && frame.payload() == &payload {
                        return Ok::<_, anyhow::Error>(());
                    }
                }
            };
            match exchanged.await {
                Ok(()) => done.delivered += 1,
                Err(e) => {
                    done.message_failures += 1;
                    done.failed("message", &e);
                    break;
                }
            }
        }
    }
    Ok(done)
}
