use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let path = Path::new("/etc/commucat/commucat.toml");
    Config::load_from_str(file.map(|text| (path, text)), env(vars))
}

fn error(file: Option<&str>, vars: &[(&str, &str)]) -> String {
    load(file, vars).unwrap_err().to_string()
}

#[test]
fn defaults_without_file_or_env() {
    let loaded = load(None, &[]).unwrap();
    let c = loaded.config;
    assert_eq!(c, Config::default());
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(c.server.domain, "localhost");
    assert_eq!(c.server.data_dir, PathBuf::from("./commucat-data"));
    assert_eq!(c.tls.files, None);
    assert_eq!(c.crypto.prologue, "commucat");
    assert!(c.crypto.pq_hybrid, "pq-hybrid is accepted by default");
    assert!(c.crypto.adaptive_obf, "adaptive-obf is accepted by default");
    assert_eq!(c.crypto.obf_max_padding, 64);
    assert!(c.devices.auto_approve);
    assert_eq!(c.devices.max_auto_devices_per_user, 5);
    assert_eq!(c.devices.pairing_ttl, Duration::from_secs(300));
    assert_eq!(
        c.devices.certificate_validity,
        Duration::from_secs(2_592_000)
    );
    assert_eq!(c.devices.renewal_margin, Duration::from_secs(604_800));
    assert!(c.devices.rotation_enabled);
    assert_eq!(c.devices.rotation_min_interval, Duration::from_secs(3600));
    assert_eq!(c.devices.rotation_proof_ttl, Duration::from_secs(300));
    assert_eq!(c.session.ttl, Duration::from_secs(3600));
    assert_eq!(c.session.keepalive, Duration::from_secs(30));
    assert_eq!(c.session.presence_ttl, Duration::from_secs(60));
    assert_eq!(c.limits.max_frame_len, 16 * 1024 * 1024);
    assert_eq!(c.limits.max_connections, 10_000);
    assert_eq!(c.limits.mailbox_capacity, 1024);
    assert_eq!(c.offline.ttl, Duration::from_secs(604_800));
    assert_eq!(c.offline.max_per_device, 10_000);
    assert_eq!(c.offline.dedup_window, Duration::from_secs(300));
    assert_eq!(c.presence.redis_url, None);
    assert_eq!(c.presence.key_prefix, "");
    assert!(loaded.unknown_env.is_empty());
    c.validate().unwrap();
}

const FULL: &str = r#"
[server]
listen = "0.0.0.0:9443"
domain = "chat.example.org"
data_dir = "state"
shutdown_grace = 5
drain_deadline = 12
http3 = true

[tls]
cert = "/etc/ssl/chat.pem"
key = "keys/chat.key"

[crypto]
prologue = "custom"
pq_hybrid = false
adaptive_obf = false
obf_max_padding = 16

[devices]
auto_approve = false
max_auto_devices_per_user = 2
pairing_ttl = 600
certificate_validity = 86400
renewal_margin = 3600
rotation_enabled = false
rotation_min_interval = 0
rotation_proof_ttl = 60

[session]
ttl = 7200
keepalive = 15
presence_ttl = 90

[limits]
max_frame_len = 65536
max_connections = 100
tls_handshake_timeout = 3
mailbox_capacity = 64

[offline]
ttl = 3600
max_per_device = 50
dedup_window = 30

[presence]
redis_url = "redis://cache.example.org:6379/2"
key_prefix = "chat:"
node_id = "eu-1"
"#;

