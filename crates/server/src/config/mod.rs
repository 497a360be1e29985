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
mod env;
mod file;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use bounds::{Bound, BoundSettings, as_usize};
pub use env::ENV_PREFIX;

/// Largest accepted `limits.max_frame_len`: the CCP-1 wire limit.
pub const MAX_FRAME_LEN_CEILING: usize = commucat_ccp::MAX_FRAME_LEN;
/// Smallest accepted `limits.max_frame_len`: room for handshake frames.
pub const MAX_FRAME_LEN_FLOOR: usize = 4 * 1024;
/// Longest accepted duration setting (one year), so time arithmetic never overflows.
pub const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;

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
}

/// `[rate_limits]` section: per client IP (IPv6 per /64), token buckets that hold a minute's
/// budget and refill evenly; 0 turns a limit off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// REST requests per minute (`rate_limits.rest_per_minute`, `COMMUCAT_RATE_LIMIT_REST`).
    pub rest_per_minute: u32,
    /// Pairing claims per minute, on top of the REST budget (`rate_limits.claim_per_minute`,
    /// `COMMUCAT_RATE_LIMIT_CLAIM`).
    pub claim_per_minute: u32,
    /// `/connect` attempts per minute (`rate_limits.connect_per_minute`,
    /// `COMMUCAT_RATE_LIMIT_CONNECT`).
    pub connect_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            rest_per_minute: 600,
            claim_per_minute: 10,
            connect_per_minute: 120,
        }
    }
}

/// A secret setting: compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSettings {
    /// Bearer token required by `/metrics` and `/api/security-stats` (`metrics.admin_token`,
    /// `COMMUCAT_METRICS_TOKEN`); `None` leaves them open. At least 16 bytes.
    pub admin_token: Option<SecretString>,
}

/// Shortest accepted `metrics.admin_token`, bytes.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Default `server.drain_deadline`: enough for sessions to queue a full mailbox each, even
/// while the store retries.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Socket address to bind (`server.listen`, `COMMUCAT_LISTEN`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Public domain of this server (`server.domain`, `COMMUCAT_DOMAIN`): a DNS name or an IP.
    pub domain: String,
    /// Directory holding keys and certificates (`server.data_dir`, `COMMUCAT_DATA_DIR`).
    pub data_dir: PathBuf,
    /// How long shutdown waits for open connections to finish (`server.shutdown_grace`).
    pub shutdown_grace: Duration,
    /// How long shutdown waits, from its start, for sessions to queue what they hold for
    /// their devices before the store closes (`server.drain_deadline`,
    /// `COMMUCAT_DRAIN_DEADLINE`).
    pub drain_deadline: Duration,
}

/// `[tls]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// Operator-supplied PEM certificate chain and private key; `None` uses the dev certificate.
    pub files: Option<TlsFiles>,
}

/// Paths of an operator-supplied certificate chain and its private key (both PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`tls.cert`, `COMMUCAT_TLS_CERT`).
    pub cert: PathBuf,
    /// Private key (`tls.key`, `COMMUCAT_TLS_KEY`).
    pub key: PathBuf,
}

/// `[crypto]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoSettings {
    /// Noise prologue (`crypto.prologue`, `COMMUCAT_NOISE_PROLOGUE`); must match the clients'.
    pub prologue: String,
    /// How long a Noise static key stays accepted after `commucat keys rotate` replaced it
    /// (`crypto.noise_key_grace`, `COMMUCAT_NOISE_KEY_GRACE`); `None` (the default): until an
    /// operator retires it with `commucat keys retire`, because deployed clients pin the key.
    pub noise_key_grace: Option<Duration>,
}

/// `[devices]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSettings {
    /// Approve new devices without a pairing code (`devices.auto_approve`).
    pub auto_approve: bool,
    /// Devices one user may add by auto-approval (`devices.max_auto_devices_per_user`).
    pub max_auto_devices_per_user: u32,
    /// Lifetime of a pairing code (`devices.pairing_ttl`), 60..=3600 seconds.
    pub pairing_ttl: Duration,
    /// Validity of an issued device certificate (`devices.certificate_validity`).
    pub certificate_validity: Duration,
    /// Renew a device certificate this long before it expires (`devices.renewal_margin`).
    pub renewal_margin: Duration,
    /// Accept `POST /api/devices/rotate` (`devices.rotation_enabled`, default on).
    pub rotation_enabled: bool,
    /// Shortest time between two rotations of one device (`devices.rotation_min_interval`,
    /// default 1 hour, at most 30 days; 0 allows back-to-back rotations). The first rotation
    /// after registration is not limited.
    pub rotation_min_interval: Duration,
    /// How far `issued_at` of a rotation proof may be from the server's clock
    /// (`devices.rotation_proof_ttl`, default 5 minutes, 30..=3600 seconds).
    pub rotation_proof_ttl: Duration,
}

