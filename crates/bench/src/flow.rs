//! One connection's send/receive loop, shared by the relay scenario and the echo baseline; the
//! accounting of every message offered (delivered, lost or never sent); helpers for waiting on
//! particular frames.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use indicatif::ProgressBar;

use crate::payload::Clock;
use crate::report::{self, Latencies};

/// How often a flow with nothing left to send checks whether its source has finished.
const POLL: Duration = Duration::from_millis(20);

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

/// What a sending flow publishes for the flow that receives its messages: how many it has
/// sent, and whether it will send more.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    sent: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    pub(crate) fn sent_one(&self) {
        self.sent.fetch_add(1, Ordering::Release);
    }

    /// No more sends.
    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::Release);
    }

    /// Whether the flow has stopped sending and `received` covers all it sent.
    pub(crate) fn all_in(&self, received: u64) -> bool {
        self.done.load(Ordering::Acquire) && received >= self.sent.load(Ordering::Acquire)
    }
}

/// What one flow did, with the log of its messages for [`Tally::add`].
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowResult {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    /// MSGs the server refused with an ERROR.
    pub(crate) refused: u64,
    /// MSG frames received (every arrival, duplicates included).
    pub(crate) delivered: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// The flow stopped sending because it had sent `count` (not because the sending phase
    /// ended, nor because of an error).
    pub(crate) count_reached: bool,
    /// Send time (clock nanoseconds) of message `n` at index `n`: first the `sent` ones, then,
    /// in open loop, those whose time came during the sending phase but that were never sent.
    pub(crate) stamps: Vec<u64>,
    /// Number and arrival time (clock nanoseconds) of every MSG received.
    pub(crate) received: Vec<(u64, u64)>,
}

impl FlowResult {
    pub(crate) fn fail(&mut self, why: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }

    fn sent_one(&mut self, stamp: u64, progress: &Progress) {
        self.sent += 1;
        self.stamps.push(stamp);
        progress.sent_one();
    }

    /// Records an arriving MSG (its number, if its payload carries one).
    pub(crate) fn arrived(&mut self, clock: &Clock, payload: &[u8], at: Instant) {
        self.delivered += 1;
        if let Some(n) = Clock::number(payload) {
            self.received.push((n, clock.nanos(at)));
        }
    }
}

/// The accounting of a run's messages, sender by sender against what their receivers got.
///
/// Every message offered ends in the latency histogram exactly once: a delivered one with its
/// real latency (first arrival minus send time), one that never arrived (lost, or due but never
/// sent) with the time from its send time to the end of the run — a lower bound of a latency
/// that is really unbounded, so neither a failing flow nor a saturated server can make its
/// worst messages disappear from the percentiles (no coordinated omission).
#[derive(Debug)]
pub(crate) struct Tally {
    /// Messages offered: sent, plus (open loop) due but never sent.
    pub(crate) scheduled: u64,
    pub(crate) sent: u64,
    /// Distinct messages that arrived at least once.
    pub(crate) delivered: u64,
    /// Of those, the ones that arrived by the end of the sending phase.
    pub(crate) delivered_while_sending: u64,
    /// Sent, never arrived (and, when the sender tracked confirmations, ACKed by the server).
    pub(crate) lost: u64,
    /// Sent, never arrived, and never ACKed by the server (its connection ended first), when
    /// the sender tracked confirmations: not lost, the server never took responsibility.
    pub(crate) unconfirmed: u64,
    /// Arrivals of a message that had already arrived.
    pub(crate) duplicates: u64,
    /// Due during the sending phase, never sent (open loop only).
    pub(crate) unsent: u64,
    /// Arrival of the last delivered message (clock nanoseconds).
    pub(crate) last_arrival: u64,
    pub(crate) latencies: Latencies,
}

