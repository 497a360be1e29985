//! `relay`: device pairs exchanging MSG frames through the server, and the same load against
//! the echo baseline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::{RelayArgs, Transport};
use crate::flow::{self, AckBy, FlowPlan, FlowResult, Pace};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::procfs;
use crate::report::{self, LatencySummary};
use crate::target::{Target, options};

/// Time after the sending phase for outstanding messages to arrive.
const DRAIN: Duration = Duration::from_secs(10);

/// The result of `relay`.
#[derive(Debug, Serialize)]
pub(crate) struct RelayReport {
    scenario: &'static str,
    pairs: usize,
    connections: usize,
    size: usize,
    /// Offered load (msgs/s over all senders); absent in the maximum-rate mode.
    offered_rate: Option<u64>,
    window: Option<usize>,
    duration_s: u64,
    echo: Option<PhaseReport>,
    plain: Option<PhaseReport>,
    noise: Option<PhaseReport>,
    plain_pct_of_echo: Option<f64>,
    noise_pct_of_echo: Option<f64>,
}

/// One phase (echo, plain relay or noise-transport relay).
#[derive(Debug, Serialize)]
pub(crate) struct PhaseReport {
    sent: u64,
    delivered: u64,
    errors: u64,
    first_error: Option<String>,
    msgs_per_s: f64,
    payload_mib_per_s: f64,
    latency: LatencySummary,
    server_cpu_us_per_msg: Option<f64>,
}

/// What a phase runs against.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Echo(SocketAddr),
    Relay { noise: bool },
}

pub(crate) async fn run(target: &Target, args: &RelayArgs, progress: bool) -> Result<RelayReport> {
    let pairs = args.pairs.max(1);
    let mut report = RelayReport {
        scenario: "relay",
        pairs,
        connections: 2 * pairs,
        size: args.size.max(MIN_PAYLOAD),
        offered_rate: (args.rate > 0).then_some(args.rate),
        window: (args.rate == 0).then_some(args.window.max(1)),
        duration_s: args.duration,
        echo: None,
        plain: None,
        noise: None,
        plain_pct_of_echo: None,
        noise_pct_of_echo: None,
    };
    if let Some(addr) = args.echo {
        report.echo = Some(
            phase(target, args, Phase::Echo(addr), progress)
                .await
                .context("echo baseline")?,
        );
    }
    if matches!(args.transport, Transport::Plain | Transport::Both) {
        report.plain = Some(phase(target, args, Phase::Relay { noise: false }, progress).await?);
    }
    if matches!(args.transport, Transport::Noise | Transport::Both) {
        report.noise = Some(phase(target, args, Phase::Relay { noise: true }, progress).await?);
    }
    if let Some(echo) = &report.echo {
        let pct = |p: &Option<PhaseReport>| {
            p.as_ref()
                .and_then(|p| report::percent(p.msgs_per_s, echo.msgs_per_s))
        };
        report.plain_pct_of_echo = pct(&report.plain);
        report.noise_pct_of_echo = pct(&report.noise);
    }
    Ok(report)
}

/// Opens the phase's connections: `2 × pairs`, each with its channel.
async fn open(
    target: &Target,
    pairs: usize,
    phase: Phase,
) -> Result<Vec<(Connection<H2Stream>, u32)>> {
    let first_channel = target.channels(pairs)?;
    let mut tasks = JoinSet::new();
    for pair in 0..pairs {
        let target = target.clone();
        tasks.spawn(async move {
            let channel = first_channel + u32::try_from(pair)?;
            match phase {
                Phase::Echo(addr) => Ok::<_, anyhow::Error>(vec![
                    (target.open_raw(addr, 2 * pair).await?, channel),
                    (target.open_raw(addr, 2 * pair + 1).await?, channel),
                ]),
                Phase::Relay { noise } => {
                    let options = options(false, noise);
                    // Each phase has its own devices (a device id keeps its key).
                    let kind = if noise { "n" } else { "p" };
                    let a_id = target.identity(&format!("{kind}a"), pair);
                    let b_id = target.identity(&format!("{kind}b"), pair);
                    let b = target.connect(2 * pair + 1, &b_id, &options).await?;
                    let mut a = target
                        .connect(2 * pair, &a_id, &options)
                        .await?
                        .into_connection();
                    let mut b = b.into_connection();
                    flow::join(&mut a, channel, &[&a_id.device_id, &b_id.device_id]).await?;
                    flow::wait_for(&mut b, "JOIN notice", crate::target::CONNECT_TIMEOUT, |f| {
                        f.frame_type() == ccp::FrameType::Join
                    })
                    .await?;
                    Ok(vec![(a, channel), (b, channel)])
                }
            }
        });
    }
    let mut conns = Vec::with_capacity(2 * pairs);
    while let Some(joined) = tasks.join_next().await {
        conns.extend(joined??);
    }
    Ok(conns)
}

