//! One soak flow: a device that sends MSGs to its peer at a fixed interval and receives the
//! peer's, over as many connections as it takes.
//!
//! When the server ends the connection (`Slow Consumer`, idle, an I/O error), the flow
//! reconnects with the same device identity and goes on: the server hands the frames it
//! queued meanwhile back from the offline queue, and the flow confirms them with delivery
//! receipts as the SDK does, so the server may delete them. Each sent message is tracked until
//! the server ACKs it: only an ACKed message that never arrives is lost.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use commucat_ccp::control::Ack;
use commucat_ccp::{Frame, FrameType, ProblemKind};
use commucat_client::DeviceIdentity;
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use indicatif::ProgressBar;

use crate::flow::{FlowResult, Progress, error_title};
use crate::payload::Clock;
use crate::target::{CONNECT_TIMEOUT, Target};

/// How often a flow with nothing left to send checks whether its source has finished.
const POLL: Duration = Duration::from_millis(20);
/// Delivery receipts: one ACK per this many MSGs received, or per [`RECEIPT_EVERY`].
const RECEIPT_BATCH: u64 = 64;
const RECEIPT_EVERY: Duration = Duration::from_millis(100);
/// Pause between two failed reconnection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// After a failed write, how long the flow keeps reading what the server sent before it ended
/// the stream (its closing notice among it).
const READ_AFTER_WRITE_FAILURE: Duration = Duration::from_secs(2);

/// What a soak flow needs beyond its timing: who it is and where it connects from.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub(crate) target: Target,
    /// Source address number (see [`Target::source`]).
    pub(crate) index: usize,
    pub(crate) identity: DeviceIdentity,
    pub(crate) channel: u32,
    /// Both devices of the pair, as declared in the channel's JOIN.
    pub(crate) members: [String; 2],
}

/// A soak flow's timing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) size: usize,
    pub(crate) interval: Duration,
    /// First send.
    pub(crate) start: Instant,
    /// No sends from here on.
    pub(crate) stop_sending: Instant,
    /// The flow ends here whatever is outstanding (the end of the drain phase).
    pub(crate) hard_stop: Instant,
    /// Stop reading (and sending) for this long at the start: a receiver that falls behind,
    /// for tests of the reconnection path.
    pub(crate) stall: Duration,
}

/// Everything a flow reads and never changes.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub(crate) device: &'a Device,
    pub(crate) schedule: &'a Schedule,
    pub(crate) clock: &'a Clock,
    pub(crate) bar: &'a ProgressBar,
    /// This flow's sends, published for its peer.
    pub(crate) me: &'a Progress,
    /// The peer's sends (what this flow receives).
    pub(crate) source: &'a Progress,
}

/// What one soak flow did.
#[derive(Debug, Clone, Default)]
pub(crate) struct SoakFlow {
    /// Sends, stamps, arrivals and errors.
    pub(crate) result: FlowResult,
    /// By message number: whether the server ACKed it.
    pub(crate) confirmed: Vec<bool>,
    /// Connections the server ended (or that failed) before the flow was done.
    pub(crate) disconnects: u64,
    /// Successful reconnections.
    pub(crate) reconnects: u64,
    /// Why connections ended, with counts.
    pub(crate) closes: BTreeMap<String, u64>,
    /// Delivery receipts sent.
    pub(crate) receipts: u64,
    /// After the drain, a device whose connection ended during the run and that still misses
    /// messages connects once more: the numbers the server then hands over (messages still in
    /// its offline queue, not delivered to the connection of the drain phase).
    pub(crate) final_fetch: Vec<u64>,
    /// By message number of the source: whether it arrived.
    seen: Vec<bool>,
    distinct: u64,
}

/// How one connection's part of the flow ended.
enum Ended {
    /// Nothing more to send or to receive, or the hard stop.
    Done,
    /// The connection ended for this reason; reconnect.
    Closed(String),
}

