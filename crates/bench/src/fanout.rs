//! `fanout`: one sender, a channel of K members; every MSG is delivered K − 1 times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use commucat_ccp::FrameType;
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::FanoutArgs;
use crate::flow::{self, FlowResult, Progress, Tally};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::procfs;
use crate::relay::per_event_us;
use crate::report::{self, LatencySummary};
use crate::target::{Target, options};

/// Time after the sending phase for deliveries still on their way.
const DRAIN: Duration = Duration::from_secs(15);

/// How often a member with everything received so far checks whether the sender is done.
const POLL: Duration = Duration::from_millis(20);

/// The result of `fanout`.
#[derive(Debug, Serialize)]
pub(crate) struct FanoutReport {
    scenario: &'static str,
    members: usize,
    size: usize,
    messages_sent: u64,
    /// `messages_sent × (members − 1)`.
    deliveries_expected: u64,
    /// Distinct (message, member) deliveries by the end of the run.
    deliveries: u64,
    /// `deliveries_expected − deliveries`.
    lost: u64,
    errors: u64,
    first_error: Option<String>,
    setup_s: f64,
    /// The measured phase: from the first send to the last delivery when the sender sent all
    /// its messages and nothing was lost; to the end of the run if something was lost; the
    /// sending phase (`--duration`) if the sender ran out of time, counting only the
    /// deliveries within it.
    elapsed_s: f64,
    deliveries_per_s: f64,
    /// One entry per expected delivery; one that never happened counts as happening at the
    /// end of the run.
    latency: LatencySummary,
    server_cpu_us_per_delivery: Option<f64>,
}

