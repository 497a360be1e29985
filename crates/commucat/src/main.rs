//! The `commucat` command.

mod chat;
mod context;
mod devices;
mod doctor;
mod federation;
mod federation_peers;
mod init;
mod keys;
mod migrate;
mod pair;
mod users;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use commucat_ccp::{FrameDecoder, PayloadKind};
use commucat_server::config::ENV_PREFIX;
use commucat_server::listener::signal::shutdown_signal;
use commucat_server::reload::reload_on_hangup;
use commucat_server::{Config, Server};

/// CommuCat: secure messaging and calling relay server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
enum Command {
    /// Run the relay server (TLS 1.3; HTTP/2 and HTTP/1.1 on one port).
    ///
    /// Works with no configuration: keys and a dev TLS certificate are generated into the data
    /// directory on first run and reused afterwards. Settings come from the TOML file, then
    /// `COMMUCAT_*` environment variables, then these flags (each overriding the one before).
    Serve {
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory (keys, dev certificate); default ./commucat-data.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write a commented configuration file that `serve --config` loads as is.
    Init(init::InitArgs),
    /// Apply the store's pending schema migrations and list the applied ones.
    ///
    /// `serve` migrates on start too; run this to upgrade ahead of a restart.
    Migrate {
        #[command(flatten)]
        config: context::ConfigArgs,
    },
    /// Manage accounts (on the store the configuration points at).
    User {
        #[command(flatten)]
        config: context::ConfigArgs,
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// List or revoke an account's devices.
    Device {
        #[command(flatten)]
        config: context::ConfigArgs,
        #[command(subcommand)]
        command: devices::DeviceCommand,
    },
    /// Manage the Noise static keys clients pin (list, rotate, retire).
    Keys {
        #[command(flatten)]
        config: context::ConfigArgs,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Federation with peer domains: this domain's key, the peers, the outbox.
    Federation {
        #[command(flatten)]
        config: context::ConfigArgs,
        #[command(subcommand)]
        command: federation::FederationCommand,
    },
    /// Issue a pairing code that adds a new device to an account.
    Pair {
        #[command(flatten)]
        config: context::ConfigArgs,
        #[command(flatten)]
        args: pair::PairArgs,
    },
    /// Chat from the terminal: connect, join a channel, send standard input line by line and
    /// print what arrives.
    Chat(chat::ChatArgs),
    /// Decode CCP-1 frames and print one JSON object per frame.
    ///
    /// Reads the hex string given as argument, or raw bytes from standard input when none is
    /// given. Exits non-zero on malformed input, naming the diagnostic, or when the input ends
    /// inside a frame.
    Decode {
        /// Frames as hex (whitespace ignored).
        hex: Option<String>,
    },
    /// Check a configuration and its environment before serving: one line per check (ok, warn
    /// or FAIL, with a fix), non-zero exit if any failed.
    ///
    /// Checks that the configuration parses, the key and certificate files are readable and
    /// owner-only, the certificate names server.domain and is valid, the store is reachable and
    /// migrated, Redis answers (if configured), the listen address is free, the clock is sane
    /// and the open-file limit covers limits.max_connections. Changes nothing.
    Doctor {
        #[command(flatten)]
        config: context::ConfigArgs,
    },
    /// Load-test a CCP-1 server over the real protocol (loopback only); see docs/BENCHMARKS.md.
    Bench(commucat_bench::BenchArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the cause chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config, data_dir } => serve(config.as_deref(), data_dir),
        Command::Decode { hex } => decode(hex.as_deref()),
        Command::Init(args) => init::run(&args),
        Command::Migrate { config } => migrate::run(&config),
        Command::User { config, command } => users::run(&config, &command),
        Command::Device { config, command } => devices::run(&config, &command),
        Command::Keys { config, command } => keys::run(&config, &command),
        Command::Federation { config, command } => federation::run(&config, &command),
        Command::Pair { config, args } => pair::run(&config, &args),
        Command::Chat(args) => chat::run(&args),
        Command::Bench(args) => commucat_bench::run(args),
        Command::Doctor { config } => match doctor::run(&config)? {
            0 => Ok(()),
            1 => bail!("1 check failed"),
            n => bail!("{n} checks failed"),
        },
    }
}

fn serve(config_file: Option<&Path>, data_dir: Option<PathBuf>) -> Result<()> {
    let loaded = Config::load(config_file, settings_env()?)?;
    commucat_server::telemetry::init_tracing(loaded.config.log.format)?;
    for name in &loaded.unknown_env {
        tracing::warn!("ignoring {name}: not a CommuCat setting");
    }
    let mut config = loaded.config;
    if let Some(dir) = data_dir {
        config.server.data_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        #[allow(
            clippy::disallowed_methods,
            reason = "the SIGHUP listener holds nothing to drain; aborted once the server stopped"
        )]
        let reload = tokio::spawn(reload_on_hangup(server.key_reloader()));
        let served = server.run(shutdown_signal()).await;
        reload.abort();
        served
    })?;
    Ok(())
}

