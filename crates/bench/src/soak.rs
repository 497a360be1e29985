//! `soak`: device pairs exchanging MSG frames at a fixed offered rate for a long time, while
//! the server's resident memory and open file descriptors are sampled at a fixed interval.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::SoakArgs;
use crate::flow::{self, AckBy, FlowPlan, FlowResult, Pace, Progress, Tally};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::procfs;
use crate::relay;
use crate::report;
use crate::target::Target;

/// One reading of the server process.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Sample {
    /// Seconds since the sending phase began.
    t_s: f64,
    rss_bytes: u64,
    open_fds: u64,
    /// Messages delivered so far, over all receivers.
    delivered: u64,
}

/// The result of `soak`.
#[derive(Debug, Serialize)]
pub(crate) struct SoakReport {
    scenario: &'static str,
    pairs: usize,
    size: usize,
    offered_rate: u64,
    duration_s: u64,
    sample_interval_s: u64,
    scheduled: u64,
    sent: u64,
    delivered: u64,
    lost: u64,
    unsent: u64,
    errors: u64,
    first_error: Option<String>,
    msgs_per_s: f64,
    samples: usize,
    /// Readings after the warm-up (the first tenth of the run) only: the steady state.
    rss_first_mib: f64,
    rss_last_mib: f64,
    rss_min_mib: f64,
    rss_max_mib: f64,
    fds_first: u64,
    fds_last: u64,
    fds_min: u64,
    fds_max: u64,
    /// Least-squares slope of RSS over the steady state, MiB per hour.
    rss_slope_mib_per_h: f64,
    latency: report::LatencySummary,
}

/// Open file descriptors of `pid` (entries of `/proc/PID/fd`).
fn open_fds(pid: u32) -> Result<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("reading /proc/{pid}/fd"))?;
    Ok(u64::try_from(entries.count()).unwrap_or(u64::MAX))
}

fn mib(bytes: u64) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "memory sizes far below 2^52")]
    let mib = bytes as f64 / (1024.0 * 1024.0);
    report::round2(mib)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "few points")]
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if var > 0.0 { cov / var } else { 0.0 }
}

/// Writes the samples as CSV (`t_s,rss_bytes,open_fds,delivered`).
fn write_csv(path: &Path, samples: &[Sample]) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(out, "t_s,rss_bytes,open_fds,delivered")?;
    for s in samples {
        writeln!(
            out,
            "{},{},{},{}",
            s.t_s, s.rss_bytes, s.open_fds, s.delivered
        )?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) async fn run(target: &Target, args: &SoakArgs, progress: bool) -> Result<SoakReport> {
    let pid = target
        .server_pid
        .ok_or_else(|| anyhow!("soak samples the server process: give --server-pid"))?;
    let pairs = args.pairs.max(1);
    let size = args.size.max(MIN_PAYLOAD);
    let rate = args.rate.max(1);
    let conns = relay::open(target, pairs, relay::Phase::Relay { noise: false }).await?;
    let flows = conns.len();
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let interval = Duration::from_secs_f64(flows as f64 / rate as f64);
    let bar = report::progress(progress, 0, "soak");
    let clock = Clock::start();
    let start = Instant::now() + Duration::from_millis(100);
    let stop_sending = start + Duration::from_secs(args.duration.max(1));
    let hard_stop = stop_sending + Duration::from_secs(args.drain);
    let progresses: Vec<Arc<Progress>> = (0..flows).map(|_| Arc::default()).collect();
    let mut tasks = JoinSet::new();
    for (i, (mut conn, channel)) in conns.into_iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let offset = interval.mul_f64(i as f64 / flows as f64);
        let plan = FlowPlan {
            channel,
            size,
            pace: Pace::Interval(interval),
            count: u64::MAX,
            ack_by: AckBy::Ack,
            start: start + offset,
            stop_sending,
            hard_stop,
        };
        let bar = bar.clone();
        let me = progresses.get(i).cloned().unwrap_or_default();
        let from = progresses.get(i ^ 1).cloned();
        tasks.spawn(async move {
            let result = flow::drive(&mut conn, &plan, &clock, &bar, &me, from.as_deref()).await;
            drop(conn);
            (i, result)
        });
    }

    // Sample the server until the flows end.
    let every = Duration::from_secs(args.sample_interval.max(1));
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval_at(start.into(), every);
    let mut results: Vec<FlowResult> = vec![FlowResult::default(); flows];
    let mut pending = flows;
    while pending > 0 {
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let (i, result) = joined?;
                if let Some(slot) = results.get_mut(i) {
                    *slot = result;
                }
                pending -= 1;
            }
            _ = ticker.tick() => {
                let sample = Sample {
                    t_s: report::round2(start.elapsed().as_secs_f64()),
                    rss_bytes: procfs::rss_bytes(pid)?,
                    open_fds: open_fds(pid)?,
                    delivered: bar.position(),
                };
                samples.push(sample);
                if let Some(path) = &args.samples {
                    write_csv(path, &samples)?;
                }
            }
        }
    }
    bar.finish_and_clear();

    let end = clock.nanos(Instant::now().max(hard_stop));
    let mut tally = Tally::new()?;
    let (mut errors, mut first_error) = (0, None);
    for (i, receiver) in results.iter().enumerate() {
        let Some(sender) = results.get(i ^ 1) else {
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
    let measured = tally.rate(clock.nanos(start), clock.nanos(stop_sending), false, end);

    #[allow(clippy::cast_precision_loss, reason = "durations in seconds")]
    let warm_up = args.duration as f64 / 10.0;
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= warm_up).collect();
    let rss: Vec<u64> = steady.iter().map(|s| s.rss_bytes).collect();
    let fds: Vec<u64> = steady.iter().map(|s| s.open_fds).collect();
    #[allow(clippy::cast_precision_loss, reason = "memory sizes far below 2^52")]
    let points: Vec<(f64, f64)> = steady
        .iter()
        .map(|s| (s.t_s / 3600.0, s.rss_bytes as f64 / (1024.0 * 1024.0)))
        .collect();
    Ok(SoakReport {
        scenario: "soak",
        pairs,
        size,
        offered_rate: rate,
        duration_s: args.duration,
        sample_interval_s: every.as_secs(),
        scheduled: tally.scheduled,
        sent: tally.sent,
        delivered: tally.delivered,
        lost: tally.lost,
        unsent: tally.unsent,
        errors,
        first_error,
        msgs_per_s: measured.per_s,
        samples: samples.len(),
        rss_first_mib: mib(rss.first().copied().unwrap_or(0)),
        rss_last_mib: mib(rss.last().copied().unwrap_or(0)),
        rss_min_mib: mib(rss.iter().copied().min().unwrap_or(0)),
        rss_max_mib: mib(rss.iter().copied().max().unwrap_or(0)),
        fds_first: fds.first().copied().unwrap_or(0),
        fds_last: fds.last().copied().unwrap_or(0),
        fds_min: fds.iter().copied().min().unwrap_or(0),
        fds_max: fds.iter().copied().max().unwrap_or(0),
        rss_slope_mib_per_h: report::round2(slope(&points)),
        latency: tally.latencies.summary(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)];
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        assert!(slope(&[(0.0, 4.0), (1.0, 4.0)]).abs() < 1e-9);
        assert!(slope(&[(0.0, 4.0)]).abs() < 1e-9);
    }

    #[test]
    fn counts_this_process_fds() {
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }
}
