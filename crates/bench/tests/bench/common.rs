//! The real server on 127.0.0.1:0 as the load tool's target, and running scenarios parsed as
//! the command line would parse them.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use commucat_bench::{BenchArgs, Scenario, Target, run_scenario};
use commucat_client::{ServerParams, TlsTrust};
use commucat_server::{Config, Server, ServerHandle};
use serde_json::Value;

/// Tests that read the process's memory or hold many connections run alone (`write`), the
/// others together (`read`).
pub(crate) static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub(crate) struct Running {
    _dir: tempfile::TempDir,
    _handle: ServerHandle,
    pub(crate) target: Target,
    pub(crate) data_dir: std::path::PathBuf,
}

/// The server in this process (its CPU and memory are the process's).
pub(crate) async fn server() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.path().to_owned();
    config.server.domain = "chat.test".to_owned();
    config.server.shutdown_grace = Duration::from_secs(1);
    // The load tool is a flood from loopback by design: no per-IP `/connect` budget.
    config.rate_limits.connect_per_minute = 0;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let pem = std::fs::read(server.cert_path()).unwrap();
    let params = ServerParams::new("chat.test", server.keys().noise.public());
    let mut target = Target::new(addr, TlsTrust::CaPem(pem), params).unwrap();
    target.server_pid = Some(std::process::id());
    Running {
        data_dir: dir.path().to_owned(),
        _dir: dir,
        _handle: server.spawn(),
        target,
    }
}

/// Parses a scenario as the command line would.
pub(crate) fn scenario(args: &[&str]) -> Scenario {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap().bench.scenario
}

/// Runs a scenario (bounded at 120 s) and returns its report.
pub(crate) async fn run(target: &Target, args: &[&str]) -> Value {
    run_within(Duration::from_secs(120), target, args).await
}

/// Runs a scenario bounded at `limit` and returns its report.
pub(crate) async fn run_within(limit: Duration, target: &Target, args: &[&str]) -> Value {
    let report = tokio::time::timeout(limit, run_scenario(target, &scenario(args), false))
        .await
        .expect("scenario bounded in time")
        .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    report
}

/// The number at the dotted `path` of a report.
pub(crate) fn num(report: &Value, path: &str) -> f64 {
    let mut v = report;
    for key in path.split('.') {
        v = &v[key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path} missing in {report}"))
}
