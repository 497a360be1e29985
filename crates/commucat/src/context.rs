//! What the offline subcommands share: the configuration `serve` would use, the store and the
//! ledger it points at, an async runtime, and progress spinners.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use commucat_server::Config;
use commucat_server::ledger::Ledger;
use commucat_store::Store;
use indicatif::{ProgressBar, ProgressStyle};

/// `--config` and `--data-dir`, as `serve` takes them, so an offline command works on the
/// data directory and store the server uses.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ConfigArgs {
    /// TOML configuration file (the one `serve --config` reads); `COMMUCAT_*` variables
    /// override it as they do for `serve`.
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (keys, certificate, database, ledger); overrides the configuration.
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The validated configuration.
    pub(crate) fn load(&self) -> Result<Config> {
        let loaded = Config::load(self.config.as_deref(), crate::settings_env()?)?;
        for name in &loaded.unknown_env {
            eprintln!("warning: ignoring {name}: not a CommuCat setting");
        }
        let mut config = loaded.config;
        if let Some(dir) = &self.data_dir {
            config.server.data_dir.clone_from(dir);
        }
        config.validate()?;
        Ok(config)
    }
}

/// A runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the store of `config` (creating the data directory owner-only), applying pending
/// migrations, behind a spinner.
pub(crate) async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    commucat_server::keys::secrets::create_private_dir(&config.server.data_dir)
        .map_err(|e| anyhow!("data directory: {e}"))?;
    let spinner = spinner("opening the store and applying migrations");
    let store = commucat_server::server::open_store(config).await;
    spinner.finish_and_clear();
    Ok(store?)
}

/// The ledger of `config`; records of operator commands are flushed before the command exits.
pub(crate) fn ledger(config: &Config) -> Result<Ledger> {
    commucat_server::keys::secrets::create_private_dir(&config.server.data_dir)
        .map_err(|e| anyhow!("data directory: {e}"))?;
    Ok(Ledger::start(&config.ledger, &config.server.data_dir)?)
}

/// A spinner on standard error (hidden when it is not a terminal).
pub(crate) fn spinner(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
