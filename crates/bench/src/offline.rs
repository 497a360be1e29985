//! `offline`: queue N envelopes for a device that is not connected, reconnect it, and time
//! the replay.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ccp::FrameType;
use serde::Serialize;

use crate::args::OfflineArgs;
use crate::flow::{self, AckBy, FlowPlan, Pace};
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::report::{self, LatencySummary};
use crate::target::{Target, options};

/// The result of `offline`.
#[derive(Debug, Serialize)]
pub(crate) struct OfflineReport {
    scenario: &'static str,
    envelopes: u64,
    size: usize,
    queued: u64,
    queue_errors: u64,
    first_queue_error: Option<String>,
    /// Sending N MSGs to the offline member, each ACKed once durable.
    queue_s: f64,
    queued_per_s: f64,
    /// Connect + handshake of the returning device.
    reconnect_ms: f64,
    /// From the handshake ACK to the last replayed envelope.
    replay_ms: f64,
    replayed: u64,
    replayed_per_s: f64,
    /// Time each envelope spent queued (from its send to its replay).
    queued_latency: LatencySummary,
}

pub(crate) async fn run(
    target: &Target,
    args: &OfflineArgs,
    progress: bool,
) -> Result<OfflineReport> {
    let size = args.size.max(MIN_PAYLOAD);
    let limit = Duration::from_secs(args.duration.max(1));
    let receiver = target.register(1, target.identity("ob", 0)).await?;
    let sender_id = target.identity("oa", 0);
    let mut sender = target
        .connect(0, &sender_id, &options(false, false))
        .await?
        .into_connection();
    let channel = target.channels(1)?;
    flow::join(
        &mut sender,
        channel,
        &[&sender_id.device_id, &receiver.device_id],
    )
    .await?;

    let clock = Clock::start();
    let bar = report::progress(progress, args.envelopes, "queueing");
    let start = Instant::now();
    let plan = FlowPlan {
        channel,
        size,
        pace: Pace::Window(args.window.max(1)),
        count: args.envelopes,
        ack_by: AckBy::Ack,
        start,
        stop_sending: start + limit,
        hard_stop: start + limit + Duration::from_secs(10),
    };
    let queued = flow::drive(&mut sender, &plan, &clock, &bar).await?;
    let queue_s = start.elapsed();
    bar.finish_and_clear();
    drop(sender);

    let expected = queued.acked.saturating_sub(queued.errors);
    let bar = report::progress(progress, expected, "replaying");
    let connect_start = Instant::now();
    let mut conn = target
        .connect(1, &receiver, &options(false, false))
        .await?
        .into_connection();
    let handshake_done = Instant::now();
    let mut latencies = report::Latencies::new()?;
    let mut replayed = 0u64;
    let mut last = handshake_done;
    let deadline = handshake_done + limit;
    while replayed < expected {
        let frame = tokio::select! {
            frame = conn.recv() => frame?,
            () = tokio::time::sleep_until(deadline.into()) => break,
        };
        let Some(frame) = frame else {
            bail!("the server ended the stream after {replayed} replayed envelopes");
        };
        if frame.frame_type() == FrameType::Msg && frame.channel_id() == channel {
            last = Instant::now();
            if let Some(latency) = clock.latency(frame.payload(), last) {
                latencies.record(latency);
            }
            replayed += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let replay = last.saturating_duration_since(handshake_done);
    Ok(OfflineReport {
        scenario: "offline",
        envelopes: args.envelopes,
        size,
        queued: expected,
        queue_errors: queued.errors,
        first_queue_error: queued.first_error,
        queue_s: report::round2(queue_s.as_secs_f64()),
        queued_per_s: report::per_second(expected, queue_s),
        reconnect_ms: report::round2(
            handshake_done.duration_since(connect_start).as_secs_f64() * 1e3,
        ),
        replay_ms: report::round2(replay.as_secs_f64() * 1e3),
        replayed,
        replayed_per_s: report::per_second(replayed, replay),
        queued_latency: latencies.summary(),
    })
}
