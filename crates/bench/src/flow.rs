//! One connection's send/receive loop, shared by the relay scenario and the echo baseline, and
//! helpers for waiting on particular frames.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use ccp::{Frame, FrameType, Problem};
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use indicatif::ProgressBar;

use crate::payload::Clock;
use crate::report::Latencies;

/// How long a finished flow keeps reading for deliveries still on their way.
const QUIET: Duration = Duration::from_secs(1);

/// What tells a sender that a message left its hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckBy {
    /// The server's ACK (relay).
    Ack,
    /// The message itself coming back (echo).
    Echo,
}

/// How fast a flow sends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// As fast as possible, with at most this many messages unacknowledged.
    Window(usize),
    /// One message per interval (open loop: latency counts from the scheduled time, so a
    /// server that falls behind is not hidden by the sender slowing down).
    Interval(Duration),
}

/// One flow's parameters.
#[derive(Debug, Clone)]
pub(crate) struct FlowPlan {
    pub(crate) channel: u32,
    pub(crate) size: usize,
    pub(crate) pace: Pace,
    pub(crate) count: u64,
    pub(crate) ack_by: AckBy,
    /// First send.
    pub(crate) start: Instant,
    /// No sends from here on.
    pub(crate) stop_sending: Instant,
    /// The flow ends here whatever is outstanding.
    pub(crate) hard_stop: Instant,
}

impl FlowPlan {
    fn msg(&self, stamp: Instant, n: u64) -> Msg {
        Msg {
            channel: self.channel,
            size: self.size,
            stamp,
            n,
        }
    }
}

/// What one flow (or several, merged) did.
#[derive(Debug, Clone)]
pub(crate) struct FlowResult {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) delivered: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) last_delivery: Option<Instant>,
    pub(crate) latencies: Latencies,
}

impl FlowResult {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            sent: 0,
            acked: 0,
            delivered: 0,
            errors: 0,
            first_error: None,
            last_delivery: None,
            latencies: Latencies::new()?,
        })
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.delivered += other.delivered;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.last_delivery = self.last_delivery.max(other.last_delivery);
        self.latencies.merge(&other.latencies);
    }

    fn fail(&mut self, why: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }
}

/// One MSG to send: its channel, size, stamp and number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg {
    pub(crate) channel: u32,
    pub(crate) size: usize,
    pub(crate) stamp: Instant,
    pub(crate) n: u64,
}

/// Sends one MSG; a server that stops reading fails it at `deadline`.
pub(crate) async fn send_msg(
    conn: &mut Connection<H2Stream>,
    clock: &Clock,
    msg: Msg,
    deadline: Instant,
) -> Result<()> {
    let sequence = conn.codec_mut().next_sequence()?;
    let frame = Frame::new(
        FrameType::Msg,
        msg.channel,
        sequence,
        clock.payload(msg.size, msg.stamp, msg.n),
    )?;
    tokio::time::timeout_at(deadline.into(), conn.send(&frame))
        .await
        .map_err(|_| {
            anyhow!("not accepted before the end of the run (the server fell behind)")
        })??;
    Ok(())
}

/// The title of an ERROR frame.
pub(crate) fn error_title(frame: &Frame) -> String {
    frame
        .parse_control::<Problem>()
        .ok()
        .and_then(|p| p.title)
        .unwrap_or_else(|| "untitled ERROR".to_owned())
}

