//! The TOML configuration file: every key optional, unknown keys rejected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigError, LedgerSink, TlsFiles, parse_listen};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    tls: TlsSection,
    #[serde(default)]
    crypto: CryptoSection,
    #[serde(default)]
    devices: DevicesSection,
    #[serde(default)]
    session: SessionSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    offline: OfflineSection,
    #[serde(default)]
    presence: PresenceSection,
    #[serde(default)]
    rate_limits: RateLimitsSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    ledger: LedgerSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    bounds: super::bounds::BoundsSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    federation: super::federation::FederationSection,
    #[serde(default)]
    transport: super::transport::TransportSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitsSection {
    rest_per_minute: Option<u32>,
    claim_per_minute: Option<u32>,
    connect_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    admin_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<String>,
    domain: Option<String>,
    data_dir: Option<PathBuf>,
    shutdown_grace: Option<u64>,
    drain_deadline: Option<u64>,
    http3: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CryptoSection {
    prologue: Option<String>,
    noise_key_grace: Option<u64>,
    pq_hybrid: Option<bool>,
    adaptive_obf: Option<bool>,
    obf_max_padding: Option<u8>,
    pq_ratchet_messages: Option<u64>,
    pq_ratchet_interval: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerSection {
    sink: Option<String>,
    path: Option<PathBuf>,
    queue: Option<usize>,
    fsync: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesSection {
    auto_approve: Option<bool>,
    max_auto_devices_per_user: Option<u32>,
    pairing_ttl: Option<u64>,
    certificate_validity: Option<u64>,
    renewal_margin: Option<u64>,
    rotation_enabled: Option<bool>,
    rotation_min_interval: Option<u64>,
    rotation_proof_ttl: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionSection {
    ttl: Option<u64>,
    keepalive: Option<u64>,
    presence_ttl: Option<u64>,
    handshake_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_frame_len: Option<usize>,
    max_connections: Option<usize>,
    tls_handshake_timeout: Option<u64>,
    mailbox_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfflineSection {
    ttl: Option<u64>,
    max_per_device: Option<u64>,
    dedup_window: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceSection {
    redis_url: Option<String>,
    key_prefix: Option<String>,
    node_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    url: Option<String>,
    max_connections: Option<u32>,
    acquire_timeout: Option<u64>,
    schema: Option<String>,
    group_commit_max_batch: Option<usize>,
    group_commit_linger_us: Option<u64>,
}

/// Parses `text` (the contents of `path`) and applies its settings to `config`.
pub(super) fn apply(config: &mut Config, path: &Path, text: &str) -> Result<(), ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
        path: path.to_owned(),
        message: error.to_string().trim_end().to_owned(),
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };

    let server = file.server;
    if let Some(listen) = server.listen {
        config.server.listen = parse_listen("server.listen", &listen)?;
    }
    set(&mut config.server.domain, server.domain);
    set(&mut config.server.data_dir, server.data_dir.map(resolve));
    set_secs(&mut config.server.shutdown_grace, server.shutdown_grace);
    set_secs(&mut config.server.drain_deadline, server.drain_deadline);
    set(&mut config.server.http3, server.http3);

    match (file.tls.cert, file.tls.key) {
        (Some(cert), Some(key)) => {
            config.tls.files = Some(TlsFiles {
                cert: resolve(cert),
                key: resolve(key),
            });
        }
        (None, None) => {}
        (Some(_), None) => return Err(ConfigError::invalid("tls.cert", "set without tls.key")),
        (None, Some(_)) => return Err(ConfigError::invalid("tls.key", "set without tls.cert")),
    }

    set(&mut config.crypto.prologue, file.crypto.prologue);
    if let Some(grace) = file.crypto.noise_key_grace {
        config.crypto.noise_key_grace = Some(Duration::from_secs(grace));
    }
    set(&mut config.crypto.pq_hybrid, file.crypto.pq_hybrid);
    set(&mut config.crypto.adaptive_obf, file.crypto.adaptive_obf);
    set(
        &mut config.crypto.obf_max_padding,
        file.crypto.obf_max_padding,
    );
    set(
        &mut config.crypto.pq_ratchet_messages,
        file.crypto.pq_ratchet_messages,
    );
    if let Some(interval) = file.crypto.pq_ratchet_interval {
        config.crypto.pq_ratchet_interval = Duration::from_secs(interval);
    }

    let ledger = file.ledger;
    if let Some(sink) = ledger.sink {
        config.ledger.sink = LedgerSink::parse("ledger.sink", &sink)?;
    }
    if let Some(path) = ledger.path {
        config.ledger.path = Some(resolve(path));
    }
    set(&mut config.ledger.queue, ledger.queue);
    set(&mut config.ledger.fsync, ledger.fsync);

    let devices = file.devices;
    set(&mut config.devices.auto_approve, devices.auto_approve);
    set(
        &mut config.devices.max_auto_devices_per_user,
        devices.max_auto_devices_per_user,
    );
    set_secs(&mut config.devices.pairing_ttl, devices.pairing_ttl);
    set_secs(
        &mut config.devices.certificate_validity,
        devices.certificate_validity,
    );
    set_secs(&mut config.devices.renewal_margin, devices.renewal_margin);
    set(
        &mut config.devices.rotation_enabled,
        devices.rotation_enabled,
    );
    set_secs(
        &mut config.devices.rotation_min_interval,
        devices.rotation_min_interval,
    );
    set_secs(
        &mut config.devices.rotation_proof_ttl,
        devices.rotation_proof_ttl,
    );

    let session = file.session;
    set_secs(&mut config.session.ttl, session.ttl);
    set_secs(&mut config.session.keepalive, session.keepalive);
    set_secs(&mut config.session.presence_ttl, session.presence_ttl);
    set_secs(
        &mut config.session.handshake_timeout,
        session.handshake_timeout,
    );

    let limits = file.limits;
    set(&mut config.limits.max_frame_len, limits.max_frame_len);
    set(&mut config.limits.max_connections, limits.max_connections);
    set_secs(
        &mut config.limits.tls_handshake_timeout,
        limits.tls_handshake_timeout,
    );
    set(&mut config.limits.mailbox_capacity, limits.mailbox_capacity);

    file.bounds.apply(&mut config.bounds);
    file.federation.apply(&mut config.federation, resolve)?;
    file.transport.apply(&mut config.transport, resolve);

    let offline = file.offline;
    set_secs(&mut config.offline.ttl, offline.ttl);
    set(&mut config.offline.max_per_device, offline.max_per_device);
    set_secs(&mut config.offline.dedup_window, offline.dedup_window);

    let presence = file.presence;
    if let Some(url) = presence.redis_url.filter(|url| !url.trim().is_empty()) {
        config.presence.redis_url = Some(url);
    }
    set(&mut config.presence.key_prefix, presence.key_prefix);
    if let Some(node) = presence.node_id.filter(|n| !n.trim().is_empty()) {
        config.presence.node_id = Some(node.trim().to_owned());
    }

    let limits = file.rate_limits;
    set(
        &mut config.rate_limits.rest_per_minute,
        limits.rest_per_minute,
    );
    set(
        &mut config.rate_limits.claim_per_minute,
        limits.claim_per_minute,
    );
    set(
        &mut config.rate_limits.connect_per_minute,
        limits.connect_per_minute,
    );
    if let Some(token) = file.metrics.admin_token.filter(|t| !t.is_empty()) {
        config.metrics.admin_token = Some(super::SecretString(token));
    }

    if let Some(format) = file.log.format {
        config.log.format = super::LogFormat::parse("log.format", &format)?;
    }

    let store = file.store;
    if let Some(url) = store.url.filter(|url| !url.trim().is_empty()) {
        config.store.url = Some(url.trim().to_owned());
    }
    set(&mut config.store.max_connections, store.max_connections);
    set_secs(&mut config.store.acquire_timeout, store.acquire_timeout);
    set(
        &mut config.store.group_commit_max_batch,
        store.group_commit_max_batch,
    );
    if let Some(us) = store.group_commit_linger_us {
        config.store.group_commit_linger = std::time::Duration::from_micros(us);
    }
    if let Some(schema) = store.schema.filter(|s| !s.trim().is_empty()) {
        config.store.schema = Some(schema.trim().to_owned());
    }
    Ok(())
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn set_secs(slot: &mut Duration, secs: Option<u64>) {
    if let Some(secs) = secs {
        *slot = Duration::from_secs(secs);
    }
}
