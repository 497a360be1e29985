//! `commucat init`: writes a commented configuration file that `serve --config` loads as is.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use commucat_server::Config;

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Where to write the configuration.
    #[arg(long, value_name = "FILE", default_value = "commucat.toml")]
    pub(crate) output: PathBuf,
    /// Public domain of the server (bound into every device proof; clients must use the same).
    #[arg(long, default_value = "localhost")]
    pub(crate) domain: String,
    /// Socket address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub(crate) listen: SocketAddr,
    /// Data directory (keys, certificate, database, ledger); relative paths are relative to
    /// the configuration file.
    #[arg(long, value_name = "DIR", default_value = "commucat-data")]
    pub(crate) data_dir: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub(crate) force: bool,
}

/// Runs `init`.
pub(crate) fn run(args: &InitArgs) -> Result<()> {
    let mut config = Config::default();
    config.server.domain.clone_from(&args.domain);
    config.server.listen = args.listen;
    config.server.data_dir.clone_from(&args.data_dir);
    config
        .validate()
        .context("the settings given to init are invalid")?;
    let text = render(&config, &args.data_dir);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(&args.output) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} exists; pass --force to replace it",
            args.output.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("creating {}", args.output.display())),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {}; start the server with: commucat serve --config {}",
        args.output.display(),
        args.output.display()
    );
    Ok(())
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

fn path_string(path: &Path) -> String {
    toml_string(&path.to_string_lossy())
}

/// The configuration file for `config`, every setting with its meaning.
#[allow(clippy::too_many_lines)]
pub(crate) fn render(config: &Config, data_dir: &Path) -> String {
    let s = &config.server;
    let c = &config.crypto;
    let d = &config.devices;
    let se = &config.session;
    let l = &config.limits;
    let o = &config.offline;
    let p = &config.presence;
    let g = &config.ledger;
    format!(
        r#"# CommuCat server configuration, written by `commucat init`.
# Every setting may be overridden by a COMMUCAT_* environment variable (docs/operations.md).
# Durations are whole seconds. Relative paths are relative to this file.

[server]
# Socket address to listen on (TLS 1.3; HTTP/2 and HTTP/1.1 on one port).
listen = {listen}
# Public domain of this server. It is bound into every device's handshake proof, so clients
# must use the same name; changing it later locks existing clients out.
domain = {domain}
# Keys, the development certificate, the database and the ledger live here (created 0700).
data_dir = {data_dir}
# How long shutdown waits for open connections to finish.
shutdown_grace = {shutdown_grace}
# Also serve HTTP/3 (QUIC) on UDP at the same port, advertised by Alt-Svc (open UDP too).
http3 = {http3}

[tls]
# An operator certificate chain and key (PEM). Without them a development certificate is
# generated in data_dir; clients then trust it by file or pin its SHA-256 fingerprint.
# cert = "/etc/commucat/fullchain.pem"
# key = "/etc/commucat/privkey.pem"

[crypto]
# Noise prologue; must match the clients'.
prologue = {prologue}
# How long a Noise static key stays accepted after `commucat keys rotate` replaced it.
# Unset (the default): until `commucat keys retire` retires it, because deployed clients pin
# the key they saw at init.
# noise_key_grace = 2592000

[devices]
# Register unknown devices on their first handshake; false requires a pairing code.
auto_approve = {auto_approve}
# Devices one account may gain by auto-approval (0 = unlimited).
max_auto_devices_per_user = {max_auto}
# Lifetime of a pairing code (60..=3600).
pairing_ttl = {pairing_ttl}
# Validity of an issued device certificate.
certificate_validity = {cert_validity}
# Re-issue a presented certificate when less than this is left.
renewal_margin = {renewal_margin}

[session]
# Lifetime of a session token (the REST bearer), refreshed while connected.
ttl = {session_ttl}
# Keepalive interval announced to clients.
keepalive = {keepalive}
# How long a presence entry lives without refresh.
presence_ttl = {presence_ttl}
# Time a client gets to finish the device handshake.
handshake_timeout = {handshake_timeout}

[limits]
# Largest CCP-1 frame accepted, bytes (4096..=16777216).
max_frame_len = {max_frame_len}
# Connections served at once; further ones wait in the backlog.
max_connections = {max_connections}
# Time a client gets to complete the TLS handshake.
tls_handshake_timeout = {tls_timeout}
# Frames that may wait for one session before it counts as a slow consumer.
mailbox_capacity = {mailbox}

[offline]
# How long a queued frame waits for its recipient.
ttl = {offline_ttl}
# Frames one device may have queued; further ones are refused with an ERROR to the sender.
max_per_device = {max_per_device}
# How long a relayed frame's idempotency key is remembered.
dedup_window = {dedup_window}

[presence]
# Redis holding the presence registry (redis:// or rediss://); unset keeps it in-process.
# redis_url = "redis://127.0.0.1:6379"
# Prefix of every Redis key, so several deployments can share one Redis.
key_prefix = {key_prefix}

[ledger]
# Where audit records go: "file", "stdout" or "off".
sink = {sink}
# The ledger file; unset: data_dir/ledger.jsonl.
# path = "/var/log/commucat/ledger.jsonl"
# Records that may wait for the writer; when full, new records are dropped and counted.
queue = {queue}
# fdatasync after every batch (survives power loss) instead of only handing it to the OS.
fsync = {fsync}

[log]
# Log lines on standard error: "text", or "json" (one object per line) for log shippers.
# RUST_LOG sets the filter (default info).
format = {log_format}
"#,
        listen = toml_string(&s.listen.to_string()),
        domain = toml_string(&s.domain),
        data_dir = path_string(data_dir),
        shutdown_grace = s.shutdown_grace.as_secs(),
        http3 = s.http3,
        prologue = toml_string(&c.prologue),
        auto_approve = d.auto_approve,
        max_auto = d.max_auto_devices_per_user,
        pairing_ttl = d.pairing_ttl.as_secs(),
        cert_validity = d.certificate_validity.as_secs(),
        renewal_margin = d.renewal_margin.as_secs(),
        session_ttl = se.ttl.as_secs(),
        keepalive = se.keepalive.as_secs(),
        presence_ttl = se.presence_ttl.as_secs(),
        handshake_timeout = se.handshake_timeout.as_secs(),
        max_frame_len = l.max_frame_len,
        max_connections = l.max_connections,
        tls_timeout = l.tls_handshake_timeout.as_secs(),
        mailbox = l.mailbox_capacity,
        offline_ttl = o.ttl.as_secs(),
        max_per_device = o.max_per_device,
        dedup_window = o.dedup_window.as_secs(),
        key_prefix = toml_string(&p.key_prefix),
        sink = toml_string(match g.sink {
            commucat_server::config::LedgerSink::Off => "off",
            commucat_server::config::LedgerSink::Stdout => "stdout",
            commucat_server::config::LedgerSink::File => "file",
        }),
        queue = g.queue,
        fsync = g.fsync,
        log_format = toml_string(match config.log.format {
            commucat_server::config::LogFormat::Text => "text",
            commucat_server::config::LogFormat::Json => "json",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_file_loads_to_the_same_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.domain = "chat.example.org".to_owned();
        let text = render(&config, Path::new("state"));
        let path = dir.path().join("commucat.toml");
        let loaded = Config::load_from_str(Some((&path, &text)), Vec::new()).unwrap();
        config.server.data_dir = dir.path().join("state");
        assert_eq!(loaded.config, config);
    }
}
