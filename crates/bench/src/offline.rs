//! `offline`: queue N envelopes for a device that is not connected, from one or more concurrent
//! senders (each with its own connection and channel), reconnect it, and time the replay.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use commucat_ccp::FrameType;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::OfflineArgs;
use crate::flow::{self, AckBy, FlowPlan, FlowResult, Pace, Progress, Tally};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::report::{self, LatencySummary};
use crate::target::{Target, options};

/// The result of `offline`.
#[derive(Debug, Serialize)]
pub(crate) struct OfflineReport {
    scenario: &'static str,
    envelopes: u64,
    /// Concurrent senders sharing the envelopes out.
    senders: usize,
    size: usize,
    sent: u64,
    /// MSGs the server acknowledged as queued (sent minus refused).
    queued: u64,
    queue_errors: u64,
    first_queue_error: Option<String>,
    /// Sending N MSGs to the offline member, each ACKed once durable.
    queue_s: f64,
    queued_per_s: f64,
    /// Connect + handshake of the returning device.
    reconnect_ms: f64,
    /// From the handshake ACK to the last replayed envelope; if some never came, to the end
    /// of the wait for them (`--duration`).
    replay_ms: f64,
    /// Distinct envelopes replayed.
    replayed: u64,
    /// Sent and never replayed (refused ones included: they are also `queue_errors`).
    lost: u64,
    replayed_per_s: f64,
    /// Time each envelope spent queued (from its send to its replay); one that never came
    /// counts as replayed at the end of the wait.
    queued_latency: LatencySummary,
}

pub(crate) async fn run(
    target: &Target,
    args: &OfflineArgs,
    progress: bool,
) -> Result<OfflineReport> {
    let size = args.size.max(MIN_PAYLOAD);
    let limit = Duration::from_secs(args.duration.max(1));
    let senders = args.senders.max(1);
    let receiver = target.register(0, target.identity("ob", 0)).await?;
    let first_channel = target.channels(senders)?;
    // Each sender its own connection and channel (with the receiver as the other member).
    let mut connections = Vec::with_capacity(senders);
    for i in 0..senders {
        let sender_id = target.identity("oa", i);
        let mut sender = target
            .connect(i + 1, &sender_id, &options(false, false))
            .await?
            .into_connection();
        let channel = first_channel + u32::try_from(i)?;
        flow::join(
            &mut sender,
            channel,
            &[&sender_id.device_id, &receiver.device_id],
        )
        .await?;
        connections.push((channel, sender));
    }

    let clock = Clock::start();
    let bar = report::progress(progress, args.envelopes, "queueing");
    let start = Instant::now();
    let per_sender = args.envelopes / senders as u64;
    let mut tasks = JoinSet::new();
    for (i, (channel, mut sender)) in connections.into_iter().enumerate() {
        // The first senders take the remainder.
        let count = per_sender + u64::from((i as u64) < args.envelopes % senders as u64);
        let plan = FlowPlan {
            channel,
            size,
            pace: Pace::Window(args.window.max(1)),
            count,
            ack_by: AckBy::Ack,
            start,
            stop_sending: start + limit,
            hard_stop: start + limit + Duration::from_secs(10),
        };
        let bar = bar.clone();
        // Nothing comes back on these connections: a flow ends once every MSG is acknowledged.
        tasks.spawn(async move {
            let result =
                flow::drive(&mut sender, &plan, &clock, &bar, &Progress::default(), None).await;
            (channel, result)
        });
    }
    let mut queued: BTreeMap<u32, FlowResult> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (channel, result) = done?;
        queued.insert(channel, result);
    }
    let queue_s = start.elapsed();
    bar.finish_and_clear();

    let acked: u64 = queued.values().map(|q| q.acked).sum();
    let refused: u64 = queued.values().map(|q| q.refused).sum();
    let expected = acked.saturating_sub(refused);
    let bar = report::progress(progress, expected, "replaying");
    let connect_start = Instant::now();
    let mut conn = target
        .connect(0, &receiver, &options(false, false))
        .await?
        .into_connection();
    let handshake_done = Instant::now();
    let mut replays: BTreeMap<u32, FlowResult> = queued
        .keys()
        .map(|&channel| (channel, FlowResult::default()))
        .collect();
    let mut replayed = 0;
    let mut last = handshake_done;
    let deadline = handshake_done + limit;
    let mut complete = true;
    while replayed < expected {
        let frame = tokio::select! {
            frame = conn.recv() => frame?,
            () = tokio::time::sleep_until(deadline.into()) => {
                complete = false;
                break;
            }
        };
        let Some(frame) = frame else {
            bail!("the server ended the stream after {replayed} replayed envelopes");
        };
        if frame.frame_type() == FrameType::Msg
            && let Some(replay) = replays.get_mut(&frame.channel_id())
        {
            last = Instant::now();
            replay.arrived(&clock, frame.payload(), last);
            replayed += 1;
            bar.inc(1);
        }
    }
    let end = if complete { last } else { Instant::now() };
    bar.finish_and_clear();
    let mut tally = Tally::new()?;
    for (channel, sent) in &queued {
        if let Some(replay) = replays.get(channel) {
            tally.add(
                &sent.stamps,
                sent.sent,
                &replay.received,
                clock.nanos(end),
                clock.nanos(end),
            );
        }
    }
    let replay_time = end.saturating_duration_since(handshake_done);
    Ok(OfflineReport {
        scenario: "offline",
        envelopes: args.envelopes,
        senders,
        size,
        sent: queued.values().map(|q| q.sent).sum(),
        queued: expected,
        queue_errors: queued.values().map(|q| q.errors).sum(),
        first_queue_error: queued.values().find_map(|q| q.first_error.clone()),
        queue_s: report::round2(queue_s.as_secs_f64()),
        queued_per_s: report::per_second(expected, queue_s),
        reconnect_ms: report::round2(
            handshake_done.duration_since(connect_start).as_secs_f64() * 1e3,
        ),
        replay_ms: report::round2(replay_time.as_secs_f64() * 1e3),
        replayed: tally.delivered,
        lost: tally.lost,
        replayed_per_s: report::per_second(tally.delivered, replay_time),
        queued_latency: tally.latencies.summary(),
    })
}