/// Runs one flow until its plan is done; failures end up in the result, never as a panic.
pub(crate) async fn drive(
    conn: &mut Connection<H2Stream>,
    plan: &FlowPlan,
    clock: &Clock,
    bar: &ProgressBar,
) -> Result<FlowResult> {
    let mut result = FlowResult::new()?;
    let mut next_send = plan.start;
    let mut last_activity = Instant::now();
    tokio::time::sleep_until(plan.start.into()).await;
    loop {
        let now = Instant::now();
        if now >= plan.hard_stop {
            break;
        }
        let sending = result.sent < plan.count && now < plan.stop_sending;
        let in_flight = result.sent.saturating_sub(result.acked);
        if let Pace::Window(window) = plan.pace {
            let mut in_flight = in_flight;
            let window = u64::try_from(window).unwrap_or(u64::MAX);
            while sending && in_flight < window && result.sent < plan.count {
                if let Err(e) = send_msg(
                    conn,
                    clock,
                    plan.msg(Instant::now(), result.sent),
                    plan.hard_stop,
                )
                .await
                {
                    result.fail(format!("send: {e}"));
                    return Ok(result);
                }
                result.sent += 1;
                in_flight += 1;
            }
        }
        let idle = !sending && result.sent <= result.acked;
        if idle && (plan.ack_by == AckBy::Echo || now.duration_since(last_activity) >= QUIET) {
            break;
        }
        let wake = match plan.pace {
            Pace::Interval(_) if sending => next_send,
            _ if idle => last_activity + QUIET,
            _ => plan.hard_stop,
        }
        .min(plan.hard_stop);
        tokio::select! {
            filled = conn.fill() => {
                match filled {
                    Ok(true) => {}
                    Ok(false) => {
                        result.fail("server ended the stream".to_owned());
                        break;
                    }
                    Err(e) => {
                        result.fail(format!("receive: {e}"));
                        break;
                    }
                }
                let arrived = Instant::now();
                loop {
                    let frame = match conn.next_buffered() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(e) => {
                            result.fail(format!("receive: {e}"));
                            return Ok(result);
                        }
                    };
                    match frame.frame_type() {
                        FrameType::Msg => {
                            if let Some(latency) = clock.latency(frame.payload(), arrived) {
                                result.latencies.record(latency);
                            }
                            result.delivered += 1;
                            result.last_delivery = Some(arrived);
                            last_activity = arrived;
                            bar.inc(1);
                            if plan.ack_by == AckBy::Echo {
                                result.acked += 1;
                            }
                        }
                        FrameType::Ack if plan.ack_by == AckBy::Ack => result.acked += 1,
                        FrameType::Error => {
                            result.fail(error_title(&frame));
                            result.acked += 1;
                        }
                        _ => {}
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if let Pace::Interval(interval) = plan.pace {
                    while sending
                        && next_send <= Instant::now()
                        && next_send < plan.stop_sending
                        && result.sent < plan.count
                    {
                        if let Err(e) =
                            send_msg(conn, clock, plan.msg(next_send, result.sent), plan.hard_stop).await
                        {
                            result.fail(format!("send: {e}"));
                            return Ok(result);
                        }
                        result.sent += 1;
                        next_send += interval;
                    }
                }
            }
        }
    }
    Ok(result)
}

/// Reads frames until one matches `wanted` (others are dropped); an ERROR or `timeout` fails.
pub(crate) async fn wait_for<S: commucat_link::ByteStream>(
    conn: &mut Connection<S>,
    what: &str,
    timeout: Duration,
    wanted: impl Fn(&Frame) -> bool,
) -> Result<Frame> {
    let wait = async {
        loop {
            let frame = conn
                .recv()
                .await?
                .ok_or_else(|| anyhow!("server ended the stream waiting for {what}"))?;
            if wanted(&frame) {
                return Ok(frame);
            }
            if frame.frame_type() == FrameType::Error {
                bail!("ERROR {:?} waiting for {what}", error_title(&frame));
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| anyhow!("no {what} within {timeout:?}"))?
}

/// Sends JOIN of `channel` declaring `members` and waits for its ACK and member notice.
pub(crate) async fn join(
    conn: &mut Connection<H2Stream>,
    channel: u32,
    members: &[&str],
) -> Result<()> {
    let payload = serde_json::json!({"members": members, "relay": true});
    conn.send_control(FrameType::Join, channel, &payload)
        .await?;
    wait_for(conn, "JOIN ACK", crate::target::CONNECT_TIMEOUT, |f| {
        f.frame_type() == FrameType::Ack
    })
    .await?;
    wait_for(conn, "JOIN notice", crate::target::CONNECT_TIMEOUT, |f| {
        f.frame_type() == FrameType::Join && f.channel_id() == channel
    })
    .await?;
    Ok(())
}
