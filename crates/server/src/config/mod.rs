//! Server configuration: defaults, one TOML file, then `COMMUCAT_*` environment overrides.
//!
//! Precedence is environment > file > default. Every value is checked after the layers are
//! merged, and an error names the setting the way the operator wrote it: `server.listen` for
//! the file, `COMMUCAT_LISTEN` for the environment. Durations are whole seconds.
//!
//! Relative paths in the file (`server.data_dir`, `tls.cert`, `tls.key`) are resolved against
//! the file's directory; relative paths from the environment or the command line against the
//! working directory.

mod bounds;
mod check;
mod env;
mod federation;
mod file;
mod sections;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use bounds::{Bound, BoundSettings, as_usize};
pub use env::ENV_PREFIX;
pub use federation::{FederationSettings, MAX_PEERS, PeerConfig, PeerStatus};
pub use sections::{
    CryptoSettings, DeviceSettings, LEDGER_FILE, LedgerSettings, LedgerSink, LimitSettings,
    LogFormat, LogSettings, MAX_NODE_ID_LEN, MIN_ADMIN_TOKEN_LEN, MetricsSettings, OfflineSettings,
    PresenceSettings, RateLimitSettings, SecretString, ServerSettings, SessionSettings,
    StoreSettings, TlsFiles, TlsSettings, is_postgres_url,
};
pub use transport::TransportSettings;

/// Largest accepted `limits.max_frame_len`: the CCP-1 wire limit.
pub const MAX_FRAME_LEN_CEILING: usize = commucat_ccp::MAX_FRAME_LEN;
/// Smallest accepted `limits.max_frame_len`: room for handshake frames.
pub const MAX_FRAME_LEN_FLOOR: usize = 4 * 1024;
/// Longest accepted duration setting (one year), so time arithmetic never overflows.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;
/// Default `server.drain_deadline`: enough for sessions to queue a full mailbox each, even
/// while the store retries.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// The whole, validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[server]`: where to listen, who we are, where state lives.
    pub server: ServerSettings,
    /// `[tls]`: operator-supplied certificate, or none for the generated dev certificate.
    pub tls: TlsSettings,
    /// `[crypto]`: Noise parameters.
    pub crypto: CryptoSettings,
    /// `[devices]`: device approval and device certificates.
    pub devices: DeviceSettings,
    /// `[session]`: session and presence lifetimes.
    pub session: SessionSettings,
    /// `[limits]`: resource bounds.
    pub limits: LimitSettings,
    /// `[offline]`: the durable queue for devices that are not connected.
    pub offline: OfflineSettings,
    /// `[presence]`: where presence snapshots live.
    pub presence: PresenceSettings,
    /// `[rate_limits]`: per-IP request budgets.
    pub rate_limits: RateLimitSettings,
    /// `[metrics]`: access to `/metrics` and `/api/security-stats`.
    pub metrics: MetricsSettings,
    /// `[ledger]`: the append-only audit record.
    pub ledger: LedgerSettings,
    /// `[store]`: where durable state lives.
    pub store: StoreSettings,
    /// `[bounds]` section: what one device, session or address can make the server hold.
    pub bounds: BoundSettings,
    /// `[log]`: how log lines are written.
    pub log: LogSettings,
    /// `[federation]`: peer domains and the event exchange with them.
    pub federation: FederationSettings,
    /// `[transport]`: outer-transport ranking and REALITY material.
    pub transport: TransportSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
                domain: "localhost".to_owned(),
                data_dir: PathBuf::from("./commucat-data"),
                shutdown_grace: Duration::from_secs(30),
                drain_deadline: DEFAULT_DRAIN_DEADLINE,
                http3: false,
            },
            tls: TlsSettings::default(),
            crypto: CryptoSettings {
                prologue: "commucat".to_owned(),
                noise_key_grace: None,
                pq_hybrid: true,
                adaptive_obf: true,
                obf_max_padding: commucat_link::obf::MAX_PADDING,
                pq_ratchet_messages: 10_000,
                pq_ratchet_interval: Duration::from_secs(3600),
            },
            devices: DeviceSettings {
                auto_approve: true,
                max_auto_devices_per_user: 5,
                pairing_ttl: Duration::from_secs(300),
                certificate_validity: Duration::from_secs(30 * 24 * 3600),
                renewal_margin: Duration::from_secs(7 * 24 * 3600),
                rotation_enabled: true,
                rotation_min_interval: Duration::from_secs(3600),
                rotation_proof_ttl: Duration::from_secs(300),
            },
            session: SessionSettings {
                ttl: Duration::from_secs(3600),
                keepalive: Duration::from_secs(30),
                presence_ttl: Duration::from_secs(60),
                handshake_timeout: Duration::from_secs(10),
            },
            limits: LimitSettings {
                max_frame_len: MAX_FRAME_LEN_CEILING,
                max_connections: 10_000,
                tls_handshake_timeout: Duration::from_secs(10),
                mailbox_capacity: 1024,
            },
            offline: OfflineSettings {
                ttl: Duration::from_secs(7 * 24 * 3600),
                max_per_device: 10_000,
                dedup_window: Duration::from_secs(300),
            },
            presence: PresenceSettings::default(),
            rate_limits: RateLimitSettings::default(),
            metrics: MetricsSettings::default(),
            ledger: LedgerSettings {
                sink: LedgerSink::File,
                path: None,
                queue: 4096,
                fsync: false,
            },
            store: StoreSettings::default(),
            bounds: BoundSettings::default(),
            log: LogSettings::default(),
            federation: FederationSettings::default(),
            transport: TransportSettings::default(),
        }
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A setting has an invalid value; `key` is the file key or environment variable.
    #[error("{key}: {message}")]
    Invalid {
        /// `section.key` or `COMMUCAT_*`, as the operator wrote it.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// A loaded configuration and the environment variables that looked like settings but were
/// not recognised (reported by the caller as a warning).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// `COMMUCAT_*` variables that are not settings, sorted.
    pub unknown_env: Vec<String>,
}

