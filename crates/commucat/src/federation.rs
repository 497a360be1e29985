//! `commucat federation key|peers|outbox`: this domain's federation key (and its rotation), the
//! peers (`federation_peers`), and the outbox per peer (depth, oldest event, last error), from the configuration and the
//! store the server uses.

use anyhow::Result;
use clap::Subcommand;
use commucat_server::clock::{rfc3339, unix_now};

use crate::context::{self, ConfigArgs};

/// Default grace period of a rotated key at least, seconds.
const MIN_DEFAULT_GRACE: u64 = 86_400;

/// What to show.
#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Print this domain's federation public key (generated on first use), which peers pin;
    /// `key rotate` replaces it.
    Key {
        #[command(subcommand)]
        action: Option<KeyAction>,
    },
    /// The peers: list (the default), add, block, unblock.
    Peers {
        #[command(subcommand)]
        action: Option<crate::federation_peers::PeersAction>,
    },
    /// Show the outbox per peer: events waiting, the oldest, the last delivery error.
    Outbox,
}

/// What to do with the federation key.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyAction {
    /// Generate a new federation key. Peers that pinned the old key verify the new one with it
    /// (the old key signs the rotation, published in server-info and the well-known document)
    /// and accept events signed by either until the grace period ends. Takes effect when the
    /// server restarts.
    Rotate {
        /// Seconds the old key stays valid for peers (default: `federation.outbox_ttl`, at
        /// least one day, so events already queued and signed with it are still accepted).
        #[arg(long)]
        grace: Option<u64>,
    },
}

/// Runs `federation …`.
pub(crate) fn run(args: &ConfigArgs, command: &FederationCommand) -> Result<()> {
    let config = args.load()?;
    match command {
        FederationCommand::Key { action } => {
            commucat_server::keys::secrets::create_private_dir(&config.server.data_dir)
                .map_err(|e| anyhow::anyhow!("data directory: {e}"))?;
            let data_dir = &config.server.data_dir;
            match action {
                None => {
                    let key = commucat_server::keys::federation::load_or_generate(data_dir)?;
                    println!("{}  {}", config.server.domain, key.public_key_hex());
                }
                Some(KeyAction::Rotate { grace }) => {
                    let grace = grace.unwrap_or_else(|| {
                        config
                            .federation
                            .outbox_ttl
                            .as_secs()
                            .max(MIN_DEFAULT_GRACE)
                    });
                    let (key, rotation) = commucat_server::keys::federation::rotate(
                        data_dir,
                        &config.server.domain,
                        i64::try_from(grace).unwrap_or(i64::MAX),
                        unix_now(),
                    )?;
                    println!("{}  {}", config.server.domain, key.public_key_hex());
                    println!(
                        "rotated: the previous key {} stays valid for peers until {}",
                        rotation.previous_public_key,
                        rfc3339(rotation.valid_until)
                    );
                    println!("restart the server for the new key to take effect");
                }
            }
            Ok(())
        }
        FederationCommand::Peers { action } => crate::federation_peers::run(
            &config,
            action
                .as_ref()
                .unwrap_or(&crate::federation_peers::PeersAction::List),
        ),
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
