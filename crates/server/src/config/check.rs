//! Validation of a merged configuration: every value in range, errors naming the setting the
//! way the operator wrote it.

use std::time::Duration;

use super::{
    Config, ConfigError, MAX_DURATION_SECS, MAX_FRAME_LEN_CEILING, MAX_FRAME_LEN_FLOOR,
    MAX_NODE_ID_LEN, MIN_ADMIN_TOKEN_LEN, Origins, SecretString, is_postgres_url, redact_url,
};

impl Config {
    pub(super) fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        self.bounds.check(origins)?;
        self.federation.check(&self.server.domain)?;
        self.transport.check(|key| origins.name(key).to_owned())?;
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
        if self.crypto.obf_max_padding > commucat_link::obf::MAX_PADDING {
            return Err(ConfigError::invalid(
                name("crypto.obf_max_padding"),
                "must be at most 64 bytes",
            ));
        }
        let messages = self.crypto.pq_ratchet_messages;
        if !(1..=u64::from(u32::MAX)).contains(&messages) {
            return Err(ConfigError::invalid(
                name("crypto.pq_ratchet_messages"),
                format!("must be between 1 and 4294967295, got {messages}"),
            ));
        }
        check_secs(
            name("crypto.pq_ratchet_interval"),
            self.crypto.pq_ratchet_interval,
            1,
            86_400,
        )?;
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
        let batch = self.store.group_commit_max_batch;
        if !(1..=4096).contains(&batch) {
            return Err(ConfigError::invalid(
                name("store.group_commit_max_batch"),
                format!("must be between 1 and 4096, got {batch}"),
            ));
        }
        if self.store.group_commit_linger > Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                name("store.group_commit_linger_us"),
                format!(
                    "must be at most 100000 (100 ms), got {}",
                    self.store.group_commit_linger.as_micros()
                ),
            ));
        }
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
