//! The sections of the configuration file, one struct each, with their defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;

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
    /// Also serve HTTP/3 (QUIC) on UDP at the listen address's port, with the same
    /// certificate, and advertise it with `Alt-Svc` (`server.http3`, `COMMUCAT_HTTP3`;
    /// default off).
    pub http3: bool,
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
    /// Accept the `pq-hybrid` capability (`crypto.pq_hybrid`, `COMMUCAT_PQ_HYBRID`; default
    /// `true`): a client that asks for it (with `noise-transport` and a valid `pq_bundle`) gets
    /// an ML-KEM-768 / ML-DSA-65 hybrid session; clients that do not ask are unaffected.
    /// `false`: such clients get the classical session and no `pq-hybrid` echo.
    pub pq_hybrid: bool,
    /// Accept the `adaptive-obf` capability (`crypto.adaptive_obf`, `COMMUCAT_ADAPTIVE_OBF`;
    /// default `true`): a client that asks for it (with `noise-transport`) gets every frame
    /// wrapped in an `ObfuscatedPacket` inside the records; clients that do not ask are
    /// unaffected. `false`: no `adaptive-obf` echo. See `docs/obfuscation.md`.
    pub adaptive_obf: bool,
    /// Largest random padding, bytes, on each side of a wrapped frame the server sends
    /// (`crypto.obf_max_padding`, `COMMUCAT_OBF_MAX_PADDING`; 0..=64, default 64).
    pub obf_max_padding: u8,
    /// A `pq-hybrid` session takes a `HybridRatchet` step after this many frames under one
    /// epoch's keys (`crypto.pq_ratchet_messages`, `COMMUCAT_PQ_RATCHET_MESSAGES`; default
    /// 10000, 1..=2³²−1).
    pub pq_ratchet_messages: u64,
    /// … or after this long under one epoch's keys, whichever comes first
    /// (`crypto.pq_ratchet_interval`, `COMMUCAT_PQ_RATCHET_INTERVAL`, seconds; default 3600,
    /// 1..=86400).
    pub pq_ratchet_interval: Duration,
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
    /// Most offline enqueues committed in one transaction (`store.group_commit_max_batch`,
    /// `COMMUCAT_STORE_GROUP_COMMIT_MAX_BATCH`), on either store.
    pub group_commit_max_batch: usize,
    /// Longest time the group-commit writer waits for more enqueues before committing a batch
    /// that is not full (`store.group_commit_linger_us`, microseconds,
    /// `COMMUCAT_STORE_GROUP_COMMIT_LINGER_US`); zero commits at once what is waiting.
    pub group_commit_linger: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        let pool = commucat_store::PostgresSettings::default();
        Self {
            url: None,
            max_connections: pool.max_connections,
            acquire_timeout: pool.acquire_timeout,
            schema: None,
            group_commit_max_batch: pool.group_commit.max_batch,
            group_commit_linger: pool.group_commit.max_linger,
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
            group_commit: self.group_commit(),
        }
    }

    /// The group-commit settings these ask for.
    #[must_use]
    pub fn group_commit(&self) -> commucat_store::GroupCommitSettings {
        commucat_store::GroupCommitSettings {
            max_batch: self.group_commit_max_batch,
            max_linger: self.group_commit_linger,
            ..commucat_store::GroupCommitSettings::default()
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

/// How log lines are written to standard error (`log.format`, `COMMUCAT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`, `spans`).
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub(crate) fn parse(key: &str, raw: &str) -> Result<Self, ConfigError> {
        match raw.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(ConfigError::invalid(
                key,
                format!("must be \"text\" or \"json\", got {other:?}"),
            )),
        }
    }
}

/// `[log]` section. The level filter stays `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Line format (`log.format`, `COMMUCAT_LOG_FORMAT`); default `text`.
    pub format: LogFormat,
}

#[cfg(test)]
mod log_format_tests {
    use super::super::Config;
    use super::LogFormat;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn log_format_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("commucat.toml");
        assert_eq!(
            Config::load(None, env(&[])).unwrap().config.log.format,
            LogFormat::Text
        );
        std::fs::write(&file, "[log]\nformat = \"json\"\n").unwrap();
        let loaded = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(loaded.config.log.format, LogFormat::Json);
        let loaded = Config::load(Some(&file), env(&[("COMMUCAT_LOG_FORMAT", "text")])).unwrap();
        assert_eq!(loaded.config.log.format, LogFormat::Text);
        let error = Config::load(None, env(&[("COMMUCAT_LOG_FORMAT", "xml")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "COMMUCAT_LOG_FORMAT: must be \"text\" or \"json\", got \"xml\""
        );
        std::fs::write(&file, "[log]\nformat = \"yaml\"\n").unwrap();
        let error = Config::load(Some(&file), env(&[])).unwrap_err();
        assert!(error.to_string().starts_with("log.format: "), "{error}");
    }
}
