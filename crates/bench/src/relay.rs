//! `relay`: device pairs exchanging MSG frames through the server, and the same load against
//! the echo baseline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::{RelayArgs, Transport};
use crate::flow::{self, AckBy, FlowPlan, FlowResult, Pace, Progress, Tally};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::procfs;
use crate::report::{self, LatencySummary};
use crate::target::{Target, options};

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
    /// Time after the sending phase for outstanding messages to arrive.
    drain_s: u64,
    echo: Option<PhaseReport>,
    plain: Option<PhaseReport>,
    noise: Option<PhaseReport>,
    /// `pq-hybrid` sessions (with `--pq`).
    hybrid: Option<PhaseReport>,
    plain_pct_of_echo: Option<f64>,
    noise_pct_of_echo: Option<f64>,
    /// Hybrid msgs/s as % of classical `noise-transport` msgs/s (both phases run).
    hybrid_pct_of_noise: Option<f64>,
}

/// One phase (echo, plain relay or noise-transport relay).
#[derive(Debug, Serialize)]
pub(crate) struct PhaseReport {
    /// Messages offered (open loop: every slot due during the sending phase); absent in the
    /// maximum-rate mode, where it is `sent`.
    scheduled: Option<u64>,
    sent: u64,
    /// Distinct messages that reached their receiver by the end of the run.
    delivered: u64,
    /// `sent − delivered`.
    lost: u64,
    /// Due during the sending phase but never sent (a sender that fell behind or failed);
    /// absent in the maximum-rate mode.
    unsent: Option<u64>,
    errors: u64,
    first_error: Option<String>,
    /// Messages delivered during the measured phase per second of it.
    msgs_per_s: f64,
    /// The measured phase: the sending phase, or up to the last delivery when every sender
    /// sent its `--count` earlier (to the end of the run if anything was lost).
    measured_s: f64,
    payload_mib_per_s: f64,
    /// One entry per message offered; a message that never arrived counts as arriving at the
    /// end of the run (`duration_s + drain_s` after the start, or later).
    latency: LatencySummary,
    server_cpu_us_per_msg: Option<f64>,
}