/// `[session]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Lifetime of a session token (`session.ttl`, `COMMUCAT_SESSION_TTL`).
    pub ttl: Duration,
    /// Keepalive interval announced to clients (`session.keepalive`).
    pub keepalive: Duration,
    /// How long a presence entry lives without refresh (`session.presence_ttl`).
    pub presence_ttl: Duration,
    /// Time a client gets to finish the device handshake after opening `/connect`
    /// (`session.handshake_timeout`, `COMMUCAT_HANDSHAKE_TIMEOUT`).
    pub handshake_timeout: Duration,
}

/// `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Largest CCP-1 frame accepted (`limits.max_frame_len`), at most 16 MiB.
    pub max_frame_len: usize,
    /// Connections served at once (`limits.max_connections`); further ones wait in the backlog.
    pub max_connections: usize,
    /// Time a client gets to complete the TLS handshake (`limits.tls_handshake_timeout`).
    pub tls_handshake_timeout: Duration,
    /// Frames that may wait for one session before it counts as a slow consumer
    /// (`limits.mailbox_capacity`, `COMMUCAT_MAILBOX_CAPACITY`).
    pub mailbox_capacity: usize,
}

/// `[offline]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineSettings {
    /// How long a queued frame waits for its recipient before it is dropped (`offline.ttl`,
    /// `COMMUCAT_OFFLINE_TTL`).
    pub ttl: Duration,
    /// Frames one device may have queued; further frames for it are refused with an ERROR to
    /// the sender (`offline.max_per_device`, `COMMUCAT_OFFLINE_MAX_PER_DEVICE`).
    pub max_per_device: u64,
    /// How long a relayed frame's idempotency key is remembered, so a resend is not delivered
    /// twice (`offline.dedup_window`, `COMMUCAT_DEDUP_WINDOW`).
    pub dedup_window: Duration,
}

/// `[presence]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceSettings {
    /// Redis holding the presence registry (`presence.redis_url`, `COMMUCAT_REDIS_URL`),
    /// `redis://` or `rediss://`; `None` keeps presence in this process.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (`presence.key_prefix`, `COMMUCAT_REDIS_KEY_PREFIX`), so
    /// several deployments can share one Redis; empty by default.
    pub key_prefix: String,
    /// This node's id in `route:<device>` entries (`presence.node_id`, `COMMUCAT_NODE_ID`);
    /// `None` draws a random `node-<hex>` at startup.
    pub node_id: Option<String>,
}

/// Longest accepted `presence.node_id`.
pub const MAX_NODE_ID_LEN: usize = 128;

/// `[store]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// PostgreSQL holding the durable state (`store.url`, `COMMUCAT_STORE_URL`), `postgres://`
    /// or `postgresql://`; `None` keeps it in the embedded SQLite file
    /// `<server.data_dir>/commucat.db`.
    pub url: Option<String>,
    /// Most pooled PostgreSQL connections (`store.max_connections`,
    /// `COMMUCAT_STORE_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// How long a store call waits for a PostgreSQL connection before it fails
    /// (`store.acquire_timeout`, `COMMUCAT_STORE_ACQUIRE_TIMEOUT`): while the database is down,
    /// handshakes fail after this with `Service Unavailable` instead of hanging.
    pub acquire_timeout: Duration,
    /// PostgreSQL schema of the tables (`store.schema`, `COMMUCAT_STORE_SCHEMA`), created if
    /// missing; `None` uses the server's default `search_path` (normally `public`).
    pub schema: Option<String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        let pool = commucat_store::PostgresSettings::default();
        Self {
            url: None,
            max_connections: pool.max_connections,
            acquire_timeout: pool.acquire_timeout,
            schema: None,
        }
    }
}

impl StoreSettings {
    /// The pool settings these ask for.
    #[must_use]
    pub fn postgres(&self) -> commucat_store::PostgresSettings {
        commucat_store::PostgresSettings {
            max_connections: self.max_connections,
            acquire_timeout: self.acquire_timeout,
            schema: self.schema.clone(),
        }
    }
}

