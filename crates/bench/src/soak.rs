//! `soak`: device pairs exchanging MSG frames at a fixed offered rate for a long time, while
//! the server's resident memory and open file descriptors are sampled at a fixed interval.
//!
//! A device whose connection the server ends reconnects and fetches what was queued for it
//! ([`crate::soak_flow`]). The accounting: `lost` is a message the server ACKed to its sender
//! that never reached the recipient by the end of the drain phase; `unconfirmed` one sent on a
//! connection that ended before the server ACKed it, and that never arrived; `duplicates` are
//! second arrivals; `disconnects` and `reconnects` are counted apart; `errors` is anything
//! unexpected (an ERROR frame other than the `Slow Consumer` notice, a refused reconnection, a
//! send the server never accepted).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::SoakArgs;
use crate::flow::{self, Progress, Tally};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::procfs;
use crate::report;
use crate::soak_flow::{self, Device, Env, Schedule, SoakFlow};
use crate::target::{CONNECT_TIMEOUT, Target};

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
    /// Distinct messages that reached their recipient by the end of the drain phase.
    delivered: u64,
    /// ACKed by the server to the sender, never received.
    lost: u64,
    /// Of the lost: handed over by the server only when the device connected once more after
    /// the drain (still in its offline queue rather than gone).
    lost_but_queued: u64,
    /// Sent on a connection that ended before the server's ACK, never received.
    unconfirmed: u64,
    /// Arrivals of a message that had already arrived.
    duplicates: u64,
    unsent: u64,
    /// Connections the server ended (or that failed) during the run, and why.
    disconnects: u64,
    disconnect_reasons: BTreeMap<String, u64>,
    /// Successful reconnections with the same device identity.
    reconnects: u64,
    /// Delivery receipts the devices sent.
    receipts: u64,
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
    let conns = open(target, pairs).await?;
    let flows = conns.len();
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let interval = Duration::from_secs_f64(flows as f64 / rate as f64);
    let bar = report::progress(progress, 0, "soak");
    let clock = Clock::start();
    let start = Instant::now() + Duration::from_millis(100);
    let stop_sending = start + Duration::from_secs(args.duration.max(1));
    let hard_stop = stop_sending + Duration::from_secs(args.drain);
    let progresses: Vec<Arc<Progress>> = (0..flows).map(|_| Arc::default()).collect();
    let stall = Duration::from_secs_f64(args.stall_receiver.max(0.0));
    let mut tasks = JoinSet::new();
    for (i, (conn, device)) in conns.into_iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let offset = interval.mul_f64(i as f64 / flows as f64);
        let schedule = Schedule {
            size,
            interval,
            start: start + offset,
            stop_sending,
            hard_stop,
            stall: if i == 1 { stall } else { Duration::ZERO },
        };
        let bar = bar.clone();
        let me = progresses.get(i).cloned().unwrap_or_default();
        let from = progresses.get(i ^ 1).cloned().unwrap_or_default();
        tasks.spawn(async move {
            let env = Env {
                device: &device,
                schedule: &schedule,
                clock: &clock,
                bar: &bar,
                me: &me,
                source: &from,
            };
            let flow = soak_flow::drive(conn, env).await;
            (i, flow)
        });
    }

    // Sample the server until the flows end.
    let every = Duration::from_secs(args.sample_interval.max(1));
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval_at(start.into(), every);
    let mut results: Vec<SoakFlow> = vec![SoakFlow::default(); flows];
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
    let (mut disconnects, mut reconnects, mut receipts) = (0, 0, 0);
    let mut disconnect_reasons = BTreeMap::new();
    let mut lost_but_queued = 0;
    for (i, receiver) in results.iter().enumerate() {
        let Some(sender) = results.get(i ^ 1) else {
            continue;
        };
        lost_but_queued += late_but_queued(sender, receiver);
        tally.add_confirmed(
            &sender.result.stamps,
            sender.result.sent,
            Some(&sender.confirmed),
            &receiver.result.received,
            end,
            clock.nanos(stop_sending),
        );
        errors += receiver.result.errors;
        if first_error.is_none() {
            first_error.clone_from(&receiver.result.first_error);
        }
        disconnects += receiver.disconnects;
        reconnects += receiver.reconnects;
        receipts += receiver.receipts;
        for (why, n) in &receiver.closes {
            *disconnect_reasons.entry(why.clone()).or_insert(0) += n;
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
        lost_but_queued,
        unconfirmed: tally.unconfirmed,
        duplicates: tally.duplicates,
        unsent: tally.unsent,
        disconnects,
        disconnect_reasons,
        reconnects,
        receipts,
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

/// Messages of `sender` that the server ACKed, that `receiver` did not get during the run,
/// and that its final fetch returned.
fn late_but_queued(sender: &SoakFlow, receiver: &SoakFlow) -> u64 {
    if receiver.final_fetch.is_empty() {
        return 0;
    }
    let mut got = vec![false; sender.confirmed.len()];
    for &(n, _) in &receiver.result.received {
        if let Some(slot) = usize::try_from(n).ok().and_then(|n| got.get_mut(n)) {
            *slot = true;
        }
    }
    let mut late = std::collections::BTreeSet::new();
    for &n in &receiver.final_fetch {
        let Ok(i) = usize::try_from(n) else { continue };
        if sender.confirmed.get(i).copied().unwrap_or(false) && !got.get(i).copied().unwrap_or(true)
        {
            late.insert(n);
        }
    }
    u64::try_from(late.len()).unwrap_or(u64::MAX)
}

/// Opens `pairs` pairs of devices, each pair joined to its own channel, with
/// `delivery-receipts`; the two of a pair are adjacent (`2k` and `2k + 1`).
async fn open(target: &Target, pairs: usize) -> Result<Vec<(Connection<H2Stream>, Device)>> {
    let first_channel = target.channels(pairs)?;
    let mut tasks = JoinSet::new();
    for pair in 0..pairs {
        let target = target.clone();
        tasks.spawn(async move {
            let channel = first_channel + u32::try_from(pair)?;
            let options = soak_flow::receipts();
            let mut a_id = target.identity("sa", pair);
            let mut b_id = target.identity("sb", pair);
            let b = target.connect(2 * pair + 1, &b_id, &options).await?;
            b_id.adopt(b.info());
            let a = target.connect(2 * pair, &a_id, &options).await?;
            a_id.adopt(a.info());
            let (mut a, mut b) = (a.into_connection(), b.into_connection());
            flow::join(&mut a, channel, &[&a_id.device_id, &b_id.device_id]).await?;
            flow::wait_for(&mut b, "JOIN notice", CONNECT_TIMEOUT, |f| {
                f.frame_type() == commucat_ccp::FrameType::Join
            })
            .await?;
            let members = [a_id.device_id.clone(), b_id.device_id.clone()];
            let device = |index, identity| Device {
                target: target.clone(),
                index,
                identity,
                channel,
                members: members.clone(),
            };
            Ok::<_, anyhow::Error>([(a, device(2 * pair, a_id)), (b, device(2 * pair + 1, b_id))])
        });
    }
    let mut conns = Vec::with_capacity(2 * pairs);
    while let Some(joined) = tasks.join_next().await {
        conns.extend(joined??);
    }
    // Flow `i` receives from flow `i ^ 1`: keep each pair adjacent, in order.
    conns.sort_by_key(|(_, d)| d.index);
    Ok(conns)
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
