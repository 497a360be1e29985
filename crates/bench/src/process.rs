//! A `commucat serve` child process on a fixed loopback port, killed with SIGKILL and started
//! again on the same data directory and store.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::args::TargetArgs;
use crate::target::Target;

/// Longest a started server may take to answer `GET /api/server-info`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(25);

/// How to start the server.
#[derive(Debug, Clone)]
pub(crate) struct ServeCommand {
    pub(crate) bin: PathBuf,
    pub(crate) data_dir: PathBuf,
    /// `COMMUCAT_*` settings for the child (the listen address is added).
    pub(crate) env: Vec<(String, String)>,
    /// The child's standard error is appended here; discarded if unset.
    pub(crate) log: Option<PathBuf>,
}

/// The server child; killed on drop.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    command: ServeCommand,
    addr: SocketAddr,
    child: Option<Child>,
}

impl ServerProcess {
    /// Picks a free loopback port; nothing is started yet.
    pub(crate) fn new(command: ServeCommand) -> Result<Self> {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?;
        Ok(Self {
            command,
            addr,
            child: None,
        })
    }

    /// Process id of the running child.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The dev certificate `serve` writes into its data directory.
    pub(crate) fn cert_path(&self) -> PathBuf {
        self.command.data_dir.join("tls").join("dev_cert.pem")
    }

    /// Starts the child and waits until it answers `GET /api/server-info`; returns the
    /// resolved target and the time that took.
    pub(crate) async fn start(&mut self, target_args: &TargetArgs) -> Result<(Target, Duration)> {
        if self.child.is_some() {
            bail!("the server is already running");
        }
        let began = Instant::now();
        let stderr = match &self.command.log {
            Some(path) => Stdio::from(open_log(path)?),
            None => Stdio::null(),
        };
        let child = Command::new(&self.command.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.command.data_dir)
            .env("COMMUCAT_LISTEN", self.addr.to_string())
            .envs(self.command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", self.command.bin.display()))?;
        self.child = Some(child);
        let mut args = target_args.clone();
        args.addr = self.addr;
        args.ca = Some(self.cert_path());
        args.fingerprint = None;
        args.server_pid = self.pid();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("the server exited during startup ({status})");
            }
            // The certificate exists once the first start has written it.
            if self.cert_path().exists()
                && let Ok(target) = Target::resolve(&args).await
            {
                return Ok((target, began.elapsed()));
            }
            if began.elapsed() > START_TIMEOUT {
                bail!("the server did not answer within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// SIGKILL, then reaps the child.
    pub(crate) fn kill(&mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("the server is not running"))?;
        child.kill().context("SIGKILL")?;
        child.wait().context("reaping the killed server")?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn open_log(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}