/// Which source last set each setting: the file key maps to the name to show in errors.
#[derive(Debug, Default)]
pub(crate) struct Origins(HashMap<&'static str, String>);

impl Origins {
    pub(crate) fn set(&mut self, file_key: &'static str, shown: &str) {
        self.0.insert(file_key, shown.to_owned());
    }

    fn name<'a>(&'a self, file_key: &'a str) -> &'a str {
        self.0.get(file_key).map_or(file_key, String::as_str)
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then the `COMMUCAT_*` variables of `env`.
    ///
    /// `env` is injectable so tests need not touch the process environment; the binary passes
    /// `std::env::vars()`.
    pub fn load<I>(file: Option<&Path>, env: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::load_from_str(
            text.as_deref().zip(file).map(|(text, path)| (path, text)),
            env,
        )
    }

    /// Like [`Config::load`] with the file's contents given as `(path, text)`; `path` names the
    /// file in errors and anchors relative paths.
    pub fn load_from_str<I>(file: Option<(&Path, &str)>, env: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut config = Self::default();
        let mut origins = Origins::default();
        if let Some((path, text)) = file {
            file::apply(&mut config, path, text)?;
        }
        let unknown_env = env::apply(&mut config, &mut origins, env)?;
        config.check(&origins)?;
        Ok(Loaded {
            config,
            unknown_env,
        })
    }

    /// Checks every value, naming file keys in errors. [`Config::load`] already did this;
    /// call it after changing fields by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&Origins::default())
    }
}

/// `url` with the password of its `user:password@` part replaced by `***`, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Parses a socket address, naming `key` on failure.
pub(crate) fn parse_listen(key: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::invalid(key, format!("invalid socket address {raw:?}")))
}

#[cfg(test)]
mod tests;