#[test]
fn file_sets_every_section_and_resolves_relative_paths() {
    let c = load(Some(FULL), &[]).unwrap().config;
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9443");
    assert_eq!(c.server.domain, "chat.example.org");
    assert_eq!(c.server.data_dir, PathBuf::from("/etc/commucat/state"));
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.server.drain_deadline, Duration::from_secs(12));
    assert!(c.server.http3);
    assert!(!Config::default().server.http3, "HTTP/3 is opt-in");
    assert_eq!(
        c.tls.files,
        Some(TlsFiles {
            cert: PathBuf::from("/etc/ssl/chat.pem"),
            key: PathBuf::from("/etc/commucat/keys/chat.key"),
        })
    );
    assert_eq!(c.crypto.prologue, "custom");
    assert!(!c.crypto.pq_hybrid);
    assert!(!c.crypto.adaptive_obf);
    assert_eq!(c.crypto.obf_max_padding, 16);
    assert!(!c.devices.auto_approve);
    assert_eq!(c.devices.max_auto_devices_per_user, 2);
    assert_eq!(c.devices.pairing_ttl, Duration::from_secs(600));
    assert_eq!(c.devices.certificate_validity, Duration::from_secs(86400));
    assert_eq!(c.devices.renewal_margin, Duration::from_secs(3600));
    assert!(!c.devices.rotation_enabled);
    assert_eq!(c.devices.rotation_min_interval, Duration::ZERO);
    assert_eq!(c.devices.rotation_proof_ttl, Duration::from_secs(60));
    assert_eq!(c.session.ttl, Duration::from_secs(7200));
    assert_eq!(c.session.keepalive, Duration::from_secs(15));
    assert_eq!(c.session.presence_ttl, Duration::from_secs(90));
    assert_eq!(c.limits.max_frame_len, 65536);
    assert_eq!(c.limits.max_connections, 100);
    assert_eq!(c.limits.tls_handshake_timeout, Duration::from_secs(3));
    assert_eq!(c.limits.mailbox_capacity, 64);
    assert_eq!(c.offline.ttl, Duration::from_secs(3600));
    assert_eq!(c.offline.max_per_device, 50);
    assert_eq!(c.offline.dedup_window, Duration::from_secs(30));
    assert_eq!(
        c.presence.redis_url.as_deref(),
        Some("redis://cache.example.org:6379/2")
    );
    assert_eq!(c.presence.key_prefix, "chat:");
    assert_eq!(c.presence.node_id.as_deref(), Some("eu-1"));
}

#[test]
fn partial_file_keeps_other_defaults() {
    let c = load(Some("[session]\nttl = 10\n"), &[]).unwrap().config;
    assert_eq!(c.session.ttl, Duration::from_secs(10));
    let expected = Config {
        session: SessionSettings {
            ttl: Duration::from_secs(10),
            ..Config::default().session
        },
        ..Config::default()
    };
    assert_eq!(c, expected);
}