impl Tally {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            scheduled: 0,
            sent: 0,
            delivered: 0,
            delivered_while_sending: 0,
            lost: 0,
            unconfirmed: 0,
            duplicates: 0,
            unsent: 0,
            last_arrival: 0,
            latencies: Latencies::new()?,
        })
    }

    /// Adds one sender's messages (`stamps`, of which the first `sent` were sent) as one
    /// receiver got them (`received`: number and arrival). `end` is the end of the run and
    /// `stop_sending` the end of the sending phase (clock nanoseconds).
    pub(crate) fn add(
        &mut self,
        stamps: &[u64],
        sent: u64,
        received: &[(u64, u64)],
        end: u64,
        stop_sending: u64,
    ) {
        self.add_confirmed(stamps, sent, None, received, end, stop_sending);
    }

    /// As [`Tally::add`], with `confirmed[n]` telling whether the server ACKed message `n`: a
    /// message that never arrived is lost only if it was; otherwise it is `unconfirmed`.
    pub(crate) fn add_confirmed(
        &mut self,
        stamps: &[u64],
        sent: u64,
        confirmed: Option<&[bool]>,
        received: &[(u64, u64)],
        end: u64,
        stop_sending: u64,
    ) {
        let sent = usize::try_from(sent)
            .unwrap_or(usize::MAX)
            .min(stamps.len());
        let mut arrival: Vec<Option<u64>> = vec![None; sent];
        for &(n, at) in received {
            let slot = usize::try_from(n).ok().and_then(|n| arrival.get_mut(n));
            if let Some(slot) = slot {
                // The first arrival counts; duplicates do not.
                if slot.is_some() {
                    self.duplicates += 1;
                }
                slot.get_or_insert(at);
            }
        }
        for (i, &stamp) in stamps.iter().enumerate() {
            self.scheduled += 1;
            match arrival.get(i) {
                Some(Some(at)) => {
                    self.delivered += 1;
                    if *at <= stop_sending {
                        self.delivered_while_sending += 1;
                    }
                    self.last_arrival = self.last_arrival.max(*at);
                    self.latencies
                        .record(Duration::from_nanos(at.saturating_sub(stamp)));
                }
                Some(None) => {
                    if confirmed.is_none_or(|c| c.get(i).copied().unwrap_or(false)) {
                        self.lost += 1;
                    } else {
                        self.unconfirmed += 1;
                    }
                    self.latencies
                        .record(Duration::from_nanos(end.saturating_sub(stamp)));
                }
                None => {
                    self.unsent += 1;
                    self.latencies
                        .record(Duration::from_nanos(end.saturating_sub(stamp)));
                }
            }
        }
        self.sent += u64::try_from(sent).unwrap_or(u64::MAX);
    }

    /// Delivered messages per second over the measured phase, and its length in seconds.
    ///
    /// The measured phase is the sending phase (`start` to `stop_sending`), and only the
    /// messages delivered by its end count. When every sender sent its whole count before
    /// that, the phase ends at the last delivery if nothing was lost, or at `end` (the end of
    /// the run) otherwise, and every delivery counts. Undelivered messages therefore never
    /// shorten the time they are divided by.
    pub(crate) fn rate(
        &self,
        start: u64,
        stop_sending: u64,
        count_limited: bool,
        end: u64,
    ) -> Rate {
        let (until, delivered) = if !count_limited {
            (stop_sending, self.delivered_while_sending)
        } else if self.lost + self.unsent == 0 {
            (self.last_arrival, self.delivered)
        } else {
            (end, self.delivered)
        };
        let over = Duration::from_nanos(until.saturating_sub(start));
        Rate {
            per_s: report::per_second(delivered, over),
            measured_s: report::round2(over.as_secs_f64()),
        }
    }
}

