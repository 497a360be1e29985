//! `commucat federation peers [list|add|block|unblock]`: the peer registry in the store,
//! merged with the configured `[[federation.peers]]` (a registry row replaces the configured
//! peer of its domain). Changes take effect when the server restarts.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use commucat_server::Config;
use commucat_server::clock::unix_now;
use commucat_server::config::{PeerConfig, PeerStatus};
use commucat_server::federation::{discovery, registry};

use crate::context;

/// What to do with the peers.
#[derive(Debug, Subcommand)]
pub(crate) enum PeersAction {
    /// List the peers (configured and registered): domain, status, endpoint, pinned key.
    List,
    /// Register a peer. Without `--public-key`, its key is fetched once from
    /// `<endpoint>/.well-known/commucat-federation` over verified TLS and pinned.
    Add {
        /// The peer's domain.
        domain: String,
        /// Its `https://` base URL.
        #[arg(long)]
        endpoint: String,
        /// Its federation public key (64 hex), as its server-info shows it.
        #[arg(long)]
        public_key: Option<String>,
        /// A PEM bundle to trust for its TLS instead of the system roots.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Register it as `pending` (events to it are held, its events refused).
        #[arg(long)]
        pending: bool,
    },
    /// Block a peer: it is never contacted and its events are refused.
    Block {
        /// The peer's domain.
        domain: String,
    },
    /// Make a blocked or pending peer active again (it needs a pinned key).
    Unblock {
        /// The peer's domain.
        domain: String,
    },
}

/// Runs `federation peers …`.
pub(crate) fn run(config: &Config, action: &PeersAction) -> Result<()> {
    context::runtime()?.block_on(async {
        let store = context::open_store(config).await?;
        let rows = store.federation_peers().await?;
        let domain_of = |d: &str| d.trim().to_ascii_lowercase();
        let merged = |rows: &[commucat_store::FederationPeer]| {
            registry::merge(&config.federation, rows, &config.server.domain)
                .map_err(|e| anyhow::anyhow!("{e}"))
        };
        let now = unix_now();
        match action {
            PeersAction::List => {
                let settings = merged(&rows)?;
                println!(
                    "federation {} for {}: {} peers",
                    if config.federation.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    config.server.domain,
                    settings.peers.len()
                );
                for peer in &settings.peers {
                    let source = if rows.iter().any(|r| r.domain == peer.domain) {
                        "registry"
                    } else {
                        "config"
                    };
                    println!(
                        "{}  {:<7}  {}  {}  ({source})",
                        peer.domain,
                        peer.status.name(),
                        peer.endpoint,
                        peer.public_key.map_or_else(|| "-".to_owned(), hex::encode)
                    );
                }
            }
            PeersAction::Add {
                domain,
                endpoint,
                public_key,
                ca_file,
                pending,
            } => {
                let mut peer = PeerConfig {
                    domain: domain_of(domain),
                    endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
                    public_key: None,
                    status: if *pending {
                        PeerStatus::Pending
                    } else {
                        PeerStatus::Active
                    },
                    // Stored absolute: the server does not run from this directory.
                    ca_file: ca_file
                        .as_deref()
                        .map(std::path::absolute)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("--ca-file: {e}"))?,
                };
                peer.public_key = Some(match public_key {
                    Some(hex) => commucat_keys::decode_hex32(hex.trim())
                        .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?,
                    None => {
                        let document = discovery::fetch(&peer)
                            .await
                            .map_err(|e| anyhow::anyhow!("fetching the peer's key: {e}"))?;
                        if !document.domain.eq_ignore_ascii_case(&peer.domain) {
                            bail!(
                                "{} publishes the key of {:?}, not of {}",
                                peer.endpoint,
                                document.domain,
                                peer.domain
                            );
                        }
                        let key = commucat_keys::decode_hex32(&document.public_key)
                            .map_err(|e| anyhow::anyhow!("the peer's key: {e}"))?;
                        println!(
                            "fetched {} from {}{} (verified TLS); pinned",
                            document.public_key,
                            peer.endpoint,
                            commucat_server::keys::federation::WELL_KNOWN_PATH
                        );
                        key
                    }
                });
                let row = registry::row_of(&peer, now);
                let mut after = rows.clone();
                after.retain(|r| r.domain != row.domain);
                after.push(row.clone());
                merged(&after)?;
                store.put_federation_peer(row).await?;
                println!("added {}  {}", peer.domain, peer.status.name());
            }
            PeersAction::Block { domain } | PeersAction::Unblock { domain } => {
                let block = matches!(action, PeersAction::Block { .. });
                let domain = domain_of(domain);
                let settings = merged(&rows)?;
                let Some(peer) = settings.peers.iter().find(|p| p.domain == domain) else {
                    bail!("{domain} is not a peer (add it first)");
                };
                if !block && peer.public_key.is_none() {
                    bail!("{domain} has no pinned key: add it again with its key");
                }
                let mut peer = peer.clone();
                peer.status = if block {
                    PeerStatus::Blocked
                } else {
                    PeerStatus::Active
                };
                store
                    .put_federation_peer(registry::row_of(&peer, now))
                    .await?;
                println!("{domain}  {}", peer.status.name());
            }
        }
        if !matches!(action, PeersAction::List) {
            println!("restart the server for the change to take effect");
        }
        Ok(())
    })
}