/// Runs one phase: opens its connections, drives every flow, merges the results.
async fn phase(
    target: &Target,
    args: &RelayArgs,
    phase: Phase,
    progress: bool,
) -> Result<PhaseReport> {
    let pairs = args.pairs.max(1);
    let size = args.size.max(MIN_PAYLOAD);
    let conns = open(target, pairs, phase).await?;
    let flows = conns.len();
    let pace = if args.rate == 0 {
        Pace::Window(args.window.max(1))
    } else {
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let per_flow = args.rate as f64 / flows as f64;
        Pace::Interval(Duration::from_secs_f64(1.0 / per_flow.max(1e-3)))
    };
    let label = match phase {
        Phase::Echo(_) => "echo",
        Phase::Relay { noise: false } => "relay plain",
        Phase::Relay { noise: true } => "relay noise",
    };
    let bar = report::progress(progress, 0, label);
    let clock = Clock::start();
    let start = Instant::now() + Duration::from_millis(100);
    let duration = Duration::from_secs(args.duration.max(1));
    // The server's CPU is read for relay phases only: the echo runs in another process.
    let server_pid = match phase {
        Phase::Echo(_) => None,
        Phase::Relay { .. } => target.server_pid,
    };
    let cpu_before = server_pid.map(procfs::cpu_time).transpose()?;
    let mut tasks = JoinSet::new();
    for (i, (mut conn, channel)) in conns.into_iter().enumerate() {
        let offset = match pace {
            Pace::Interval(interval) => interval.mul_f64(
                #[allow(clippy::cast_precision_loss, reason = "small counts")]
                {
                    i as f64 / flows as f64
                },
            ),
            Pace::Window(_) => Duration::ZERO,
        };
        let plan = FlowPlan {
            channel,
            size,
            pace,
            count: args.count,
            ack_by: match phase {
                Phase::Echo(_) => AckBy::Echo,
                Phase::Relay { .. } => AckBy::Ack,
            },
            start: start + offset,
            stop_sending: start + duration,
            hard_stop: start + duration + DRAIN,
        };
        let bar = bar.clone();
        tasks.spawn(async move {
            let result = flow::drive(&mut conn, &plan, &clock, &bar).await;
            drop(conn);
            result
        });
    }
    let mut total = FlowResult::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(&joined??);
    }
    bar.finish_and_clear();
    let cpu = match (cpu_before, server_pid) {
        (Some(before), Some(pid)) => Some(procfs::cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    let elapsed = total
        .last_delivery
        .map_or(Duration::ZERO, |last| last.saturating_duration_since(start));
    let msgs_per_s = report::per_second(total.delivered, elapsed);
    #[allow(clippy::cast_precision_loss, reason = "small sizes")]
    let payload_mib_per_s = report::round2(msgs_per_s * size as f64 / (1024.0 * 1024.0));
    Ok(PhaseReport {
        sent: total.sent,
        delivered: total.delivered,
        errors: total.errors,
        first_error: total.first_error,
        msgs_per_s,
        payload_mib_per_s,
        latency: total.latencies.summary(),
        server_cpu_us_per_msg: cpu.and_then(|cpu| per_event_us(cpu, total.delivered)),
    })
}

/// Microseconds of `cpu` per event.
pub(crate) fn per_event_us(cpu: Duration, events: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per = (events > 0).then(|| cpu.as_secs_f64() * 1e6 / events as f64);
    per.map(report::round2)
}
