//! `commucat federation key|peers|outbox`: this domain's federation key, the configured peers,
//! and the outbox per peer (depth, oldest event, last error), from the configuration and the
//! store the server uses.

use anyhow::Result;
use clap::Subcommand;
use commucat_server::clock::{rfc3339, unix_now};

use crate::context::{self, ConfigArgs};

/// What to show.
#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Print this domain's federation public key (generated on first use), which peers pin.
    Key,
    /// List the configured peers: domain, status, endpoint, pinned key.
    Peers,
    /// Show the outbox per peer: events waiting, the oldest, the last delivery error.
    Outbox,
}

/// Runs `federation …`.
pub(crate) fn run(args: &ConfigArgs, command: &FederationCommand) -> Result<()> {
    let config = args.load()?;
    match command {
        FederationCommand::Key => {
            commucat_server::keys::secrets::create_private_dir(&config.server.data_dir)
                .map_err(|e| anyhow::anyhow!("data directory: {e}"))?;
            let key = commucat_server::keys::federation::load_or_generate(&config.server.data_dir)?;
            println!("{}  {}", config.server.domain, key.public_key_hex());
            Ok(())
        }
        FederationCommand::Peers => {
            println!(
                "federation {} for {}: {} peers",
                if config.federation.enabled {
                    "enabled"
                } else {
                    "disabled"
                },
                config.server.domain,
                config.federation.peers.len()
            );
            for peer in &config.federation.peers {
                println!(
                    "{}  {:<7}  {}  {}",
                    peer.domain,
                    peer.status.name(),
                    peer.endpoint,
                    peer.public_key.map_or_else(|| "-".to_owned(), hex::encode)
                );
            }
            Ok(())
        }
        FederationCommand::Outbox => context::runtime()?.block_on(async {
            let store = context::open_store(&config).await?;
            let stats = store.outbox_stats(unix_now()).await?;
            if stats.is_empty() {
                println!("outbox empty");
            }
            for peer in stats {
                println!(
                    "{}  depth {}  oldest {}  last error {}{}",
                    peer.peer,
                    peer.depth,
                    peer.oldest_enqueued_at
                        .map_or_else(|| "-".to_owned(), rfc3339),
                    peer.last_error.as_deref().unwrap_or("-"),
                    peer.last_attempt_at
                        .map(|at| format!(" (at {})", rfc3339(at)))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }),
    }
}