/// Whether `url` selects the PostgreSQL store.
#[must_use]
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Where ledger records go (`ledger.sink`, `COMMUCAT_LEDGER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerSink {
    /// No ledger.
    Off,
    /// One JSON line per record on standard output.
    Stdout,
    /// Appended to `ledger.path` (default `<data_dir>/ledger.jsonl`).
    File,
}

impl LedgerSink {
    /// Parses `off`, `stdout` or `file`.
    pub(crate) fn parse(key: &str, raw: &str) -> Result<Self, ConfigError> {
        match raw.trim() {
            "off" => Ok(Self::Off),
            "stdout" => Ok(Self::Stdout),
            "file" => Ok(Self::File),
            other => Err(ConfigError::invalid(
                key,
                format!("must be \"off\", \"stdout\" or \"file\", got {other:?}"),
            )),
        }
    }
}

/// `[ledger]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Where records go (`ledger.sink`, `COMMUCAT_LEDGER`); default `file`.
    pub sink: LedgerSink,
    /// The ledger file (`ledger.path`, `COMMUCAT_LEDGER_PATH`); `None`: `<data_dir>/ledger.jsonl`.
    pub path: Option<PathBuf>,
    /// Records that may wait for the writer (`ledger.queue`); when full, new records are
    /// dropped and counted, never waited for.
    pub queue: usize,
    /// `fdatasync` the file after every batch (`ledger.fsync`); otherwise records reach the
    /// operating system after every batch and the disk when it flushes.
    pub fsync: bool,
}

/// Name of the ledger file inside the data directory when `ledger.path` is unset.
pub const LEDGER_FILE: &str = "ledger.jsonl";