/// A delivery rate and the length of the phase it is measured over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) per_s: f64,
    pub(crate) measured_s: f64,
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
///
/// `me` publishes this flow's sends; `source` is the flow whose messages this one receives
/// (itself for the echo, its peer for the relay, none when nothing comes back): once this flow
/// has nothing left to send and every send is acknowledged, it keeps reading until all the
/// source sent has arrived, or the hard stop.
pub(crate) async fn drive(
    conn: &mut Connection<H2Stream>,
    plan: &FlowPlan,
    clock: &Clock,
    bar: &ProgressBar,
    me: &Progress,
    source: Option<&Progress>,
) -> FlowResult {
    let mut result = FlowResult::default();
    let mut next_send = plan.start;
    tokio::time::sleep_until(plan.start.into()).await;
    'run: loop {
        let now = Instant::now();
        if now >= plan.hard_stop {
            break;
        }
        if let Pace::Window(window) = plan.pace {
            let window = u64::try_from(window).unwrap_or(u64::MAX);
            while now < plan.stop_sending
                && result.sent.saturating_sub(result.acked) < window
                && result.sent < plan.count
            {
                let stamp = Instant::now();
                let msg = plan.msg(stamp, result.sent);
                if let Err(e) = send_msg(conn, clock, msg, plan.hard_stop).await {
                    result.fail(format!("send: {e}"));
                    break 'run;
                }
                result.sent_one(clock.nanos(stamp), me);
            }
        }
        let more = result.sent < plan.count;
        let sending = more
            && match plan.pace {
                Pace::Window(_) => now < plan.stop_sending,
                // A slot due before the end of the sending phase is sent even if this task
                // wakes up after it (late, with its scheduled stamp).
                Pace::Interval(_) => next_send < plan.stop_sending,
            };
        if !sending {
            result.count_reached = !more;
            me.finish();
        }
        let all_acked = result.sent <= result.acked;
        if !sending && all_acked && source.is_none_or(|s| s.all_in(result.delivered)) {
            break;
        }
        let wake = match plan.pace {
            _ if !sending => now + POLL,
            Pace::Interval(_) => next_send,
            Pace::Window(_) => plan.stop_sending,
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
                            break 'run;
                        }
                    };
                    match frame.frame_type() {
                        FrameType::Msg => {
                            result.arrived(clock, frame.payload(), arrived);
                            bar.inc(1);
                            if plan.ack_by == AckBy::Echo {
                                result.acked += 1;
                            }
                        }
                        FrameType::Ack if plan.ack_by == AckBy::Ack => result.acked += 1,
                        FrameType::Error => {
                            result.fail(error_title(&frame));
                            result.refused += 1;
                            result.acked += 1;
                        }
                        _ => {}
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if let Pace::Interval(interval) = plan.pace {
                    while next_send <= Instant::now()
                        && next_send < plan.stop_sending
                        && result.sent < plan.count
                    {
                        let msg = plan.msg(next_send, result.sent);
                        if let Err(e) = send_msg(conn, clock, msg, plan.hard_stop).await {
                            result.fail(format!("send: {e}"));
                            break 'run;
                        }
                        result.sent_one(clock.nanos(next_send), me);
                        next_send += interval;
                    }
                }
            }
        }
    }
    me.finish();
    if let Pace::Interval(interval) = plan.pace {
        // Open loop: the slots that came during the sending phase but were never used are
        // offered load all the same.
        let mut offered = result.sent;
        while next_send < plan.stop_sending && offered < plan.count {
            result.stamps.push(clock.nanos(next_send));
            offered += 1;
            next_send += interval;
        }
    }
    result
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn undelivered_messages_count_until_the_end_of_the_run() {
        let mut tally = Tally::new().unwrap();
        // Messages 0..4 sent at 0, 10, 20, 30 ms, message 4 due at 40 ms but never sent.
        let stamps = [0, 10 * MS, 20 * MS, 30 * MS, 40 * MS];
        // 0 and 2 arrive (2 twice, and one message with a number never sent); 1 and 3 are lost.
        let received = [(0, 5 * MS), (2, 90 * MS), (2, 95 * MS), (17, 60 * MS)];
        tally.add(&stamps, 4, &received, 1000 * MS, 50 * MS);
        assert_eq!(
            (
                tally.scheduled,
                tally.sent,
                tally.delivered,
                tally.lost,
                tally.unsent
            ),
            (5, 4, 2, 2, 1)
        );
        assert_eq!(tally.delivered_while_sending, 1);
        assert_eq!((tally.duplicates, tally.unconfirmed), (1, 0));
        assert_eq!(tally.last_arrival, 90 * MS);
        let l = tally.latencies.summary();
        // One entry per message offered: 5 ms and 70 ms delivered, then 1000 − 10, 1000 − 30
        // and 1000 − 40 ms for those that never arrived.
        assert_eq!(l.count, 5);
        assert!((4_990..=5_010).contains(&l.min_us), "{l:?}");
        assert!((959_000..=961_000).contains(&l.p50_us), "{l:?}");
        assert!((989_000..=991_000).contains(&l.max_us), "{l:?}");
        assert!((598_000.0..=600_000.0).contains(&l.mean_us), "{l:?}");
    }

    #[test]
    fn only_confirmed_messages_that_never_arrive_are_lost() {
        let mut tally = Tally::new().unwrap();
        // Four sent: 0 arrives, 1 and 2 never do (only 1 was ACKed), 3 arrives unACKed.
        let confirmed = [true, true, false, false];
        tally.add_confirmed(
            &[0, MS, 2 * MS, 3 * MS],
            4,
            Some(&confirmed),
            &[(0, 5 * MS), (3, 9 * MS)],
            100 * MS,
            50 * MS,
        );
        assert_eq!(
            (tally.delivered, tally.lost, tally.unconfirmed, tally.unsent),
            (2, 1, 1, 0)
        );
    }

    #[test]
    fn the_rate_is_never_over_a_shortened_phase() {
        let mut tally = Tally::new().unwrap();
        // Four messages in the first 30 ms, three delivered by 40 ms, one lost; the sending
        // phase lasted 1 s.
        tally.add(
            &[0, 10 * MS, 20 * MS, 30 * MS],
            4,
            &[(0, 5 * MS), (1, 15 * MS), (2, 40 * MS)],
            2000 * MS,
            1000 * MS,
        );
        let r = tally.rate(0, 1000 * MS, false, 2000 * MS);
        assert_eq!((r.per_s, r.measured_s), (3.0, 1.0));
        // The whole count sent early, one lost: measured to the end of the run.
        let r = tally.rate(0, 1000 * MS, true, 2000 * MS);
        assert_eq!((r.per_s, r.measured_s), (1.5, 2.0));
        // Everything delivered: measured to the last delivery.
        let mut all = Tally::new().unwrap();
        all.add(
            &[0, 10 * MS],
            2,
            &[(0, 5 * MS), (1, 50 * MS)],
            2000 * MS,
            1000 * MS,
        );
        let r = all.rate(0, 1000 * MS, true, 2000 * MS);
        assert_eq!((r.per_s, r.measured_s), (40.0, 0.05));
        // Deliveries after the sending phase do not count towards its rate.
        let mut late = Tally::new().unwrap();
        late.add(
            &[0, 10 * MS],
            2,
            &[(0, 5 * MS), (1, 1500 * MS)],
            2000 * MS,
            1000 * MS,
        );
        assert_eq!(late.rate(0, 1000 * MS, false, 2000 * MS).per_s, 1.0);
        assert_eq!(late.lost, 0);
    }
}
