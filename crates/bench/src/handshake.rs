//! `handshake`: concurrent connect + device handshake loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::HandshakeArgs;
use crate::procfs;
use crate::relay::per_event_us;
use crate::report::{self, Latencies, LatencySummary};
use crate::target::{Target, options};

/// The result of `handshake`.
#[derive(Debug, Serialize)]
pub(crate) struct HandshakeReport {
    scenario: &'static str,
    loops: usize,
    pattern: &'static str,
    fresh_devices: bool,
    /// `pq-hybrid` handshakes (ML-KEM-768 encapsulation, ML-DSA-65 transcript signature).
    pq_hybrid: bool,
    handshakes: u64,
    failures: u64,
    first_failure: Option<String>,
    elapsed_s: f64,
    handshakes_per_s: f64,
    /// Connect (TCP + TLS + HTTP/2) plus the device handshake, as the client sees it.
    latency: LatencySummary,
    server_cpu_us_per_handshake: Option<f64>,
}

struct LoopResult {
    ok: u64,
    failures: u64,
    first_failure: Option<String>,
    latencies: Latencies,
}

pub(crate) async fn run(
    target: &Target,
    args: &HandshakeArgs,
    progress: bool,
) -> Result<HandshakeReport> {
    let loops = args.loops.max(1);
    let bar = report::progress(progress, args.count, "handshakes");
    // Returning devices register before the clock starts.
    let mut identities = Vec::with_capacity(loops);
    for i in 0..loops {
        let identity = pq_keys(target.identity("h", i), args.pq)?;
        identities.push(if args.fresh {
            identity
        } else {
            target.register(i, identity).await?
        });
    }
    let issued = Arc::new(AtomicU64::new(0));
    let cpu_before = target.server_pid.map(procfs::cpu_time).transpose()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration.max(1));
    let mut tasks = JoinSet::new();
    for (i, mut identity) in identities.into_iter().enumerate() {
        let target = target.clone();
        let issued = Arc::clone(&issued);
        let bar = bar.clone();
        let count = args.count;
        let options = if args.pq {
            options(args.ik, false).with_pq_hybrid()
        } else {
            options(args.ik, false)
        };
        let (fresh, pq) = (args.fresh, args.pq);
        tasks.spawn(async move {
            let mut result = LoopResult {
                ok: 0,
                failures: 0,
                first_failure: None,
                latencies: Latencies::new()?,
            };
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= count || Instant::now() >= deadline {
                    break;
                }
                let source = usize::try_from(n).unwrap_or(i);
                if fresh {
                    identity = pq_keys(target.identity(&format!("h{i}x"), source), pq)?;
                }
                let began = Instant::now();
                match target.connect(source, &identity, &options).await {
                    Ok(session) if pq && !session.info().pq_hybrid() => {
                        result.failures += 1;
                        result.first_failure.get_or_insert_with(|| {
                            "the server did not accept pq-hybrid".to_owned()
                        });
                    }
                    Ok(session) => {
                        result.latencies.record(began.elapsed());
                        result.ok += 1;
                        drop(session);
                    }
                    Err(e) => {
                        result.failures += 1;
                        result.first_failure.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>(result)
        });
    }
    let mut latencies = Latencies::new()?;
    let (mut ok, mut failures, mut first_failure) = (0, 0, None);
    while let Some(joined) = tasks.join_next().await {
        let result = joined??;
        ok += result.ok;
        failures += result.failures;
        if first_failure.is_none() {
            first_failure = result.first_failure;
        }
        latencies.merge(&result.latencies);
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let cpu = match (cpu_before, target.server_pid) {
        (Some(before), Some(pid)) => Some(procfs::cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    Ok(HandshakeReport {
        scenario: "handshake",
        loops,
        pattern: if args.ik { "IK" } else { "XK" },
        fresh_devices: args.fresh,
        pq_hybrid: args.pq,
        handshakes: ok,
        failures,
        first_failure,
        elapsed_s: report::round2(elapsed.as_secs_f64()),
        handshakes_per_s: report::per_second(ok, elapsed),
        latency: latencies.summary(),
        server_cpu_us_per_handshake: cpu.and_then(|cpu| per_event_us(cpu, ok)),
    })
}

/// `identity` with post-quantum keys when `pq`.
fn pq_keys(
    identity: commucat_client::DeviceIdentity,
    pq: bool,
) -> Result<commucat_client::DeviceIdentity> {
    if pq {
        return Ok(identity.with_pq_keys()?);
    }
    Ok(identity)
}
