//! `[federation]` section and its `[[federation.peers]]` (static peers), parsed and checked.
//!
//! ```toml
//! [federation]
//! enabled = true
//! outbox_per_peer = 10000       # events queued for one peer at most
//! outbox_ttl = 86400            # seconds an undelivered event is kept
//! replay_window = 86400         # seconds an event is accepted after created_at; event ids
//!                               # are remembered that long
//! events_per_minute = 6000      # inbound events per peer
//! max_event_bytes = 4194304     # largest inbound request body
//!
//! [[federation.peers]]
//! domain = "b.example"
//! endpoint = "https://b.example:8443"
//! public_key = "<64 hex: the peer's Ed25519 federation key>"
//! status = "active"            # active | pending | blocked
//! ca_file = "certs/b.pem"      # optional: trust only this PEM for the peer's TLS
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// Events flow both ways.
    Active,
    /// Known but not yet trusted: outbound events are queued and held, inbound ones refused.
    Pending,
    /// Never contacted; its events are refused and none are queued for it.
    Blocked,
}

impl PeerStatus {
    /// `active`, `pending` or `blocked`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Blocked => "blocked",
        }
    }
}

/// One static peer domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's domain, as its events name it in `origin`.
    pub domain: String,
    /// Base URL of the peer (`https://host[:port]`); events go to `<endpoint>/federation/events`.
    pub endpoint: String,
    /// The peer's Ed25519 federation public key (pinned); required for `active`.
    pub public_key: Option<[u8; 32]>,
    /// What the peer may do.
    pub status: PeerStatus,
    /// PEM file of the certificates trusted for this peer's TLS (instead of the system roots).
    pub ca_file: Option<PathBuf>,
}

/// `[federation]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationSettings {
    /// Whether `/federation/events` is served and remote members are accepted
    /// (`federation.enabled`, default off).
    pub enabled: bool,
    /// Static peers (`[[federation.peers]]`).
    pub peers: Vec<PeerConfig>,
    /// Events one peer may have queued (`federation.outbox_per_peer`).
    pub outbox_per_peer: u64,
    /// Lifetime of an undelivered outbound event (`federation.outbox_ttl`).
    pub outbox_ttl: Duration,
    /// How long after its `created_at` an inbound event is accepted, and its id remembered
    /// (`federation.replay_window`).
    pub replay_window: Duration,
    /// Inbound events per peer and minute (`federation.events_per_minute`).
    pub events_per_minute: u32,
    /// Largest inbound request body, bytes (`federation.max_event_bytes`).
    pub max_event_bytes: usize,
    /// Longest pause between two delivery attempts (`federation.max_backoff`).
    pub max_backoff: Duration,
}

impl Default for FederationSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            peers: Vec::new(),
            outbox_per_peer: 10_000,
            outbox_ttl: Duration::from_secs(24 * 3600),
            replay_window: Duration::from_secs(24 * 3600),
            events_per_minute: 6_000,
            max_event_bytes: 4 << 20,
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Most static peers.
pub const MAX_PEERS: usize = 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FederationSection {
    enabled: Option<bool>,
    outbox_per_peer: Option<u64>,
    outbox_ttl: Option<u64>,
    replay_window: Option<u64>,
    events_per_minute: Option<u32>,
    max_event_bytes: Option<usize>,
    max_backoff: Option<u64>,
    #[serde(default)]
    peers: Vec<PeerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    domain: String,
    endpoint: String,
    public_key: Option<String>,
    status: Option<PeerStatus>,
    ca_file: Option<PathBuf>,
}

impl FederationSection {
    /// Applies the section to `settings`; relative `ca_file`s through `resolve`.
    pub(super) fn apply(
        self,
        settings: &mut FederationSettings,
        resolve: impl Fn(PathBuf) -> PathBuf,
    ) -> Result<(), ConfigError> {
        if let Some(enabled) = self.enabled {
            settings.enabled = enabled;
        }
        let secs = |s: Option<u64>, slot: &mut Duration| {
            if let Some(s) = s {
                *slot = Duration::from_secs(s);
            }
        };
        if let Some(n) = self.outbox_per_peer {
            settings.outbox_per_peer = n;
        }
        secs(self.outbox_ttl, &mut settings.outbox_ttl);
        secs(self.replay_window, &mut settings.replay_window);
        secs(self.max_backoff, &mut settings.max_backoff);
        if let Some(n) = self.events_per_minute {
            settings.events_per_minute = n;
        }
        if let Some(n) = self.max_event_bytes {
            settings.max_event_bytes = n;
        }
        for (i, peer) in self.peers.into_iter().enumerate() {
            let key = format!("federation.peers[{i}]");
            let public_key = peer
                .public_key
                .map(|hex| {
                    commucat_keys::decode_hex32(hex.trim()).map_err(|e| {
                        ConfigError::invalid(&format!("{key}.public_key"), format!("{e}"))
                    })
                })
                .transpose()?;
            settings.peers.push(PeerConfig {
                domain: peer.domain.trim().to_ascii_lowercase(),
                endpoint: peer.endpoint.trim().trim_end_matches('/').to_owned(),
                public_key,
                status: peer.status.unwrap_or(PeerStatus::Active),
                ca_file: peer.ca_file.map(&resolve),
            });
        }
        Ok(())
    }
}