#[test]
fn env_overrides_file_which_overrides_defaults() {
    let file =
        "[server]\nlisten = \"127.0.0.1:1000\"\ndomain = \"file.example\"\n[session]\nttl = 50\n";
    let c = load(
        Some(file),
        &[
            ("COMMUCAT_LISTEN", "[::1]:2000"),
            ("COMMUCAT_SESSION_TTL", "70"),
            ("COMMUCAT_AUTO_APPROVE_DEVICES", "off"),
            ("COMMUCAT_MAX_AUTO_DEVICES_PER_USER", "9"),
            ("COMMUCAT_NOISE_PROLOGUE", "env-prologue"),
            ("COMMUCAT_PRESENCE_TTL", "11"),
            ("COMMUCAT_CONNECTION_KEEPALIVE", "12"),
            ("COMMUCAT_CERT_RENEWAL_MARGIN", "13"),
            ("COMMUCAT_DEVICE_ROTATION", "off"),
            ("COMMUCAT_DEVICE_ROTATION_MIN_INTERVAL", "14"),
            ("COMMUCAT_DEVICE_ROTATION_PROOF_TTL", "45"),
            ("COMMUCAT_DATA_DIR", "rel/data"),
            ("COMMUCAT_MAILBOX_CAPACITY", "8"),
            ("COMMUCAT_OFFLINE_TTL", "120"),
            ("COMMUCAT_OFFLINE_MAX_PER_DEVICE", "5"),
            ("COMMUCAT_DEDUP_WINDOW", "9"),
            ("COMMUCAT_REDIS_URL", "rediss://env.example:6380"),
            ("COMMUCAT_REDIS_KEY_PREFIX", "env:"),
            ("COMMUCAT_NODE_ID", "node-b"),
            ("COMMUCAT_DRAIN_DEADLINE", "7"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.server.listen.to_string(), "[::1]:2000");
    assert_eq!(c.server.domain, "file.example", "file value kept");
    assert_eq!(c.session.ttl, Duration::from_secs(70));
    assert!(!c.devices.auto_approve);
    assert_eq!(c.devices.max_auto_devices_per_user, 9);
    assert_eq!(c.crypto.prologue, "env-prologue");
    assert_eq!(c.session.presence_ttl, Duration::from_secs(11));
    assert_eq!(c.session.keepalive, Duration::from_secs(12));
    assert_eq!(c.devices.renewal_margin, Duration::from_secs(13));
    assert!(!c.devices.rotation_enabled);
    assert_eq!(c.devices.rotation_min_interval, Duration::from_secs(14));
    assert_eq!(c.devices.rotation_proof_ttl, Duration::from_secs(45));
    assert_eq!(
        c.server.data_dir,
        PathBuf::from("rel/data"),
        "env paths stay relative to the working directory"
    );
    assert_eq!(c.limits.max_connections, 10_000, "default kept");
    assert_eq!(c.limits.mailbox_capacity, 8);
    assert_eq!(c.offline.ttl, Duration::from_secs(120));
    assert_eq!(c.offline.max_per_device, 5);
    assert_eq!(c.offline.dedup_window, Duration::from_secs(9));
    assert_eq!(
        c.presence.redis_url.as_deref(),
        Some("rediss://env.example:6380")
    );
    assert_eq!(c.presence.key_prefix, "env:");
    assert_eq!(c.presence.node_id.as_deref(), Some("node-b"));
    assert_eq!(c.server.drain_deadline, Duration::from_secs(7));
}

#[test]
fn env_tls_pair_overrides_file_and_may_replace_one_half() {
    let file = "[tls]\ncert = \"/a/cert.pem\"\nkey = \"/a/key.pem\"\n";
    let c = load(Some(file), &[("COMMUCAT_TLS_KEY", "/b/key.pem")])
        .unwrap()
        .config;
    let files = c.tls.files.unwrap();
    assert_eq!(files.cert, PathBuf::from("/a/cert.pem"));
    assert_eq!(files.key, PathBuf::from("/b/key.pem"));
    let c = load(
        None,
        &[
            ("COMMUCAT_TLS_CERT", "c.pem"),
            ("COMMUCAT_TLS_KEY", "k.pem"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.tls.files.unwrap().cert, PathBuf::from("c.pem"));
    assert_eq!(
        error(None, &[("COMMUCAT_TLS_CERT", "c.pem")]),
        "COMMUCAT_TLS_CERT: set without COMMUCAT_TLS_KEY or tls.key"
    );
    assert_eq!(
        error(Some("[tls]\nkey = \"k.pem\"\n"), &[]),
        "tls.key: set without tls.cert"
    );
}

#[test]
fn unknown_env_vars_are_reported_and_empty_values_ignored() {
    let loaded = load(
        None,
        &[
            ("COMMUCAT_TEST_POSTGRES", "postgres://x"),
            ("COMMUCAT_LISTNE", "1.2.3.4:5"),
            ("COMMUCAT_LISTEN", ""),
            ("PATH", "/bin"),
        ],
    )
    .unwrap();
    assert_eq!(
        loaded.unknown_env,
        vec![
            "COMMUCAT_LISTNE".to_owned(),
            "COMMUCAT_TEST_POSTGRES".to_owned()
        ]
    );
    assert_eq!(loaded.config.server.listen, Config::default().server.listen);
}

#[test]
fn invalid_values_name_the_file_key() {
    assert_eq!(
        error(Some("[server]\nlisten = \"x\"\n"), &[]),
        "server.listen: invalid socket address \"x\""
    );
    assert_eq!(
        error(Some("[server]\ndomain = \"bad domain\"\n"), &[]),
        "server.domain: invalid domain name \"bad domain\""
    );
    assert_eq!(
        error(Some("[limits]\nmax_frame_len = 16777217\n"), &[]),
        "limits.max_frame_len: must be between 4096 and 16777216 bytes (16 MiB), got 16777217"
    );
    assert_eq!(
        error(Some("[crypto]\nobf_max_padding = 65\n"), &[]),
        "crypto.obf_max_padding: must be at most 64 bytes"
    );
    assert_eq!(
        error(Some("[server]\ndrain_deadline = 0\n"), &[]),
        "server.drain_deadline: must be between 1 and 3600 seconds, got 0"
    );
    assert_eq!(
        error(Some("[session]\nttl = 0\n"), &[]),
        "session.ttl: must be between 1 and 31536000 seconds, got 0"
    );
    assert_eq!(
        error(Some("[devices]\npairing_ttl = 10\n"), &[]),
        "devices.pairing_ttl: must be between 60 and 3600 seconds, got 10"
    );
    assert_eq!(
        error(
            Some("[devices]\ncertificate_validity = 7200\nrenewal_margin = 7200\n"),
            &[]
        ),
        "devices.renewal_margin: must be shorter than devices.certificate_validity (7200 s)"
    );
    assert_eq!(
        error(Some("[devices]\nrotation_proof_ttl = 5\n"), &[]),
        "devices.rotation_proof_ttl: must be between 30 and 3600 seconds, got 5"
    );
    assert_eq!(
        error(Some("[limits]\nmax_connections = 0\n"), &[]),
        "limits.max_connections: must be between 1 and 1000000, got 0"
    );
    assert_eq!(
        error(Some("[limits]\nmailbox_capacity = 0\n"), &[]),
        "limits.mailbox_capacity: must be between 1 and 1000000, got 0"
    );
    assert_eq!(
        error(Some("[offline]\nttl = 0\n"), &[]),
        "offline.ttl: must be between 1 and 31536000 seconds, got 0"
    );
    assert_eq!(
        error(Some("[offline]\nmax_per_device = 0\n"), &[]),
        "offline.max_per_device: must be between 1 and 10000000, got 0"
    );
    assert_eq!(
        error(Some("[offline]\ndedup_window = 0\n"), &[]),
        "offline.dedup_window: must be between 1 and 604800 seconds, got 0"
    );
    assert_eq!(
        error(Some("[presence]\nredis_url = \"http://cache:6379\"\n"), &[]),
        "presence.redis_url: must start with redis:// or rediss://, got \"http://cache:6379\""
    );
}

#[test]
fn invalid_values_name_the_env_var() {
    assert_eq!(
        error(None, &[("COMMUCAT_LISTEN", "x")]),
        "COMMUCAT_LISTEN: invalid socket address \"x\""
    );
    assert_eq!(
        error(None, &[("COMMUCAT_OBF_MAX_PADDING", "65")]),
        "COMMUCAT_OBF_MAX_PADDING: must be at most 64 bytes"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_ADAPTIVE_OBF", "maybe")]),
        "COMMUCAT_ADAPTIVE_OBF: invalid boolean \"maybe\" (true/false, 1/0, yes/no, on/off)"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_SESSION_TTL", "1h")]),
        "COMMUCAT_SESSION_TTL: invalid duration \"1h\" (whole seconds)"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_SESSION_TTL", "0")]),
        "COMMUCAT_SESSION_TTL: must be between 1 and 31536000 seconds, got 0"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_AUTO_APPROVE_DEVICES", "maybe")]),
        "COMMUCAT_AUTO_APPROVE_DEVICES: invalid boolean \"maybe\" (true/false, 1/0, yes/no, on/off)"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_MAX_AUTO_DEVICES_PER_USER", "-1")]),
        "COMMUCAT_MAX_AUTO_DEVICES_PER_USER: invalid non-negative integer \"-1\""
    );
    assert_eq!(
        error(None, &[("COMMUCAT_DOMAIN", "exa mple")]),
        "COMMUCAT_DOMAIN: invalid domain name \"exa mple\""
    );
    assert_eq!(
        error(None, &[("COMMUCAT_MAX_FRAME_LEN", "100000000")]),
        "COMMUCAT_MAX_FRAME_LEN: must be between 4096 and 16777216 bytes (16 MiB), got 100000000"
    );
    // The file's valid value is overridden by an invalid env value: the env var is named.
    assert_eq!(
        error(
            Some("[session]\npresence_ttl = 5\n"),
            &[("COMMUCAT_PRESENCE_TTL", "0")]
        ),
        "COMMUCAT_PRESENCE_TTL: must be between 1 and 31536000 seconds, got 0"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_OFFLINE_MAX_PER_DEVICE", "lots")]),
        "COMMUCAT_OFFLINE_MAX_PER_DEVICE: invalid non-negative integer \"lots\""
    );
    assert_eq!(
        error(None, &[("COMMUCAT_MAILBOX_CAPACITY", "0")]),
        "COMMUCAT_MAILBOX_CAPACITY: must be between 1 and 1000000, got 0"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_DEDUP_WINDOW", "604801")]),
        "COMMUCAT_DEDUP_WINDOW: must be between 1 and 604800 seconds, got 604801"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_REDIS_URL", "cache:6379")]),
        "COMMUCAT_REDIS_URL: must start with redis:// or rediss://, got \"cache:6379\""
    );
    assert_eq!(
        error(
            Some("[presence]\nredis_url = \"redis://ok:6379\"\n"),
            &[("COMMUCAT_REDIS_URL", "tcp://user:secret@cache:6379")]
        ),
        "COMMUCAT_REDIS_URL: must start with redis:// or rediss://, got \"tcp://user:***@cache:6379\"",
        "the password is not echoed"
    );
}

#[test]
fn unknown_and_mistyped_file_keys_are_rejected() {
    let message = error(Some("[server]\nlisten = \"127.0.0.1:1\"\nport = 4\n"), &[]);
    assert!(
        message.starts_with("config file /etc/commucat/commucat.toml:"),
        "{message}"
    );
    assert!(message.contains("unknown field `port`"), "{message}");
    let message = error(Some("[bogus]\nx = 1\n"), &[]);
    assert!(message.contains("unknown field `bogus`"), "{message}");
    let message = error(Some("[session]\nttl = \"1h\"\n"), &[]);
    assert!(message.contains("ttl"), "{message}");
    assert!(message.contains("invalid type"), "{message}");
    let message = error(Some("[session]\nttl = -5\n"), &[]);
    assert!(message.contains("ttl"), "{message}");
    let message = error(Some("not toml ["), &[]);
    assert!(message.starts_with("config file "), "{message}");
}

#[test]
fn load_reads_the_file_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[server]\ndomain = \"example.net\"\ndata_dir = \"d\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap().config;
    assert_eq!(c.server.domain, "example.net");
    assert_eq!(c.server.data_dir, dir.path().join("d"));
    let missing = dir.path().join("missing.toml");
    let message = Config::load(Some(&missing), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!("reading config file {}:", missing.display())),
        "{message}"
    );
}

#[test]
fn validate_rejects_hand_made_invalid_configs() {
    let mut c = Config::default();
    c.limits.max_frame_len = MAX_FRAME_LEN_CEILING + 1;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .starts_with("limits.max_frame_len:")
    );
    let mut c = Config::default();
    c.server.domain = String::new();
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "server.domain: invalid domain name \"\""
    );
    let mut c = Config::default();
    c.presence.redis_url = Some("localhost:6379".to_owned());
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .starts_with("presence.redis_url: must start with redis://")
    );
}

