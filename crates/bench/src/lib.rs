//! # `commucat bench`
//!
//! A load generator that speaks the real protocol through the client SDK: TLS 1.3, HTTP/2
//! `POST /connect`, the Noise XK/IK device handshake, plain or `noise-transport` frames. Because
//! it speaks only the wire format, it measures any CCP-1 server, not just this one.
//!
//! Scenarios ([`Scenario`]): `handshake`, `relay` (with the [`echo`] baseline measured in the
//! same run), `fanout`, `idle`, `offline`, `flood`, `soak` and `crash` (SIGKILLs of a
//! `commucat serve` child). Every loop is bounded in count and in time, the
//! target must be a loopback address, and connections are spread over source addresses in
//! `127.0.0.0/8` so that one address's ephemeral ports do not cap them. Results are printed as
//! `key: value` lines, or as one JSON object with `--json`. Method and recorded results:
//! `docs/BENCHMARKS.md`.

#![forbid(unsafe_code)]

mod args;
mod crash;
pub mod echo;
mod fanout;
mod flood;
mod flow;
mod handshake;
mod idle;
mod offline;
mod payload;
mod process;
mod procfs;
mod relay;
mod report;
mod soak;
mod soak_flow;
mod target;

pub use args::{
    BenchArgs, CrashArgs, FanoutArgs, FloodArgs, HandshakeArgs, IdleArgs, OfflineArgs, RelayArgs,
    Scenario, SoakArgs, TargetArgs, Transport,
};
pub use target::Target;

use anyhow::{Context, Result};
use serde_json::Value;

/// Runs `commucat bench` with parsed arguments and prints the result.
///
/// # Errors
/// Bad arguments, an unreachable server, or a scenario that could not be set up.
pub fn run(args: BenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        if let Scenario::EchoServer { listen, data_dir } = &args.scenario {
            return echo::serve_until_signal(*listen, data_dir).await;
        }
        if let Scenario::Crash(crash) = &args.scenario {
            let report = crash::run(&args.target, crash, !args.json).await?;
            let lost = report.lost();
            print(&serde_json::to_value(report)?, args.json)?;
            if lost > 0 {
                anyhow::bail!("{lost} acknowledged envelopes were lost");
            }
            return Ok(());
        }
        let target = Target::resolve(&args.target).await?;
        let report = run_scenario(&target, &args.scenario, !args.json).await?;
        print(&report, args.json)
    })
}

fn print(report: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        report::print_human(report);
    }
    Ok(())
}

/// Runs one scenario against `target`; `progress` draws a progress bar on a terminal.
///
/// # Errors
/// A scenario that could not be set up (connections refused, handshakes failing).
pub async fn run_scenario(target: &Target, scenario: &Scenario, progress: bool) -> Result<Value> {
    let report = match scenario {
        Scenario::Handshake(a) => serde_json::to_value(handshake::run(target, a, progress).await?),
        Scenario::Relay(a) => serde_json::to_value(relay::run(target, a, progress).await?),
        Scenario::Fanout(a) => serde_json::to_value(fanout::run(target, a, progress).await?),
        Scenario::Idle(a) => serde_json::to_value(idle::run(target, a, progress).await?),
        Scenario::Offline(a) => serde_json::to_value(offline::run(target, a, progress).await?),
        Scenario::Flood(a) => serde_json::to_value(flood::run(target, a, progress).await?),
        Scenario::Soak(a) => serde_json::to_value(soak::run(target, a, progress).await?),
        Scenario::EchoServer { .. } | Scenario::Crash(_) => {
            anyhow::bail!("echo-server and crash start their own server")
        }
    }?;
    Ok(report)
}
