//! `crash`: senders keep sending MSG frames to devices that are not connected while the server
//! (a `commucat serve` child) is killed with SIGKILL at random moments and started again on
//! the same data directory and store. Every ACK is recorded, and a MSG whose answer died with
//! the server is sent again after reconnecting, as a client would; at the end the recipients
//! connect, every acknowledged envelope must be replayed to them, and extra copies are counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use commucat_ccp::control::Ack;
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::DeviceIdentity;
use commucat_client::transport::H2Stream;
use commucat_link::Connection;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::{CrashArgs, TargetArgs};
use crate::flow;
use crate::payload::{Clock, MIN_PAYLOAD};
use crate::process::{ServeCommand, ServerProcess};
use crate::report;
use crate::target::{CONNECT_TIMEOUT, Target, options};

/// Pause before a sender tries to reconnect to a server that is not there.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// How long a stopping sender waits for the ACKs of what it already sent.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// A replay is over when no MSG arrived for this long (after every acknowledged one did).
const QUIET: Duration = Duration::from_secs(2);

/// The result of `crash`.
#[derive(Debug, Serialize)]
pub(crate) struct CrashReport {
    scenario: &'static str,
    backend: &'static str,
    seed: u64,
    senders: usize,
    kills: u64,
    /// Kills that came while ACKs were flowing (at least one ACK since the previous start).
    kills_under_load: u64,
    restarts: u64,
    restart_ms: Vec<u64>,
    sent: u64,
    acked: u64,
    /// MSGs answered with an ERROR (nothing was stored for them).
    refused: u64,
    first_refusal: Option<String>,
    /// Distinct MSGs never answered (their last send died with the server; may or may not
    /// arrive).
    unacknowledged: u64,
    /// Sends again, after reconnecting, of MSGs whose answer died with the server.
    resent: u64,
    /// Sessions the senders opened (the first ones included).
    sender_sessions: u64,
    /// Distinct envelopes replayed to the recipients.
    delivered: u64,
    /// Of those, envelopes whose sender never saw the ACK.
    delivered_unacknowledged: u64,
    /// ACKed, never replayed.
    lost: u64,
    /// Arrivals of an envelope already replayed (a second connect included).
    duplicates: u64,
    duration_s: f64,
}

impl CrashReport {
    /// Acknowledged envelopes never replayed.
    pub(crate) fn lost(&self) -> u64 {
        self.lost
    }
}

/// One sender's record.
#[derive(Debug, Default)]
struct SenderLog {
    sent: u64,
    /// Numbers the server acknowledged.
    acked: Vec<u64>,
    refused: Vec<u64>,
    first_refusal: Option<String>,
    sessions: u64,
    /// Sends of a number again on a new connection, the first send's answer having died with
    /// the server.
    resent: u64,
}

/// What the senders share with the scenario's driver.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    acked: AtomicU64,
}

/// Runs `crash` and returns its report.
pub(crate) async fn run(
    target_args: &TargetArgs,
    args: &CrashArgs,
    progress: bool,
) -> Result<CrashReport> {
    let began = Instant::now();
    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().r#gen());
    let mut rng = StdRng::seed_from_u64(seed);
    let bin = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().context("locating the commucat binary")?,
    };
    let mut env = Vec::new();
    if let Some(url) = &args.store_url {
        env.push(("COMMUCAT_STORE_URL".to_owned(), url.clone()));
    }
    if let Some(schema) = &args.store_schema {
        env.push(("COMMUCAT_STORE_SCHEMA".to_owned(), schema.clone()));
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let mut server = ServerProcess::new(ServeCommand {
        bin,
        data_dir: args.data_dir.clone(),
        env,
        log: args.server_log.clone(),
    })?;
    let (target, _) = server.start(target_args).await?;

    let senders = args.senders.max(1);
    let first_channel = target.channels(senders)?;
    let mut receivers = Vec::with_capacity(senders);
    for i in 0..senders {
        receivers.push(target.register(2 * i + 1, target.identity("cr", i)).await?);
    }
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let interval = Duration::from_secs_f64(senders as f64 / args.rate.max(1) as f64);
    let shared = Arc::new(Shared::default());
    let mut tasks = JoinSet::new();
    for (i, receiver) in receivers.iter().enumerate() {
        let plan = SenderPlan {
            target: target.clone(),
            source: 2 * i,
            identity: target.identity("cs", i),
            receiver: receiver.device_id.clone(),
            channel: first_channel + u32::try_from(i)?,
            interval,
            size: args.size.max(MIN_PAYLOAD),
            count: args.count,
            window: args.window.max(1),
        };
        let shared = Arc::clone(&shared);
        tasks.spawn(async move { (i, send_until_stopped(plan, &shared).await) });
    }

    let bar = report::progress(progress, args.kills, "kills");
    let (mut kills, mut kills_under_load, mut restart_ms) = (0, 0, Vec::new());
    let mut acked_at_start = shared.acked.load(Ordering::Acquire);
    for _ in 0..args.kills {
        // The moment is random, but only once the senders are back: every kill is under load.
        wait_for_acks(&shared, acked_at_start).await;
        let uptime = rng.gen_range(args.min_uptime_ms..=args.max_uptime_ms.max(args.min_uptime_ms));
        tokio::time::sleep(Duration::from_millis(uptime)).await;
        let acked = shared.acked.load(Ordering::Acquire);
        server.kill()?;
        kills += 1;
        if acked > acked_at_start {
            kills_under_load += 1;
        }
        let (_, took) = server.start(target_args).await?;
        restart_ms.push(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        acked_at_start = shared.acked.load(Ordering::Acquire);
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Let the senders come back once more before stopping them.
    wait_for_acks(&shared, acked_at_start).await;
    shared.stop.store(true, Ordering::Release);
    let mut logs: BTreeMap<usize, SenderLog> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, log) = joined?;
        logs.insert(i, log);
    }

    let mut report = CrashReport {
        scenario: "crash",
        backend: if args.store_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        seed,
        senders,
        kills,
        kills_under_load,
        restarts: kills,
        restart_ms,
        sent: 0,
        acked: 0,
        refused: 0,
        first_refusal: None,
        unacknowledged: 0,
        resent: 0,
        sender_sessions: 0,
        delivered: 0,
        delivered_unacknowledged: 0,
        lost: 0,
        duplicates: 0,
        duration_s: 0.0,
    };
    // The recipients connect together, as they would after an outage.
    let mut replays = JoinSet::new();
    for (i, receiver) in receivers.into_iter().enumerate() {
        let log = logs.remove(&i).unwrap_or_default();
        let channel = first_channel + u32::try_from(i)?;
        let target = target.clone();
        replays.spawn(async move {
            let arrivals = replay(&target, 2 * i + 1, &receiver, channel, &log.acked).await;
            (log, arrivals)
        });
    }
    while let Some(joined) = replays.join_next().await {
        let (log, arrivals) = joined?;
        tally(&mut report, &log, &arrivals?);
    }
    report.duration_s = report::round2(began.elapsed().as_secs_f64());
    Ok(report)
}