#[test]
fn redis_passwords_are_hidden_in_messages() {
    assert_eq!(
        super::redact_url("redis://:pw@host:6379/0"),
        "redis://:***@host:6379/0"
    );
    assert_eq!(
        super::redact_url("rediss://user:pw@host"),
        "rediss://user:***@host"
    );
    assert_eq!(
        super::redact_url("redis://user@host/1"),
        "redis://user@host/1"
    );
    assert_eq!(super::redact_url("redis://host:1"), "redis://host:1");
}

#[test]
fn rate_limits_and_admin_token_from_file_and_env() {
    let defaults = Config::default();
    assert_eq!(defaults.rate_limits.rest_per_minute, 600);
    assert_eq!(defaults.rate_limits.claim_per_minute, 10);
    assert_eq!(defaults.rate_limits.connect_per_minute, 120);
    assert_eq!(defaults.metrics.admin_token, None);

    let file = "[rate_limits]\nrest_per_minute = 0\nclaim_per_minute = 3\n\
                [metrics]\nadmin_token = \"file-token-0123456789\"\n";
    let c = load(Some(file), &[("COMMUCAT_RATE_LIMIT_CONNECT", "7")])
        .unwrap()
        .config;
    assert_eq!(c.rate_limits.rest_per_minute, 0, "0 turns the limit off");
    assert_eq!(c.rate_limits.claim_per_minute, 3);
    assert_eq!(c.rate_limits.connect_per_minute, 7);
    assert_eq!(
        c.metrics.admin_token,
        Some(super::SecretString("file-token-0123456789".to_owned()))
    );
    assert!(
        !format!("{c:?}").contains("file-token"),
        "Debug never prints the token"
    );
    let c = load(
        Some(file),
        &[
            ("COMMUCAT_METRICS_TOKEN", "env-token-0123456789"),
            ("COMMUCAT_RATE_LIMIT_REST", "5"),
            ("COMMUCAT_RATE_LIMIT_CLAIM", "1"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(
        c.metrics.admin_token,
        Some(super::SecretString("env-token-0123456789".to_owned()))
    );
    assert_eq!(c.rate_limits.rest_per_minute, 5);
    assert_eq!(c.rate_limits.claim_per_minute, 1);

    let short = load(None, &[("COMMUCAT_METRICS_TOKEN", "short")]).unwrap_err();
    assert!(
        short.to_string().starts_with("COMMUCAT_METRICS_TOKEN: "),
        "{short}"
    );
    let spaced = load(
        Some("[metrics]\nadmin_token = \"has spaces in the token\"\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        spaced.to_string().starts_with("metrics.admin_token: "),
        "{spaced}"
    );
    let huge = load(Some("[rate_limits]\nrest_per_minute = 2000000\n"), &[]).unwrap_err();
    assert!(
        huge.to_string()
            .starts_with("rate_limits.rest_per_minute: "),
        "{huge}"
    );
    assert!(load(Some("[rate_limits]\nburst = 1\n"), &[]).is_err());
    assert!(load(None, &[("COMMUCAT_RATE_LIMIT_REST", "-1")]).is_err());
}

#[test]
fn store_section_selects_postgres_from_file_or_env() {
    let c = load(None, &[]).unwrap().config;
    assert_eq!(c.store.url, None, "SQLite in the data directory by default");
    assert_eq!(c.store.max_connections, 10);
    assert_eq!(c.store.acquire_timeout, Duration::from_secs(3));
    assert_eq!(c.store.schema, None);

    let file = "[store]\nurl = \"postgres://chat:pw@db.example:5432/chat\"\nmax_connections = 20\nacquire_timeout = 2\nschema = \"commucat\"\n";
    let c = load(Some(file), &[]).unwrap().config;
    assert_eq!(
        c.store.url.as_deref(),
        Some("postgres://chat:pw@db.example:5432/chat")
    );
    assert_eq!(c.store.max_connections, 20);
    assert_eq!(c.store.acquire_timeout, Duration::from_secs(2));
    assert_eq!(c.store.schema.as_deref(), Some("commucat"));
    let pool = c.store.postgres();
    assert_eq!(
        (
            pool.max_connections,
            pool.acquire_timeout,
            pool.schema.as_deref()
        ),
        (20, Duration::from_secs(2), Some("commucat"))
    );

    let c = load(
        Some(file),
        &[
            ("COMMUCAT_STORE_URL", "postgresql://db.internal/chat"),
            ("COMMUCAT_STORE_MAX_CONNECTIONS", "4"),
            ("COMMUCAT_STORE_ACQUIRE_TIMEOUT", "1"),
            ("COMMUCAT_STORE_SCHEMA", "tenant_b"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(
        c.store.url.as_deref(),
        Some("postgresql://db.internal/chat")
    );
    assert_eq!(c.store.max_connections, 4);
    assert_eq!(c.store.acquire_timeout, Duration::from_secs(1));
    assert_eq!(c.store.schema.as_deref(), Some("tenant_b"));
    assert!(super::is_postgres_url("postgres://x"));
    assert!(!super::is_postgres_url("sqlite://x.db"));
}

#[test]
fn invalid_store_settings_name_the_key() {
    assert_eq!(
        error(Some("[store]\nurl = \"mysql://root:pw@db/chat\"\n"), &[]),
        "store.url: must start with postgres:// or postgresql:// (unset keeps the embedded SQLite store), got \"mysql://root:***@db/chat\""
    );
    assert_eq!(
        error(None, &[("COMMUCAT_STORE_URL", "db:5432")]),
        "COMMUCAT_STORE_URL: must start with postgres:// or postgresql:// (unset keeps the embedded SQLite store), got \"db:5432\""
    );
    assert_eq!(
        error(Some("[store]\nmax_connections = 0\n"), &[]),
        "store.max_connections: must be between 1 and 1000, got 0"
    );
    assert_eq!(
        error(None, &[("COMMUCAT_STORE_ACQUIRE_TIMEOUT", "0")]),
        "COMMUCAT_STORE_ACQUIRE_TIMEOUT: must be between 1 and 60 seconds, got 0"
    );
    assert_eq!(
        error(Some("[store]\nschema = \"chat\"\n"), &[]),
        "store.schema: applies to PostgreSQL only; set store.url too"
    );
    assert!(
        error(
            Some("[store]\nurl = \"postgres://db/chat\"\nschema = \"Bad-Name\"\n"),
            &[]
        )
        .starts_with("store.schema: must be 1..=63 characters of [a-z0-9_]")
    );
}

#[test]
fn node_ids_are_checked() {
    assert_eq!(
        error(None, &[("COMMUCAT_NODE_ID", "two words")]),
        "COMMUCAT_NODE_ID: must be 1..=128 characters of [A-Za-z0-9-_.:], got \"two words\""
    );
    assert_eq!(load(None, &[]).unwrap().config.presence.node_id, None);
}