/// What a phase runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    Echo(SocketAddr),
    /// `pq`: `pq-hybrid` sessions (their records are `noise-transport` records).
    Relay {
        noise: bool,
        pq: bool,
    },
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
        drain_s: args.drain,
        echo: None,
        plain: None,
        noise: None,
        hybrid: None,
        plain_pct_of_echo: None,
        noise_pct_of_echo: None,
        hybrid_pct_of_noise: None,
    };
    if let Some(addr) = args.echo {
        report.echo = Some(
            phase(target, args, Phase::Echo(addr), progress)
                .await
                .context("echo baseline")?,
        );
    }
    if matches!(args.transport, Transport::Plain | Transport::Both) {
        let relay = Phase::Relay {
            noise: false,
            pq: false,
        };
        report.plain = Some(phase(target, args, relay, progress).await?);
    }
    if matches!(args.transport, Transport::Noise | Transport::Both) {
        let relay = Phase::Relay {
            noise: true,
            pq: false,
        };
        report.noise = Some(phase(target, args, relay, progress).await?);
    }
    if args.pq {
        let relay = Phase::Relay {
            noise: true,
            pq: true,
        };
        report.hybrid = Some(phase(target, args, relay, progress).await?);
    }
    if let (Some(hybrid), Some(noise)) = (&report.hybrid, &report.noise) {
        report.hybrid_pct_of_noise = report::percent(hybrid.msgs_per_s, noise.msgs_per_s);
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

/// Opens the phase's connections: `2 × pairs`, each with its channel; the two connections of
/// a pair are adjacent (`2k` and `2k + 1`).
pub(crate) async fn open(
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
                Phase::Relay { noise, pq } => {
                    let mut options = options(false, noise);
                    // Each phase has its own devices (a device id keeps its key).
                    let kind = match (noise, pq) {
                        (_, true) => "h",
                        (true, false) => "n",
                        (false, false) => "p",
                    };
                    let mut a_id = target.identity(&format!("{kind}a"), pair);
                    let mut b_id = target.identity(&format!("{kind}b"), pair);
                    if pq {
                        options = options.with_pq_hybrid();
                        a_id = a_id.with_pq_keys()?;
                        b_id = b_id.with_pq_keys()?;
                    }
                    let b = target.connect(2 * pair + 1, &b_id, &options).await?;
                    let mut a = target
                        .connect(2 * pair, &a_id, &options)
                        .await?
                        .into_connection();
                    let mut b = b.into_connection();
                    flow::join(&mut a, channel, &[&a_id.device_id, &b_id.device_id]).await?;
                    flow::wait_for(&mut b, "JOIN notice", crate::target::CONNECT_TIMEOUT, |f| {
                        f.frame_type() == commucat_ccp::FrameType::Join
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
        Phase::Relay { pq: true, .. } => "relay hybrid",
        Phase::Relay { noise: false, .. } => "relay plain",
        Phase::Relay { noise: true, .. } => "relay noise",
    };
    let bar = report::progress(progress, 0, label);
    let clock = Clock::start();
    let start = Instant::now() + Duration::from_millis(100);
    let stop_sending = start + Duration::from_secs(args.duration.max(1));
    let hard_stop = stop_sending + Duration::from_secs(args.drain);
    // The server's CPU is read for relay phases only: the echo runs in another process.
    let server_pid = match phase {
        Phase::Echo(_) => None,
        Phase::Relay { .. } => target.server_pid,
    };
    let progresses: Vec<Arc<Progress>> = (0..flows).map(|_| Arc::default()).collect();
    // Flow `i` receives the messages of flow `source(i)`: its own from the echo, its peer's
    // through the relay.
    let source = |i: usize| match phase {
        Phase::Echo(_) => i,
        Phase::Relay { .. } => i ^ 1,
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
            stop_sending,
            hard_stop,
        };
        let bar = bar.clone();
        let me = progresses.get(i).cloned().unwrap_or_default();
        let from = progresses.get(source(i)).cloned();
        tasks.spawn(async move {
            let result = flow::drive(&mut conn, &plan, &clock, &bar, &me, from.as_deref()).await;
            drop(conn);
            (i, result)
        });
    }
    let mut results: Vec<FlowResult> = vec![FlowResult::default(); flows];
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined?;
        if let Some(slot) = results.get_mut(i) {
            *slot = result;
        }
    }
    bar.finish_and_clear();
    let cpu = match (cpu_before, server_pid) {
        (Some(before), Some(pid)) => Some(procfs::cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    // Whatever is still undelivered counts as arriving now, and never before the end of the
    // drain.
    let end = clock.nanos(Instant::now().max(hard_stop));
    let mut tally = Tally::new()?;
    let (mut errors, mut first_error) = (0, None);
    for (i, receiver) in results.iter().enumerate() {
        let Some(sender) = results.get(source(i)) else {
            continue;
        };
        tally.add(
            &sender.stamps,
            sender.sent,
            &receiver.received,
            end,
            clock.nanos(stop_sending),
        );
        errors += receiver.errors;
        if first_error.is_none() {
            first_error.clone_from(&receiver.first_error);
        }
    }
    let count_limited = results.iter().all(|r| r.count_reached);
    let rate = tally.rate(
        clock.nanos(start),
        clock.nanos(stop_sending),
        count_limited,
        end,
    );
    #[allow(clippy::cast_precision_loss, reason = "small sizes")]
    let payload_mib_per_s = report::round2(rate.per_s * size as f64 / (1024.0 * 1024.0));
    let open_loop = matches!(pace, Pace::Interval(_));
    Ok(PhaseReport {
        scheduled: open_loop.then_some(tally.scheduled),
        sent: tally.sent,
        delivered: tally.delivered,
        lost: tally.lost,
        unsent: open_loop.then_some(tally.unsent),
        errors,
        first_error,
        msgs_per_s: rate.per_s,
        measured_s: rate.measured_s,
        payload_mib_per_s,
        latency: tally.latencies.summary(),
        server_cpu_us_per_msg: cpu.and_then(|cpu| per_event_us(cpu, tally.delivered)),
    })
}

/// Microseconds of `cpu` per event.
pub(crate) fn per_event_us(cpu: Duration, events: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per = (events > 0).then(|| cpu.as_secs_f64() * 1e6 / events as f64);
    per.map(report::round2)
}