/// The process environment as strings; a `COMMUCAT_*` variable that is not UTF-8 is an error
/// rather than silently ignored.
fn settings_env() -> Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| anyhow!("{name}: value is not valid UTF-8"))?;
        vars.push((name.to_owned(), value));
    }
    Ok(vars)
}

fn decode(hex_input: Option<&str>) -> Result<()> {
    let bytes = match hex_input {
        Some(text) => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(compact).context("argument is not hex")?
        }
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            buf
        }
    };
    let mut decoder = FrameDecoder::new();
    decoder.extend(&bytes);
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => println!("{}", describe(&frame)),
            Ok(None) if decoder.buffered() == 0 => return Ok(()),
            Ok(None) => bail!(
                "input ends inside a frame ({} bytes left over)",
                decoder.buffered()
            ),
            Err(error) => bail!("{}: {error}", error.kind()),
        }
    }
}

fn describe(frame: &commucat_ccp::Frame) -> serde_json::Value {
    let payload = match frame.frame_type().payload_kind() {
        PayloadKind::Control => serde_json::from_slice(frame.payload())
            .unwrap_or_else(|_| serde_json::Value::String(hex::encode(frame.payload()))),
        PayloadKind::Opaque => serde_json::Value::String(hex::encode(frame.payload())),
    };
    serde_json::json!({
        "type": frame.frame_type().label(),
        "code": format!("0x{:02x}", frame.frame_type().code()),
        "channel": frame.channel_id(),
        "sequence": frame.sequence(),
        "payload_len": frame.payload().len(),
        "payload": payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use commucat_ccp::FrameType;

    #[test]
    fn serve_arguments_parse() {
        let cli = Cli::try_parse_from(["commucat", "serve"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Serve {
                config: None,
                data_dir: None
            }
        ));
        let cli = Cli::try_parse_from([
            "commucat",
            "serve",
            "--config",
            "/etc/commucat.toml",
            "--data-dir",
            "/var/lib/commucat",
        ])
        .unwrap();
        match cli.command {
            Command::Serve { config, data_dir } => {
                assert_eq!(config, Some(PathBuf::from("/etc/commucat.toml")));
                assert_eq!(data_dir, Some(PathBuf::from("/var/lib/commucat")));
            }
            _ => panic!("parsed as another command"),
        }
        assert!(Cli::try_parse_from(["commucat", "serve", "--bogus"]).is_err());
        assert!(Cli::try_parse_from(["commucat", "decode", "00"]).is_ok());
    }

    #[test]
    fn describes_control_and_opaque_frames() {
        let ack = commucat_ccp::Frame::new(FrameType::Ack, 0, 1, &br#"{"ack":3}"#[..]).unwrap();
        let described = describe(&ack);
        assert_eq!(described["type"], "ack");
        assert_eq!(described["payload"]["ack"], 3);
        let msg = commucat_ccp::Frame::new(FrameType::Msg, 5, 3, &b"hi"[..]).unwrap();
        assert_eq!(describe(&msg)["payload"], "6869");
    }

    #[test]
    fn decode_reports_malformed_and_truncated_input() {
        assert!(decode(Some("0d 06 00 01 09 7b2261636b223a337d")).is_ok());
        let err = decode(Some("00")).unwrap_err();
        assert!(err.to_string().starts_with("Truncated Frame"), "{err}");
        let err = decode(Some("0d06")).unwrap_err();
        assert!(err.to_string().contains("inside a frame"), "{err}");
        assert!(decode(Some("zz")).is_err());
    }
}