impl FederationSettings {
    /// Checks the values; `domain` is this server's own.
    pub fn check(&self, domain: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(ConfigError::invalid(key, message));
        if !(1..=1_000_000).contains(&self.outbox_per_peer) {
            return bad(
                "federation.outbox_per_peer",
                format!(
                    "must be between 1 and 1000000, got {}",
                    self.outbox_per_peer
                ),
            );
        }
        for (key, value) in [
            ("federation.outbox_ttl", self.outbox_ttl),
            ("federation.replay_window", self.replay_window),
            ("federation.max_backoff", self.max_backoff),
        ] {
            if !(1..=30 * 24 * 3600).contains(&value.as_secs()) {
                return bad(
                    key,
                    format!(
                        "must be between 1 and 2592000 seconds, got {}",
                        value.as_secs()
                    ),
                );
            }
        }
        if self.outbox_ttl > self.replay_window {
            return bad(
                "federation.outbox_ttl",
                "must not exceed federation.replay_window: a peer refuses events older than that"
                    .to_owned(),
            );
        }
        if !(1024..=64 << 20).contains(&self.max_event_bytes) {
            return bad(
                "federation.max_event_bytes",
                format!(
                    "must be between 1024 and 67108864, got {}",
                    self.max_event_bytes
                ),
            );
        }
        if self.peers.len() > MAX_PEERS {
            return bad(
                "federation.peers",
                format!("at most {MAX_PEERS} peers, got {}", self.peers.len()),
            );
        }
        for (i, peer) in self.peers.iter().enumerate() {
            let key = format!("federation.peers[{i}]");
            if peer.domain.is_empty()
                || peer.domain.len() > 253
                || !peer
                    .domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
            {
                return bad(
                    &format!("{key}.domain"),
                    format!("not a domain name: {:?}", peer.domain),
                );
            }
            if peer.domain.eq_ignore_ascii_case(domain) {
                return bad(
                    &format!("{key}.domain"),
                    "is this server's own domain".to_owned(),
                );
            }
            if self.peers.iter().take(i).any(|p| p.domain == peer.domain) {
                return bad(
                    &format!("{key}.domain"),
                    format!("{} is listed twice", peer.domain),
                );
            }
            let Some(host) = peer.endpoint.strip_prefix("https://") else {
                return bad(
                    &format!("{key}.endpoint"),
                    format!("must be an https:// URL, got {:?}", peer.endpoint),
                );
            };
            if host.is_empty() || host.contains(char::is_whitespace) {
                return bad(
                    &format!("{key}.endpoint"),
                    format!("no host in {:?}", peer.endpoint),
                );
            }
            match peer.public_key {
                Some(bytes) if commucat_keys::VerifyingKey::from_bytes(&bytes).is_err() => {
                    return bad(
                        &format!("{key}.public_key"),
                        "not an Ed25519 public key".to_owned(),
                    );
                }
                Some(_) => {}
                None if peer.status == PeerStatus::Active => {
                    return bad(
                        &format!("{key}.public_key"),
                        "an active peer needs its pinned public key".to_owned(),
                    );
                }
                None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::load_from_str(Some((Path::new("/etc/commucat/c.toml"), text)), Vec::new())
            .map(|l| l.config)
    }

    #[test]
    fn peers_parse_with_defaults_and_resolved_paths() {
        let config = load(&format!(
            "[federation]\nenabled = true\n[[federation.peers]]\ndomain = \"B.Test\"\nendpoint = \"https://b.test:8443/\"\npublic_key = \"{KEY}\"\nca_file = \"b.pem\"\n[[federation.peers]]\ndomain = \"c.test\"\nendpoint = \"https://c.test\"\nstatus = \"blocked\"\n"
        ))
        .unwrap();
        let f = &config.federation;
        assert!(f.enabled);
        assert_eq!(f.peers.len(), 2);
        assert_eq!(f.peers[0].domain, "b.test");
        assert_eq!(f.peers[0].endpoint, "https://b.test:8443");
        assert_eq!(f.peers[0].status, PeerStatus::Active);
        assert_eq!(
            f.peers[0].ca_file.as_deref(),
            Some(Path::new("/etc/commucat/b.pem"))
        );
        assert_eq!(f.peers[1].status, PeerStatus::Blocked);
        assert_eq!(f.peers[1].public_key, None);
        assert_eq!(f.outbox_per_peer, 10_000);
    }

    #[test]
    fn wrong_peers_are_refused_naming_the_key() {
        for (text, key) in [
            (
                "[[federation.peers]]\ndomain = \"b.test\"\nendpoint = \"https://b.test\"\n".to_owned(),
                "federation.peers[0].public_key",
            ),
            (
                format!(
                    "[[federation.peers]]\ndomain = \"b.test\"\nendpoint = \"http://b.test\"\npublic_key = \"{KEY}\"\n"
                ),
                "federation.peers[0].endpoint",
            ),
            (
                format!(
                    "[[federation.peers]]\ndomain = \"localhost\"\nendpoint = \"https://b.test\"\npublic_key = \"{KEY}\"\n"
                ),
                "federation.peers[0].domain",
            ),
            (
                format!(
                    "[[federation.peers]]\ndomain = \"b.test\"\nendpoint = \"https://b.test\"\npublic_key = \"{KEY}\"\n[[federation.peers]]\ndomain = \"b.test\"\nendpoint = \"https://b.test\"\nstatus = \"blocked\"\n"
                ),
                "federation.peers[1].domain",
            ),
            (
                "[[federation.peers]]\ndomain = \"b.test\"\nendpoint = \"https://b.test\"\npublic_key = \"zz\"\n".to_owned(),
                "federation.peers[0].public_key",
            ),
            (
                "[federation]\noutbox_per_peer = 0\n".to_owned(),
                "federation.outbox_per_peer",
            ),
            (
                "[federation]\noutbox_ttl = 7200\nreplay_window = 3600\n".to_owned(),
                "federation.outbox_ttl",
            ),
        ] {
            match load(&text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