impl LedgerSettings {
    /// The file records are appended to, when the sink is a file.
    #[must_use]
    pub fn file_path(&self, data_dir: &Path) -> Option<PathBuf> {
        (self.sink == LedgerSink::File).then(|| {
            self.path
                .clone()
                .unwrap_or_else(|| data_dir.join(LEDGER_FILE))
        })
    }
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
            },
            tls: TlsSettings::default(),
            crypto: CryptoSettings {
                prologue: "commucat".to_owned(),
                noise_key_grace: None,
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

    fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        self.bounds.check(origins)?;
        let name = |key| origins.name(key);
        check_domain(name("server.domain"), &self.server.domain)?;
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                name("server.data_dir"),
                "must not be empty",
            ));
        }
        check_secs(
            name("server.shutdown_grace"),
            self.server.shutdown_grace,
            0,
            3600,
        )?;
        check_secs(
            name("server.drain_deadline"),
            self.server.drain_deadline,
            1,
            3600,
        )?;
        if self.crypto.prologue.len() > 1024 {
            return Err(ConfigError::invalid(
                name("crypto.prologue"),
                "must be at most 1024 bytes",
            ));
        }
        if let Some(grace) = self.crypto.noise_key_grace {
            check_secs(name("crypto.noise_key_grace"), grace, 0, MAX_DURATION_SECS)?;
        }
        let queue = self.ledger.queue;
        if !(1..=1_000_000).contains(&queue) {
            return Err(ConfigError::invalid(
                name("ledger.queue"),
                format!("must be between 1 and 1000000, got {queue}"),
            ));
        }
        check_secs(
            name("devices.pairing_ttl"),
            self.devices.pairing_ttl,
            60,
            3600,
        )?;
        let validity = self.devices.certificate_validity;
        check_secs(
            name("devices.certificate_validity"),
            validity,
            3600,
            MAX_DURATION_SECS,
        )?;
        check_secs(
            name("devices.renewal_margin"),
            self.devices.renewal_margin,
            0,
            MAX_DURATION_SECS,
        )?;
        if self.devices.renewal_margin >= validity {
            return Err(ConfigError::invalid(
                name("devices.renewal_margin"),
                format!(
                    "must be shorter than devices.certificate_validity ({} s)",
                    validity.as_secs()
                ),
            ));
        }
        check_secs(
            name("devices.rotation_min_interval"),
            self.devices.rotation_min_interval,
            0,
            30 * 24 * 3600,
        )?;
        check_secs(
            name("devices.rotation_proof_ttl"),
            self.devices.rotation_proof_ttl,
            30,
            3600,
        )?;
        check_secs(name("session.ttl"), self.session.ttl, 1, MAX_DURATION_SECS)?;
        check_secs(name("session.keepalive"), self.session.keepalive, 1, 3600)?;
        check_secs(
            name("session.handshake_timeout"),
            self.session.handshake_timeout,
            1,
            300,
        )?;
        check_secs(
            name("session.presence_ttl"),
            self.session.presence_ttl,
            1,
            MAX_DURATION_SECS,
        )?;
        let frame = self.limits.max_frame_len;
        if !(MAX_FRAME_LEN_FLOOR..=MAX_FRAME_LEN_CEILING).contains(&frame) {
            return Err(ConfigError::invalid(
                name("limits.max_frame_len"),
                format!(
                    "must be between {MAX_FRAME_LEN_FLOOR} and {MAX_FRAME_LEN_CEILING} bytes (16 MiB), got {frame}"
                ),
            ));
        }
        let connections = self.limits.max_connections;
        if !(1..=1_000_000).contains(&connections) {
            return Err(ConfigError::invalid(
                name("limits.max_connections"),
                format!("must be between 1 and 1000000, got {connections}"),
            ));
        }
        check_secs(
            name("limits.tls_handshake_timeout"),
            self.limits.tls_handshake_timeout,
            1,
            300,
        )?;
        let mailbox = self.limits.mailbox_capacity;
        if !(1..=1_000_000).contains(&mailbox) {
            return Err(ConfigError::invalid(
                name("limits.mailbox_capacity"),
                format!("must be between 1 and 1000000, got {mailbox}"),
            ));
        }
        check_secs(name("offline.ttl"), self.offline.ttl, 1, MAX_DURATION_SECS)?;
        let queue = self.offline.max_per_device;
        if !(1..=10_000_000).contains(&queue) {
            return Err(ConfigError::invalid(
                name("offline.max_per_device"),
                format!("must be between 1 and 10000000, got {queue}"),
            ));
        }
        check_secs(
            name("offline.dedup_window"),
            self.offline.dedup_window,
            1,
            7 * 24 * 3600,
        )?;
        if let Some(url) = &self.presence.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError::invalid(
                name("presence.redis_url"),
                format!(
                    "must start with redis:// or rediss://, got {:?}",
                    redact_url(url)
                ),
            ));
        }
        if let Some(url) = &self.store.url
            && !is_postgres_url(url)
        {
            return Err(ConfigError::invalid(
                name("store.url"),
                format!(
                    "must start with postgres:// or postgresql:// (unset keeps the embedded SQLite store), got {:?}",
                    redact_url(url)
                ),
            ));
        }
        let pool = self.store.max_connections;
        if !(1..=1000).contains(&pool) {
            return Err(ConfigError::invalid(
                name("store.max_connections"),
                format!("must be between 1 and 1000, got {pool}"),
            ));
        }
        check_secs(
            name("store.acquire_timeout"),
            self.store.acquire_timeout,
            1,
            60,
        )?;
        if let Some(schema) = &self.store.schema {
            if self.store.url.is_none() {
                return Err(ConfigError::invalid(
                    name("store.schema"),
                    "applies to PostgreSQL only; set store.url too",
                ));
            }
            if !commucat_store::valid_schema_name(schema) {
                return Err(ConfigError::invalid(
                    name("store.schema"),
                    format!(
                        "must be 1..={} characters of [a-z0-9_], not starting with a digit, got {schema:?}",
                        commucat_store::MAX_SCHEMA_LEN
                    ),
                ));
            }
        }
        if let Some(node) = &self.presence.node_id {
            let valid = !node.is_empty()
                && node.len() <= MAX_NODE_ID_LEN
                && node
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
            if !valid {
                return Err(ConfigError::invalid(
                    name("presence.node_id"),
                    format!(
                        "must be 1..={MAX_NODE_ID_LEN} characters of [A-Za-z0-9-_.:], got {node:?}"
                    ),
                ));
            }
        }
        if self.presence.key_prefix.len() > 256 {
            return Err(ConfigError::invalid(
                name("presence.key_prefix"),
                "must be at most 256 bytes",
            ));
        }
        let limits = &self.rate_limits;
        for (key, value) in [
            ("rate_limits.rest_per_minute", limits.rest_per_minute),
            ("rate_limits.claim_per_minute", limits.claim_per_minute),
            ("rate_limits.connect_per_minute", limits.connect_per_minute),
        ] {
            if value > 1_000_000 {
                return Err(ConfigError::invalid(
                    name(key),
                    format!("must be between 0 (off) and 1000000, got {value}"),
                ));
            }
        }
        if let Some(SecretString(token)) = &self.metrics.admin_token
            && (token.len() < MIN_ADMIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ConfigError::invalid(
                name("metrics.admin_token"),
                format!(
                    "must be at least {MIN_ADMIN_TOKEN_LEN} printable ASCII characters without spaces"
                ),
            ));
        }
        Ok(())
    }
}

fn check_secs(key: &str, value: Duration, min: u64, max: u64) -> Result<(), ConfigError> {
    let secs = value.as_secs();
    if value.subsec_nanos() != 0 || secs < min || secs > max {
        return Err(ConfigError::invalid(
            key,
            format!(
                "must be between {min} and {max} seconds, got {}",
                value.as_secs_f64()
            ),
        ));
    }
    Ok(())
}

fn check_domain(key: &str, domain: &str) -> Result<(), ConfigError> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && rustls_pki_types::ServerName::try_from(domain).is_ok();
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("invalid domain name {domain:?}"),
        ))
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
