//! `fanout`: one sender, a channel of K members; every MSG is delivered K − 1 times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ccp::FrameType;
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::FanoutArgs;
use crate::flow::{self, FlowResult};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::procfs;
use crate::relay::per_event_us;
use crate::report::{self, LatencySummary};
use crate::target::{Target, options};

/// Time after the last send for deliveries still on their way.
const DRAIN: Duration = Duration::from_secs(15);

/// The result of `fanout`.
#[derive(Debug, Serialize)]
pub(crate) struct FanoutReport {
    scenario: &'static str,
    members: usize,
    size: usize,
    messages_sent: u64,
    deliveries_expected: u64,
    deliveries: u64,
    errors: u64,
    first_error: Option<String>,
    setup_s: f64,
    elapsed_s: f64,
    deliveries_per_s: f64,
    latency: LatencySummary,
    server_cpu_us_per_delivery: Option<f64>,
}

pub(crate) async fn run(
    target: &Target,
    args: &FanoutArgs,
    progress: bool,
) -> Result<FanoutReport> {
    let members = args.members.max(2);
    let size = args.size.max(MIN_PAYLOAD);
    let setup = Instant::now();
    let connected = open_members(target, members, args.concurrency.max(1), progress).await?;
    let mut sessions = connected.into_iter();
    let Some((sender_id, mut sender)) = sessions.next() else {
        bail!("no members connected");
    };
    let receivers: Vec<_> = sessions.collect();
    let mut ids: Vec<&str> = vec![sender_id.as_str()];
    ids.extend(receivers.iter().map(|(id, _)| id.as_str()));
    let channel = target.channels(1)?;
    flow::join(&mut sender, channel, &ids).await?;
    let setup_s = report::round2(setup.elapsed().as_secs_f64());

    let fan = u64::try_from(receivers.len())?;
    let expected = args.messages * fan;
    let bar = report::progress(progress, expected, "deliveries");
    let delivered = Arc::new(AtomicU64::new(0));
    let clock = Clock::start();
    let start = Instant::now();
    let stop_sending = start + Duration::from_secs(args.duration.max(1));
    let hard_stop = stop_sending + DRAIN;
    let cpu_before = target.server_pid.map(procfs::cpu_time).transpose()?;

    let mut tasks = JoinSet::new();
    for (_, mut conn) in receivers {
        let delivered = Arc::clone(&delivered);
        let bar = bar.clone();
        let wanted = args.messages;
        tasks.spawn(async move {
            let result = receive(
                &mut conn, channel, wanted, hard_stop, &clock, &delivered, &bar,
            )
            .await;
            drop(conn);
            result
        });
    }
    let mut sent = 0u64;
    let mut send_errors = FlowResult::new()?;
    while sent < args.messages && Instant::now() < stop_sending {
        // At most `window` messages not yet delivered to everyone.
        let done = delivered.load(Ordering::Relaxed) / fan.max(1);
        if sent >= done + args.window.max(1) {
            tokio::select! {
                filled = sender.fill() => if filled.is_err() || filled.is_ok_and(|more| !more) {
                    bail!("the server ended the sender's stream");
                },
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
            drain_acks(&mut sender, &mut send_errors)?;
            continue;
        }
        let msg = flow::Msg {
            channel,
            size,
            stamp: Instant::now(),
            n: sent,
        };
        flow::send_msg(&mut sender, &clock, msg, hard_stop).await?;
        sent += 1;
        // Take in the ACKs that have arrived, so the server never waits for the sender to read.
        while let Some(Ok(true)) = sender.fill().now_or_never() {}
        drain_acks(&mut sender, &mut send_errors)?;
    }
    let mut total = FlowResult::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(&joined??);
    }
    let elapsed = total
        .last_delivery
        .map_or(Duration::ZERO, |last| last.saturating_duration_since(start));
    bar.finish_and_clear();
    let cpu = match (cpu_before, target.server_pid) {
        (Some(before), Some(pid)) => Some(procfs::cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    total.merge(&send_errors);
    Ok(FanoutReport {
        scenario: "fanout",
        members,
        size,
        messages_sent: sent,
        deliveries_expected: sent * fan,
        deliveries: total.delivered,
        errors: total.errors,
        first_error: total.first_error,
        setup_s,
        elapsed_s: report::round2(elapsed.as_secs_f64()),
        deliveries_per_s: report::per_second(total.delivered, elapsed),
        latency: total.latencies.summary(),
        server_cpu_us_per_delivery: cpu.and_then(|cpu| per_event_us(cpu, total.delivered)),
    })
}

/// Connects `members` new devices, `concurrency` at a time.
async fn open_members(
    target: &Target,
    members: usize,
    concurrency: usize,
    progress: bool,
) -> Result<Vec<(String, Connection<H2Stream>)>> {
    let bar = report::progress(progress, u64::try_from(members)?, "joining");
    let connects = futures_util::stream::iter(0..members)
        .map(|i| {
            let bar = bar.clone();
            async move {
                let identity = target.identity("f", i);
                let session = target.connect(i, &identity, &options(false, false)).await?;
                bar.inc(1);
                Ok::<_, anyhow::Error>((identity.device_id, session.into_connection()))
            }
        })
        .buffered(concurrency);
    let connected: Vec<_> = connects.collect().await;
    bar.finish_and_clear();
    connected.into_iter().collect()
}

/// Takes the frames already buffered on the sender's link (ACKs), counting ERRORs.
fn drain_acks(conn: &mut Connection<H2Stream>, errors: &mut FlowResult) -> Result<()> {
    while let Some(frame) = conn.next_buffered()? {
        if frame.frame_type() == FrameType::Error {
            errors.errors += 1;
            errors
                .first_error
                .get_or_insert_with(|| flow::error_title(&frame));
        }
    }
    Ok(())
}

/// One member: counts MSGs on `channel` until `wanted` arrived or `hard_stop`.
async fn receive(
    conn: &mut Connection<H2Stream>,
    channel: u32,
    wanted: u64,
    hard_stop: Instant,
    clock: &Clock,
    delivered: &AtomicU64,
    bar: &indicatif::ProgressBar,
) -> Result<FlowResult> {
    let mut result = FlowResult::new()?;
    while result.delivered < wanted {
        let frame = tokio::select! {
            frame = conn.recv() => frame,
            () = tokio::time::sleep_until(hard_stop.into()) => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| "server ended a member's stream".to_owned());
                break;
            }
            Err(e) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| format!("receive: {e}"));
                break;
            }
        };
        match frame.frame_type() {
            FrameType::Msg if frame.channel_id() == channel => {
                let now = Instant::now();
                if let Some(latency) = clock.latency(frame.payload(), now) {
                    result.latencies.record(latency);
                }
                result.delivered += 1;
                result.last_delivery = Some(now);
                delivered.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            }
            FrameType::Error => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| flow::error_title(&frame));
            }
            _ => {}
        }
    }
    Ok(result)
}