/// Per-connection state: the sequence numbers of MSGs awaiting the server's ACK, the last MSG
/// received and not yet confirmed with a receipt.
struct Link {
    conn: Connection<H2Stream>,
    pending: VecDeque<(u32, u64)>,
    unreceipted: u64,
    last_msg: Option<(u32, u32)>,
    last_receipt: Instant,
    /// A close notice (an ERROR ending the session) seen before the stream ended.
    notice: Option<String>,
}

impl SoakFlow {
    fn saw(&mut self, n: u64) {
        let Ok(i) = usize::try_from(n) else { return };
        if self.seen.len() <= i {
            self.seen.resize(i + 1, false);
        }
        if let Some(slot) = self.seen.get_mut(i)
            && !*slot
        {
            *slot = true;
            self.distinct += 1;
        }
    }

    fn confirm(&mut self, link: &mut Link, ack: u64) {
        while let Some(&(sequence, n)) = link.pending.front() {
            if u64::from(sequence) > ack {
                break;
            }
            link.pending.pop_front();
            if let Some(slot) = usize::try_from(n)
                .ok()
                .and_then(|n| self.confirmed.get_mut(n))
            {
                *slot = true;
            }
        }
    }

    /// Sends message number `self.result.sent` stamped `stamp`.
    async fn send(&mut self, link: &mut Link, env: Env<'_>, stamp: Instant) -> Result<(), Ended> {
        let Env {
            device,
            schedule,
            clock,
            me,
            ..
        } = env;
        let n = self.result.sent;
        let sequence = link
            .conn
            .codec_mut()
            .next_sequence()
            .map_err(|e| Ended::Closed(format!("sequence: {e}")))?;
        let frame = Frame::new(
            FrameType::Msg,
            device.channel,
            sequence,
            clock.payload(schedule.size, stamp, n),
        )
        .map_err(|e| Ended::Closed(format!("frame: {e}")))?;
        match tokio::time::timeout_at(schedule.hard_stop.into(), link.conn.send(&frame)).await {
            Err(_) => {
                self.result
                    .fail("send not accepted before the end of the run".to_owned());
                return Err(Ended::Done);
            }
            Ok(Err(e)) => return Err(Ended::Closed(format!("send: {e}"))),
            Ok(Ok(())) => {}
        }
        link.pending.push_back((sequence, n));
        self.confirmed.push(false);
        self.result.sent += 1;
        self.result.stamps.push(clock.nanos(stamp));
        me.sent_one();
        Ok(())
    }

    /// Confirms what arrived with one receipt, if due (`force`: whatever is unconfirmed).
    async fn receipt(&mut self, link: &mut Link, force: bool) -> Result<(), Ended> {
        let Some((sequence, channel)) = link.last_msg else {
            return Ok(());
        };
        let due = link.unreceipted >= RECEIPT_BATCH
            || (link.unreceipted > 0 && (force || link.last_receipt.elapsed() >= RECEIPT_EVERY));
        if !due {
            return Ok(());
        }
        let ack = Ack {
            ack: u64::from(sequence),
            ..Ack::default()
        };
        link.conn
            .send_control(FrameType::Ack, channel, &ack)
            .await
            .map_err(|e| Ended::Closed(format!("receipt: {e}")))?;
        link.unreceipted = 0;
        link.last_receipt = Instant::now();
        self.receipts += 1;
        Ok(())
    }