/// Member ids the sender declares per JOIN (the server's default
/// `bounds.declared_members_per_join`).
const DECLARED_PER_JOIN: usize = 64;

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
    // A JOIN declares at most `bounds.declared_members_per_join` ids (64 by default).
    for declared in ids.chunks(DECLARED_PER_JOIN) {
        flow::join(&mut sender, channel, declared).await?;
    }
    let setup_s = report::round2(setup.elapsed().as_secs_f64());

    let fan = u64::try_from(receivers.len())?;
    let bar = report::progress(progress, args.messages * fan, "deliveries");
    let delivered = Arc::new(AtomicU64::new(0));
    let sending = Arc::new(Progress::default());
    let clock = Clock::start();
    let start = Instant::now();
    let stop_sending = start + Duration::from_secs(args.duration.max(1));
    let hard_stop = stop_sending + DRAIN;
    let cpu_before = target.server_pid.map(procfs::cpu_time).transpose()?;

    let mut tasks = JoinSet::new();
    for (_, mut conn) in receivers {
        let delivered = Arc::clone(&delivered);
        let sending = Arc::clone(&sending);
        let bar = bar.clone();
        tasks.spawn(async move {
            let result = receive(
                &mut conn, channel, &sending, hard_stop, &clock, &delivered, &bar,
            )
            .await;
            drop(conn);
            result
        });
    }
    let mut send = FlowResult::default();
    send_all(
        &mut sender,
        &SendPlan {
            channel,
            size,
            messages: args.messages,
            window: args.window.max(1),
            fan,
            stop_sending,
            hard_stop,
        },
        &clock,
        &delivered,
        &sending,
        &mut send,
    )
    .await;
    sending.finish();
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined?);
    }
    bar.finish_and_clear();
    let cpu = match (cpu_before, target.server_pid) {
        (Some(before), Some(pid)) => Some(procfs::cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    let end = clock.nanos(Instant::now().max(hard_stop));
    let mut tally = Tally::new()?;
    let (mut errors, mut first_error) = (send.errors, send.first_error.clone());
    for result in &results {
        tally.add(
            &send.stamps,
            send.sent,
            &result.received,
            end,
            clock.nanos(stop_sending),
        );
        errors += result.errors;
        if first_error.is_none() {
            first_error.clone_from(&result.first_error);
        }
    }
    let rate = tally.rate(
        clock.nanos(start),
        clock.nanos(stop_sending),
        send.count_reached,
        end,
    );
    Ok(FanoutReport {
        scenario: "fanout",
        members,
        size,
        messages_sent: send.sent,
        deliveries_expected: send.sent * fan,
        deliveries: tally.delivered,
        lost: tally.lost,
        errors,
        first_error,
        setup_s,
        elapsed_s: rate.measured_s,
        deliveries_per_s: rate.per_s,
        latency: tally.latencies.summary(),
        server_cpu_us_per_delivery: cpu.and_then(|cpu| per_event_us(cpu, tally.delivered)),
    })
}

/// The sender's parameters.
struct SendPlan {
    channel: u32,
    size: usize,
    messages: u64,
    /// Messages not yet delivered to every member, at most.
    window: u64,
    /// Receivers.
    fan: u64,
    stop_sending: Instant,
    hard_stop: Instant,
}

/// Sends the messages, at most `window` ahead of the receivers; a failure stops the sending
/// and is recorded in `result` (the messages it sent stay accounted for).
async fn send_all(
    sender: &mut Connection<H2Stream>,
    plan: &SendPlan,
    clock: &Clock,
    delivered: &AtomicU64,
    progress: &Progress,
    result: &mut FlowResult,
) {
    while result.sent < plan.messages && Instant::now() < plan.stop_sending {
        // At most `window` messages not yet delivered to everyone.
        let done = delivered.load(Ordering::Relaxed) / plan.fan.max(1);
        if result.sent >= done + plan.window {
            tokio::select! {
                filled = sender.fill() => match filled {
                    Ok(true) => {}
                    Ok(false) => {
                        result.fail("the server ended the sender's stream".to_owned());
                        return;
                    }
                    Err(e) => {
                        result.fail(format!("sender: receive: {e}"));
                        return;
                    }
                },
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
            if let Err(e) = drain_acks(sender, result) {
                result.fail(format!("sender: receive: {e}"));
                return;
            }
            continue;
        }
        let stamp = Instant::now();
        let msg = flow::Msg {
            channel: plan.channel,
            size: plan.size,
            stamp,
            n: result.sent,
        };
        if let Err(e) = flow::send_msg(sender, clock, msg, plan.hard_stop).await {
            result.fail(format!("send: {e}"));
            return;
        }
        result.sent += 1;
        result.stamps.push(clock.nanos(stamp));
        progress.sent_one();
        // Take in the ACKs that have arrived, so the server never waits for the sender to read.
        while let Some(Ok(true)) = sender.fill().now_or_never() {}
        if let Err(e) = drain_acks(sender, result) {
            result.fail(format!("sender: receive: {e}"));
            return;
        }
    }
    result.count_reached = result.sent >= plan.messages;
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
fn drain_acks(conn: &mut Connection<H2Stream>, result: &mut FlowResult) -> Result<()> {
    while let Some(frame) = conn.next_buffered()? {
        if frame.frame_type() == FrameType::Error {
            result.refused += 1;
            result.fail(flow::error_title(&frame));
        }
    }
    Ok(())
}

/// One member: records the MSGs on `channel` until all the sender sent has arrived, or
/// `hard_stop`.
async fn receive(
    conn: &mut Connection<H2Stream>,
    channel: u32,
    sender: &Progress,
    hard_stop: Instant,
    clock: &Clock,
    delivered: &AtomicU64,
    bar: &indicatif::ProgressBar,
) -> FlowResult {
    let mut result = FlowResult::default();
    while !sender.all_in(result.delivered) && Instant::now() < hard_stop {
        let wake = (Instant::now() + POLL).min(hard_stop);
        let frame = tokio::select! {
            frame = conn.recv() => frame,
            () = tokio::time::sleep_until(wake.into()) => continue,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                result.fail("server ended a member's stream".to_owned());
                break;
            }
            Err(e) => {
                result.fail(format!("receive: {e}"));
                break;
            }
        };
        match frame.frame_type() {
            FrameType::Msg if frame.channel_id() == channel => {
                result.arrived(clock, frame.payload(), Instant::now());
                delivered.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            }
            FrameType::Error => result.fail(flow::error_title(&frame)),
            _ => {}
        }
    }
    result
}