/// Waits until the senders' ACK count passes `since`, for at most [`CONNECT_TIMEOUT`].
async fn wait_for_acks(shared: &Shared, since: u64) {
    let began = Instant::now();
    while shared.acked.load(Ordering::Acquire) <= since && began.elapsed() < CONNECT_TIMEOUT {
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// Adds one sender's record and what its recipient received to the report.
fn tally(report: &mut CrashReport, log: &SenderLog, arrivals: &HashMap<u64, u64>) {
    report.sent += log.sent;
    report.acked += u64::try_from(log.acked.len()).unwrap_or(u64::MAX);
    report.refused += u64::try_from(log.refused.len()).unwrap_or(u64::MAX);
    report.unacknowledged += log
        .sent
        .saturating_sub(u64::try_from(log.acked.len() + log.refused.len()).unwrap_or(u64::MAX));
    report.sender_sessions += log.sessions;
    report.resent += log.resent;
    if report.first_refusal.is_none() {
        report.first_refusal.clone_from(&log.first_refusal);
    }
    report.lost += u64::try_from(
        log.acked
            .iter()
            .filter(|n| !arrivals.contains_key(n))
            .count(),
    )
    .unwrap_or(u64::MAX);
    report.delivered += u64::try_from(arrivals.len()).unwrap_or(u64::MAX);
    let acked: std::collections::HashSet<u64> = log.acked.iter().copied().collect();
    report.delivered_unacknowledged +=
        u64::try_from(arrivals.keys().filter(|n| !acked.contains(n)).count()).unwrap_or(u64::MAX);
    report.duplicates += arrivals.values().map(|c| c.saturating_sub(1)).sum::<u64>();
}

/// One sender's parameters.
struct SenderPlan {
    target: Target,
    source: usize,
    identity: DeviceIdentity,
    receiver: String,
    channel: u32,
    interval: Duration,
    size: usize,
    count: u64,
    window: usize,
}

/// Connects (again and again), JOINs the channel with the recipient, sends one numbered MSG per
/// interval (at most `window` unanswered; first those whose answer died with the previous
/// connection) and records every ACK, until told to stop; then waits for the outstanding ACKs.
async fn send_until_stopped(mut plan: SenderPlan, shared: &Shared) -> SenderLog {
    let clock = Clock::start();
    let mut log = SenderLog::default();
    let mut next = 0;
    // Numbers whose connection died before they were answered: sent again first, as a client
    // does after reconnecting.
    let mut resend: VecDeque<u64> = VecDeque::new();
    loop {
        let done = next >= plan.count && resend.is_empty();
        if done || shared.stop.load(Ordering::Acquire) {
            return log;
        }
        let Ok(mut conn) = open(&mut plan).await else {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        log.sessions += 1;
        // Sequence → message number of the frames sent and not yet answered.
        let mut pending: HashMap<u64, u64> = HashMap::new();
        let mut ticker = tokio::time::interval(plan.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping_since: Option<Instant> = None;
        loop {
            let done = next >= plan.count && resend.is_empty();
            let stopping = done || shared.stop.load(Ordering::Acquire);
            if stopping && pending.is_empty() {
                return log;
            }
            if stopping && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
            }
            let give_up = stopping_since.map_or(Instant::now() + ACK_WAIT, |s| s + ACK_WAIT);
            tokio::select! {
                _ = ticker.tick(), if !stopping && pending.len() < plan.window => {
                    let again = resend.pop_front();
                    let n = again.unwrap_or(next);
                    if again.is_some() {
                        log.resent += 1;
                    } else {
                        log.sent += 1;
                        next += 1;
                    }
                    match send(&mut conn, &clock, &plan, n).await {
                        Ok(sequence) => {
                            pending.insert(sequence, n);
                        }
                        Err(_) => {
                            resend.push_back(n);
                            break;
                        }
                    }
                }
                filled = conn.fill() => {
                    if !matches!(filled, Ok(true)) {
                        break;
                    }
                    if answers(&mut conn, &mut pending, &mut log, shared).is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(give_up.into()), if stopping => return log,
            }
        }
        let mut unanswered: Vec<u64> = pending.into_values().collect();
        unanswered.sort_unstable();
        resend.extend(unanswered);
    }
}

/// Connect, handshake and JOIN with the recipient.
async fn open(plan: &mut SenderPlan) -> Result<Connection<H2Stream>> {
    let session = plan
        .target
        .connect(plan.source, &plan.identity, &options(false, false))
        .await?;
    plan.identity.adopt(session.info());
    let mut conn = session.into_connection();
    flow::join(
        &mut conn,
        plan.channel,
        &[&plan.identity.device_id, &plan.receiver],
    )
    .await?;
    Ok(conn)
}

/// Sends MSG number `n`; returns its sequence.
async fn send(
    conn: &mut Connection<H2Stream>,
    clock: &Clock,
    plan: &SenderPlan,
    n: u64,
) -> Result<u64> {
    let sequence = conn.codec_mut().next_sequence()?;
    let frame = Frame::new(
        FrameType::Msg,
        plan.channel,
        sequence,
        clock.payload(plan.size, Instant::now(), n),
    )?;
    tokio::time::timeout(CONNECT_TIMEOUT, conn.send(&frame))
        .await
        .map_err(|_| anyhow!("send timed out"))??;
    Ok(u64::from(sequence))
}

/// Handles the buffered frames: an ACK acknowledges its sequence, an ERROR naming a sequence
/// refuses it (an ACK that follows such an ERROR finds nothing pending).
fn answers(
    conn: &mut Connection<H2Stream>,
    pending: &mut HashMap<u64, u64>,
    log: &mut SenderLog,
    shared: &Shared,
) -> Result<()> {
    while let Some(frame) = conn.next_buffered()? {
        match frame.frame_type() {
            FrameType::Ack => {
                let Ok(ack) = frame.parse_control::<Ack>() else {
                    continue;
                };
                if let Some(n) = pending.remove(&ack.ack) {
                    log.acked.push(n);
                    shared.acked.fetch_add(1, Ordering::AcqRel);
                }
            }
            FrameType::Error => {
                let Ok(problem) = frame.parse_control::<Problem>() else {
                    continue;
                };
                let sequence = problem
                    .extensions
                    .get("sequence")
                    .and_then(serde_json::Value::as_u64);
                if let Some(n) = sequence.and_then(|s| pending.remove(&s)) {
                    log.refused.push(n);
                    if log.first_refusal.is_none() {
                        log.first_refusal = Some(format!(
                            "{}: {}",
                            problem.title.unwrap_or_default(),
                            problem.detail.unwrap_or_default()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Connects the recipient and counts every MSG on `channel` by number: first until every
/// `expected` number arrived and nothing more came for [`QUIET`], then once more on a second
/// connect (anything replayed again is a duplicate). Waits at most [`CONNECT_TIMEOUT`] for
/// missing envelopes.
async fn replay(
    target: &Target,
    source: usize,
    receiver: &DeviceIdentity,
    channel: u32,
    expected: &[u64],
) -> Result<HashMap<u64, u64>> {
    let mut arrivals: HashMap<u64, u64> = HashMap::new();
    for _ in 0..2 {
        let mut conn = target
            .connect(source, receiver, &options(false, false))
            .await?
            .into_connection();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut last = Instant::now();
        loop {
            let complete = expected.iter().all(|n| arrivals.contains_key(n));
            let until = if complete {
                last + QUIET
            } else {
                deadline.max(last + QUIET)
            };
            let frame = tokio::select! {
                frame = conn.recv() => frame?,
                () = tokio::time::sleep_until(until.into()) => break,
            };
            let Some(frame) = frame else {
                break;
            };
            if frame.frame_type() == FrameType::Msg && frame.channel_id() == channel {
                last = Instant::now();
                if let Some(n) = Clock::number(frame.payload()) {
                    *arrivals.entry(n).or_default() += 1;
                }
            }
        }
    }
    Ok(arrivals)
}