    /// Handles the frames `fill` brought.
    fn take_frames(&mut self, link: &mut Link, env: Env<'_>) -> Result<(), Ended> {
        let Env { clock, bar, .. } = env;
        let arrived = Instant::now();
        loop {
            let frame = match link.conn.next_buffered() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Ended::Closed(format!("receive: {e}"))),
            };
            match frame.frame_type() {
                FrameType::Msg => {
                    self.result.arrived(clock, frame.payload(), arrived);
                    if let Some(n) = Clock::number(frame.payload()) {
                        self.saw(n);
                    }
                    bar.inc(1);
                    link.unreceipted += 1;
                    link.last_msg = Some((frame.sequence(), frame.channel_id()));
                }
                FrameType::Ack => {
                    if let Ok(ack) = frame.parse_control::<Ack>() {
                        self.confirm(link, ack.ack);
                    }
                }
                FrameType::Error => {
                    let title = error_title(&frame);
                    if title == ProblemKind::SlowConsumer.title() {
                        // The server ends the session after this notice: a disconnect.
                        link.notice = Some(title);
                    } else {
                        self.result.fail(title);
                        self.result.refused += 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// A write failed because the server ended the stream: the frames it sent before that,
    /// its closing notice last, may still wait in the receive buffer (HTTP/2 keeps received
    /// data readable after a reset). Reads them so that they count, and names the notice as the
    /// reason if there was one.
    async fn after_write_failure(&mut self, link: &mut Link, env: Env<'_>, ended: Ended) -> Ended {
        let Ended::Closed(why) = ended else {
            return ended;
        };
        let deadline = Instant::now() + READ_AFTER_WRITE_FAILURE;
        while link.notice.is_none() {
            match tokio::time::timeout_at(deadline.into(), link.conn.fill()).await {
                Ok(Ok(true)) => {
                    if let Err(ended) = self.take_frames(link, env) {
                        return ended;
                    }
                }
                Ok(Ok(false) | Err(_)) | Err(_) => break,
            }
        }
        Ended::Closed(link.notice.take().unwrap_or(why))
    }

    /// Runs the flow on one connection until it is done or the connection ends.
    async fn on_link(&mut self, link: &mut Link, env: Env<'_>, next_send: &mut Instant) -> Ended {
        let Env {
            schedule,
            me,
            source,
            ..
        } = env;
        loop {
            let now = Instant::now();
            if now >= schedule.hard_stop {
                return Ended::Done;
            }
            // A slot due before the end of the sending phase is sent even if this task wakes
            // up after it (late, with its scheduled stamp).
            let sending = *next_send < schedule.stop_sending;
            if !sending {
                me.finish();
            }
            if let Err(ended) = self.receipt(link, !sending).await {
                return self.after_write_failure(link, env, ended).await;
            }
            if !sending && link.pending.is_empty() && source.all_in(self.distinct) {
                return Ended::Done;
            }
            let wake = (if sending { *next_send } else { now + POLL })
                .min(schedule.hard_stop)
                .min(now + RECEIPT_EVERY);
            tokio::select! {
                filled = link.conn.fill() => {
                    match filled {
                        Ok(true) => {}
                        Ok(false) => {
                            let why = link.notice.take().unwrap_or_else(|| "server ended the stream".to_owned());
                            return Ended::Closed(why);
                        }
                        Err(e) => {
                            let why = link.notice.take().unwrap_or_else(|| format!("receive: {e}"));
                            return Ended::Closed(why);
                        }
                    }
                    if let Err(ended) = self.take_frames(link, env) {
                        return ended;
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    while *next_send <= Instant::now() && *next_send < schedule.stop_sending {
                        let stamp = *next_send;
                        if let Err(ended) = self.send(link, env, stamp).await {
                            return self.after_write_failure(link, env, ended).await;
                        }
                        *next_send += schedule.interval;
                    }
                }
            }
        }
    }
}

fn link(conn: Connection<H2Stream>) -> Link {
    Link {
        conn,
        pending: VecDeque::new(),
        unreceipted: 0,
        last_msg: None,
        last_receipt: Instant::now(),
        notice: None,
    }
}

/// Runs one soak flow from `conn` (already joined to the channel) until its schedule is done,
/// reconnecting as often as the server ends its connection. Failures end up in the result,
/// never as a panic.
pub(crate) async fn drive(conn: Connection<H2Stream>, env: Env<'_>) -> SoakFlow {
    let Env {
        device,
        schedule,
        clock,
        me,
        source,
        ..
    } = env;
    let mut flow = SoakFlow::default();
    let mut next_send = schedule.start;
    if schedule.stall > Duration::ZERO {
        tokio::time::sleep_until(
            (schedule.start + schedule.stall)
                .min(schedule.hard_stop)
                .into(),
        )
        .await;
    } else {
        tokio::time::sleep_until(schedule.start.into()).await;
    }
    let mut current = Some(link(conn));
    while let Some(mut link_now) = current.take() {
        let ended = flow.on_link(&mut link_now, env, &mut next_send).await;
        let Ended::Closed(why) = ended else { break };
        drop(link_now);
        flow.disconnects += 1;
        *flow.closes.entry(why).or_default() += 1;
        current = reconnect(&mut flow, device, schedule).await.map(link);
    }
    me.finish();
    if flow.disconnects > 0 && !source.all_in(flow.distinct) {
        final_fetch(&mut flow, device).await;
    }
    // Open loop: the slots that came during the sending phase but were never used are offered
    // load all the same.
    while next_send < schedule.stop_sending {
        flow.result.stamps.push(clock.nanos(next_send));
        next_send += schedule.interval;
    }
    flow
}

/// How long the final fetch waits for the next frame.
const FINAL_FETCH_IDLE: Duration = Duration::from_secs(3);

/// Connects once more after the drain and takes what the server hands over, confirming it.
async fn final_fetch(flow: &mut SoakFlow, device: &Device) {
    let options = receipts();
    let Ok(Ok(session)) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        device
            .target
            .connect(device.index, &device.identity, &options),
    )
    .await
    else {
        flow.result
            .fail("final fetch: could not reconnect".to_owned());
        return;
    };
    let mut session = session;
    loop {
        let Ok(Ok(Some(frame))) = tokio::time::timeout(FINAL_FETCH_IDLE, session.recv()).await
        else {
            return;
        };
        if frame.frame_type() == FrameType::Msg {
            if let Some(n) = Clock::number(frame.payload()) {
                flow.final_fetch.push(n);
            }
            if session.acknowledge(&frame).await.is_err() {
                return;
            }
        }
    }
}

/// Connects again with the device's identity, retrying until the hard stop; each refusal is
/// an error.
async fn reconnect(
    flow: &mut SoakFlow,
    device: &Device,
    schedule: &Schedule,
) -> Option<Connection<H2Stream>> {
    let options = receipts();
    loop {
        if Instant::now() >= schedule.hard_stop {
            return None;
        }
        let attempt = tokio::time::timeout_at(
            schedule.hard_stop.into(),
            device
                .target
                .connect(device.index, &device.identity, &options),
        )
        .await;
        match attempt {
            Err(_) => return None,
            Ok(Ok(session)) => {
                flow.reconnects += 1;
                let mut conn = session.into_connection();
                // The server releases the channel membership of a device that went away: join
                // again before sending (the ACK and the notice arrive among the other frames).
                let join = serde_json::json!({"members": device.members, "relay": true});
                match conn
                    .send_control(FrameType::Join, device.channel, &join)
                    .await
                {
                    Ok(()) => return Some(conn),
                    Err(e) => {
                        flow.disconnects += 1;
                        *flow.closes.entry(format!("join: {e}")).or_default() += 1;
                    }
                }
            }
            Ok(Err(e)) => {
                flow.result.fail(format!("reconnect: {e:#}"));
                let pause = (Instant::now() + RECONNECT_PAUSE).min(schedule.hard_stop);
                tokio::time::sleep_until(pause.into()).await;
            }
        }
    }
}

/// Handshake options of soak connections: plain frames, `delivery-receipts`.
pub(crate) fn receipts() -> commucat_client::HandshakeOptions {
    commucat_client::HandshakeOptions::default().with_delivery_receipts()
}
