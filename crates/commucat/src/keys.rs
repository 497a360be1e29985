//! `commucat keys`: the Noise static keys clients pin (list, rotate, retire).

use anyhow::Result;
use clap::Subcommand;
use commucat_server::clock::unix_now;
use commucat_server::keys::keyring::{self, NoiseKeyring};

use crate::context::{self, ConfigArgs};

/// What to do with the keys.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Show every Noise key: version, public key, state (current, accepted, retired).
    List,
    /// Generate a new current Noise key; the old one stays accepted.
    ///
    /// Deployed clients pin the key they saw at `init`, so the superseded key keeps working
    /// until `keys retire` retires it or, with `crypto.noise_key_grace` set, until that long
    /// after this rotation. Takes effect when the running server gets SIGHUP
    /// (`kill -HUP <pid>`) or (re)starts.
    Rotate,
    /// Stop accepting a superseded Noise key and erase its private half.
    ///
    /// Clients still pinned to it fail their handshake once the running server gets SIGHUP
    /// (`kill -HUP <pid>`) or restarts; they must fetch the new key (`GET /api/server-info`). The current key cannot be retired:
    /// rotate first.
    Retire {
        /// Version to retire, as `keys list` shows it.
        version: u32,
    },
}

/// Runs `keys …` on the data directory of `args`.
pub(crate) fn run(args: &ConfigArgs, command: &KeysCommand) -> Result<()> {
    let config = args.load()?;
    let data_dir = &config.server.data_dir;
    commucat_server::keys::secrets::create_private_dir(data_dir)
        .map_err(|e| anyhow::anyhow!("data directory: {e}"))?;
    let now = unix_now();
    let grace = config.crypto.noise_key_grace;
    let ring = match command {
        KeysCommand::List => NoiseKeyring::load_or_generate(data_dir)?,
        KeysCommand::Rotate => {
            let ring = keyring::rotate(data_dir, now)?;
            record(&config, "rotate", ring.current_version, &ring)?;
            println!(
                "rotated: version {} is current; version {} stays accepted {}",
                ring.current_version,
                ring.current_version - 1,
                grace.map_or_else(
                    || "until `commucat keys retire` retires it".to_owned(),
                    |g| format!("for {} s (crypto.noise_key_grace)", g.as_secs())
                )
            );
            println!(
                "send the running server SIGHUP (`kill -HUP <pid>`) or restart it for the rotation to take effect"
            );
            ring
        }
        KeysCommand::Retire { version } => {
            let ring = keyring::retire(data_dir, *version, now)?;
            record(&config, "retire", *version, &ring)?;
            println!(
                "retired version {version}; send the running server SIGHUP (`kill -HUP <pid>`) or restart it to refuse it"
            );
            ring
        }
    };
    for key in ring.list(grace, now) {
        let when = match (key.superseded_at, key.retired_at) {
            (_, Some(retired)) => format!("retired {}", commucat_server::clock::rfc3339(retired)),
            (Some(superseded), None) => {
                format!("superseded {}", commucat_server::clock::rfc3339(superseded))
            }
            (None, None) => String::new(),
        };
        println!(
            "{:>4}  {}  {:<8}  {when}",
            key.version, key.public, key.state
        );
    }
    Ok(())
}

fn record(
    config: &commucat_server::Config,
    event: &str,
    version: u32,
    ring: &NoiseKeyring,
) -> Result<()> {
    let ledger = context::ledger(config)?;
    ledger.record("keys", || {
        serde_json::json!({
            "event": event,
            "version": version,
            "current_version": ring.current_version,
            "noise_public": hex::encode(ring.current.public()),
            "via": "cli",
        })
    });
    ledger.flush();
    Ok(())
}
