//! `COMMUCAT_*` environment overrides.

use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, LedgerSink, Origins, TlsFiles, parse_listen};

/// Prefix of every environment setting.
pub const ENV_PREFIX: &str = "COMMUCAT_";

type Setter = fn(&mut Config, &str, &str) -> Result<(), ConfigError>;

/// `(variable, file key it overrides, how to apply it)`.
const SETTINGS: &[(&str, &str, Setter)] = &[
    ("COMMUCAT_LISTEN", "server.listen", |c, name, raw| {
        c.server.listen = parse_listen(name, raw)?;
        Ok(())
    }),
    ("COMMUCAT_DOMAIN", "server.domain", |c, _, raw| {
        raw.clone_into(&mut c.server.domain);
        Ok(())
    }),
    ("COMMUCAT_DATA_DIR", "server.data_dir", |c, _, raw| {
        c.server.data_dir = PathBuf::from(raw);
        Ok(())
    }),
    (
        "COMMUCAT_SHUTDOWN_GRACE",
        "server.shutdown_grace",
        |c, n, r| {
            c.server.shutdown_grace = secs(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_DRAIN_DEADLINE",
        "server.drain_deadline",
        |c, n, r| {
            c.server.drain_deadline = secs(n, r)?;
            Ok(())
        },
    ),
    ("COMMUCAT_HTTP3", "server.http3", |c, n, r| {
        c.server.http3 = boolean(n, r)?;
        Ok(())
    }),
    ("COMMUCAT_NOISE_PROLOGUE", "crypto.prologue", |c, _, raw| {
        raw.clone_into(&mut c.crypto.prologue);
        Ok(())
    }),
    (
        "COMMUCAT_NOISE_KEY_GRACE",
        "crypto.noise_key_grace",
        |c, n, r| {
            c.crypto.noise_key_grace = Some(secs(n, r)?);
            Ok(())
        },
    ),
    ("COMMUCAT_LOG_FORMAT", "log.format", |c, n, r| {
        c.log.format = super::LogFormat::parse(n, r)?;
        Ok(())
    }),
    (
        "COMMUCAT_REALITY_CERT",
        "transport.reality_cert",
        |c, _, raw| {
            c.transport.reality_cert = (!raw.is_empty()).then(|| PathBuf::from(raw));
            Ok(())
        },
    ),
    (
        "COMMUCAT_REALITY_FINGERPRINT",
        "transport.reality_fingerprint",
        |c, _, raw| {
            let raw = raw.trim();
            c.transport.reality_fingerprint = (!raw.is_empty()).then(|| raw.to_ascii_lowercase());
            Ok(())
        },
    ),
    ("COMMUCAT_PQ_HYBRID", "crypto.pq_hybrid", |c, n, r| {
        c.crypto.pq_hybrid = boolean(n, r)?;
        Ok(())
    }),
    ("COMMUCAT_ADAPTIVE_OBF", "crypto.adaptive_obf", |c, n, r| {
        c.crypto.adaptive_obf = boolean(n, r)?;
        Ok(())
    }),
    (
        "COMMUCAT_OBF_MAX_PADDING",
        "crypto.obf_max_padding",
        |c, n, r| {
            c.crypto.obf_max_padding = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_PQ_RATCHET_MESSAGES",
        "crypto.pq_ratchet_messages",
        |c, n, r| {
            c.crypto.pq_ratchet_messages = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_PQ_RATCHET_INTERVAL",
        "crypto.pq_ratchet_interval",
        |c, n, r| {
            c.crypto.pq_ratchet_interval = secs(n, r)?;
            Ok(())
        },
    ),
    ("COMMUCAT_LEDGER", "ledger.sink", |c, n, r| {
        c.ledger.sink = LedgerSink::parse(n, r)?;
        Ok(())
    }),
    ("COMMUCAT_LEDGER_PATH", "ledger.path", |c, _, raw| {
        c.ledger.path = Some(PathBuf::from(raw));
        Ok(())
    }),
    (
        "COMMUCAT_AUTO_APPROVE_DEVICES",
        "devices.auto_approve",
        |c, n, r| {
            c.devices.auto_approve = boolean(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_MAX_AUTO_DEVICES_PER_USER",
        "devices.max_auto_devices_per_user",
        |c, n, r| {
            c.devices.max_auto_devices_per_user = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_DEVICE_ROTATION",
        "devices.rotation_enabled",
        |c, n, r| {
            c.devices.rotation_enabled = boolean(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_DEVICE_ROTATION_MIN_INTERVAL",
        "devices.rotation_min_interval",
        |c, n, r| {
            c.devices.rotation_min_interval = secs(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_DEVICE_ROTATION_PROOF_TTL",
        "devices.rotation_proof_ttl",
        |c, n, r| {
            c.devices.rotation_proof_ttl = secs(n, r)?;
            Ok(())
        },
    ),
    ("COMMUCAT_PAIRING_TTL", "devices.pairing_ttl", |c, n, r| {
        c.devices.pairing_ttl = secs(n, r)?;
        Ok(())
    }),
    (
        "COMMUCAT_CERT_VALIDITY",
        "devices.certificate_validity",
        |c, n, r| {
            c.devices.certificate_validity = secs(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_CERT_RENEWAL_MARGIN",
        "devices.renewal_margin",
        |c, n, r| {
            c.devices.renewal_margin = secs(n, r)?;
            Ok(())
        },
    ),
    ("COMMUCAT_SESSION_TTL", "session.ttl", |c, n, r| {
        c.session.ttl = secs(n, r)?;
        Ok(())
    }),
    (
        "COMMUCAT_HANDSHAKE_TIMEOUT",
        "session.handshake_timeout",
        |c, n, r| {
            c.session.handshake_timeout = secs(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_CONNECTION_KEEPALIVE",
        "session.keepalive",
        |c, n, r| {
            c.session.keepalive = secs(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_PRESENCE_TTL",
        "session.presence_ttl",
        |c, n, r| {
            c.session.presence_ttl = secs(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_MAX_FRAME_LEN",
        "limits.max_frame_len",
        |c, n, r| {
            c.limits.max_frame_len = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_MAX_CONNECTIONS",
        "limits.max_connections",
        |c, n, r| {
            c.limits.max_connections = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_TLS_HANDSHAKE_TIMEOUT",
        "limits.tls_handshake_timeout",
        |c, n, r| {
            c.limits.tls_handshake_timeout = secs(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_MAILBOX_CAPACITY",
        "limits.mailbox_capacity",
        |c, n, r| {
            c.limits.mailbox_capacity = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_RATE_LIMIT_REST",
        "rate_limits.rest_per_minute",
        |c, n, r| {
            c.rate_limits.rest_per_minute = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_RATE_LIMIT_CLAIM",
        "rate_limits.claim_per_minute",
        |c, n, r| {
            c.rate_limits.claim_per_minute = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_RATE_LIMIT_CONNECT",
        "rate_limits.connect_per_minute",
        |c, n, r| {
            c.rate_limits.connect_per_minute = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_METRICS_TOKEN",
        "metrics.admin_token",
        |c, _, raw| {
            c.metrics.admin_token = Some(super::SecretString(raw.trim().to_owned()));
            Ok(())
        },
    ),
    ("COMMUCAT_OFFLINE_TTL", "offline.ttl", |c, n, r| {
        c.offline.ttl = secs(n, r)?;
        Ok(())
    }),
    (
        "COMMUCAT_OFFLINE_MAX_PER_DEVICE",
        "offline.max_per_device",
        |c, n, r| {
            c.offline.max_per_device = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_DEDUP_WINDOW",
        "offline.dedup_window",
        |c, n, r| {
            c.offline.dedup_window = secs(n, r)?;
            Ok(())
        },
    ),
    ("COMMUCAT_REDIS_URL", "presence.redis_url", |c, _, raw| {
        c.presence.redis_url = Some(raw.trim().to_owned());
        Ok(())
    }),
    (
        "COMMUCAT_REDIS_KEY_PREFIX",
        "presence.key_prefix",
        |c, _, raw| {
            raw.clone_into(&mut c.presence.key_prefix);
            Ok(())
        },
    ),
    ("COMMUCAT_NODE_ID", "presence.node_id", |c, _, raw| {
        c.presence.node_id = Some(raw.trim().to_owned());
        Ok(())
    }),
    ("COMMUCAT_STORE_URL", "store.url", |c, _, raw| {
        c.store.url = Some(raw.trim().to_owned());
        Ok(())
    }),
    (
        "COMMUCAT_STORE_MAX_CONNECTIONS",
        "store.max_connections",
        |c, n, r| {
            c.store.max_connections = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_STORE_ACQUIRE_TIMEOUT",
        "store.acquire_timeout",
        |c, n, r| {
            c.store.acquire_timeout = secs(n, r)?;
            Ok(())
        },
    ),
    ("COMMUCAT_STORE_SCHEMA", "store.schema", |c, _, raw| {
        c.store.schema = Some(raw.trim().to_owned());
        Ok(())
    }),
    (
        "COMMUCAT_STORE_GROUP_COMMIT_MAX_BATCH",
        "store.group_commit_max_batch",
        |c, n, r| {
            c.store.group_commit_max_batch = integer(n, r)?;
            Ok(())
        },
    ),
    (
        "COMMUCAT_STORE_GROUP_COMMIT_LINGER_US",
        "store.group_commit_linger_us",
        |c, n, r| {
            c.store.group_commit_linger = Duration::from_micros(integer(n, r)?);
            Ok(())
        },
    ),
];

const TLS_CERT: &str = "COMMUCAT_TLS_CERT";
const TLS_KEY: &str = "COMMUCAT_TLS_KEY";

/// Applies the recognised `COMMUCAT_*` variables of `env`; returns the unrecognised ones.
///
/// An empty value counts as unset.
pub(super) fn apply<I>(
    config: &mut Config,
    origins: &mut Origins,
    env: I,
) -> Result<Vec<String>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, value)| name.starts_with(ENV_PREFIX) && !value.trim().is_empty())
        .collect();
    vars.sort();
    let lookup = |wanted: &str| {
        vars.iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };

    for &(name, file_key, setter) in SETTINGS {
        if let Some(raw) = lookup(name) {
            setter(config, name, raw)?;
            origins.set(file_key, name);
        }
    }
    for &(name, file_key) in super::bounds::ENV {
        if let Some(raw) = lookup(name) {
            if let Some(applied) = super::bounds::apply_env(&mut config.bounds, name, raw) {
                applied?;
            }
            origins.set(file_key, name);
        }
    }
    apply_tls(config, lookup(TLS_CERT), lookup(TLS_KEY))?;

    Ok(vars
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.as_str() != TLS_CERT
                && name.as_str() != TLS_KEY
                && !SETTINGS.iter().any(|(known, _, _)| known == name)
                && !super::bounds::ENV.iter().any(|(known, _)| known == name)
        })
        .cloned()
        .collect())
}

fn apply_tls(
    config: &mut Config,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<(), ConfigError> {
    let current = config.tls.files.take();
    config.tls.files = match (cert, key, current) {
        (None, None, current) => current,
        (Some(cert), Some(key), _) => Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (Some(cert), None, Some(file)) => Some(TlsFiles {
            cert: cert.into(),
            key: file.key,
        }),
        (None, Some(key), Some(file)) => Some(TlsFiles {
            cert: file.cert,
            key: key.into(),
        }),
        (Some(_), None, None) => {
            return Err(ConfigError::invalid(
                TLS_CERT,
                "set without COMMUCAT_TLS_KEY or tls.key",
            ));
        }
        (None, Some(_), None) => {
            return Err(ConfigError::invalid(
                TLS_KEY,
                "set without COMMUCAT_TLS_CERT or tls.cert",
            ));
        }
    };
    Ok(())
}

fn integer<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::invalid(name, format!("invalid non-negative integer {raw:?}")))
}

fn secs(name: &str, raw: &str) -> Result<Duration, ConfigError> {
    raw.trim().parse().map(Duration::from_secs).map_err(|_| {
        ConfigError::invalid(name, format!("invalid duration {raw:?} (whole seconds)"))
    })
}

fn boolean(name: &str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(
            name,
            format!("invalid boolean {raw:?} (true/false, 1/0, yes/no, on/off)"),
        )),
    }
}
