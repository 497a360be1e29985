//! `commucat chat`: a person's interactive client on the SDK. Connects over TLS (a CA file or
//! a pinned certificate fingerprint), loads or creates a device identity, joins a channel,
//! sends every line of standard input as a MSG and prints every MSG received.
//!
//! Lines travel as the MSG payload unchanged: this client adds no end-to-end encryption of
//! its own (the server relays payloads it does not read either way).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use commucat_ccp::control::{Ack, Join};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::transport::{self, ConnectMode};
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust};
use commucat_keys::decode_hex32;
use tokio::sync::mpsc;

/// Arguments of `chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChatArgs {
    /// Server as `https://HOST:PORT` (or `HOST:PORT`).
    #[arg(long, value_name = "URL")]
    pub(crate) server: String,
    /// Trust the server certificate chain to this PEM file (e.g. the dev certificate in the
    /// server's data directory).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "pin",
        required_unless_present = "pin"
    )]
    pub(crate) ca: Option<PathBuf>,
    /// Accept exactly the certificate with this SHA-256 fingerprint, as `serve` logs it.
    #[arg(long, value_name = "SHA256")]
    pub(crate) pin: Option<String>,
    /// The server's Noise public key (hex) to pin; default: `noise_public` from
    /// `GET /api/server-info` over the trusted connection.
    #[arg(long, value_name = "HEX")]
    pub(crate) noise_key: Option<String>,
    /// Device identity file (0600): loaded if it exists, otherwise created.
    #[arg(long, value_name = "FILE")]
    pub(crate) identity: PathBuf,
    /// Device id for a new identity (default: `chat-` and random hex).
    #[arg(long)]
    pub(crate) device_id: Option<String>,
    /// Account handle for a new identity (creates the account on first connect).
    #[arg(long)]
    pub(crate) handle: Option<String>,
    /// Channel to join and talk on.
    #[arg(long, default_value_t = 1)]
    pub(crate) channel: u32,
    /// Devices to add to the channel with you (repeatable).
    #[arg(long = "peer", value_name = "DEVICE_ID")]
    pub(crate) peers: Vec<String>,
    /// After standard input ends, wait this many seconds for the server to acknowledge what
    /// was sent, then exit.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub(crate) linger: u64,
    /// Post-quantum hybrid session (`pq-hybrid`: ML-KEM-768 + ML-DSA-65 on top of Noise, with
    /// Noise transport records keyed from the hybrid material). Gives the identity PQ keys
    /// (stored in its file) if it has none; refuses to chat if the server does not accept it.
    #[arg(long)]
    pub(crate) pq: bool,
    /// Wrap every frame in `adaptive-obf` packets (random padding, a decoy protocol snapshot and
    /// a MAC inside the Noise records; see docs/obfuscation.md for what this does not hide).
    /// Refuses to chat if the server does not accept it.
    #[arg(long)]
    pub(crate) obf: bool,
    /// How to reach `/connect`: `h2` (HTTP/2 POST, the default), `h3` (HTTP/3 over QUIC; the
    /// server needs `server.http3`), `h1`, `ws`, `ws-h2`, `sse` or `ndjson`.
    #[arg(long, default_value = "h2", value_parser = parse_mode)]
    pub(crate) mode: ConnectMode,
}

fn parse_mode(name: &str) -> Result<ConnectMode, String> {
    ConnectMode::parse(name).ok_or_else(|| {
        format!("unknown connect mode {name:?} (h2, h3, h1, ws, ws-h2, sse, ndjson)")
    })
}

fn split_server(url: &str) -> Result<(String, u16)> {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--server {url}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow!("--server {url}: invalid port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--server {url}: missing host");
    }
    Ok((host.to_owned(), port))
}

fn trust(args: &ChatArgs) -> Result<TlsTrust> {
    match (&args.ca, &args.pin) {
        (Some(path), _) => {
            Ok(TlsTrust::CaPem(std::fs::read(path).with_context(|| {
                format!("reading --ca {}", path.display())
            })?))
        }
        (None, Some(pin)) => Ok(TlsTrust::fingerprint(pin)?),
        (None, None) => bail!("pass --ca FILE or --pin SHA256"),
    }
}

fn identity(args: &ChatArgs) -> Result<DeviceIdentity> {
    if args.identity.exists() {
        let identity = DeviceIdentity::load(&args.identity)?;
        if args.pq && identity.pq.is_none() {
            let identity = identity.with_pq_keys()?;
            identity.save(&args.identity)?;
            eprintln!("added post-quantum keys to {}", args.identity.display());
            return Ok(identity);
        }
        return Ok(identity);
    }
    let device_id = args.device_id.clone().unwrap_or_else(|| {
        let mut bytes = [0u8; 6];
        commucat_keys::RngCore::fill_bytes(&mut commucat_keys::OsRng, &mut bytes);
        format!("chat-{}", hex::encode(bytes))
    });
    let identity = DeviceIdentity::generate(device_id);
    let identity = match &args.handle {
        Some(handle) => identity.with_handle(handle),
        None => identity,
    };
    let identity = if args.pq {
        identity.with_pq_keys()?
    } else {
        identity
    };
    identity.save(&args.identity)?;
    eprintln!(
        "created identity {} in {}",
        identity.device_id,
        args.identity.display()
    );
    Ok(identity)
}

/// The server's domain and Noise key: `--noise-key`, or server-info.
async fn server_params(
    args: &ChatArgs,
    addr: SocketAddr,
    host: &str,
    trust: &TlsTrust,
) -> Result<ServerParams> {
    let (status, body) = transport::get(addr, host, trust, "/api/server-info").await?;
    if status != 200 {
        bail!("GET /api/server-info answered {status}");
    }
    let info: serde_json::Value =
        serde_json::from_slice(&body).context("server-info is not JSON")?;
    let field = |name: &str| info.get(name).and_then(serde_json::Value::as_str);
    let domain = field("domain").ok_or_else(|| anyhow!("server-info without domain"))?;
    let key = match &args.noise_key {
        Some(hex) => hex.clone(),
        None => field("noise_public")
            .ok_or_else(|| anyhow!("server-info without noise_public"))?
            .to_owned(),
    };
    let key = decode_hex32(&key).map_err(|e| anyhow!("Noise key: {e}"))?;
    Ok(ServerParams::new(domain, key))
}

/// Runs `chat`.
pub(crate) fn run(args: &ChatArgs) -> Result<()> {
    let (host, port) = split_server(&args.server)?;
    let trust = trust(args)?;
    let mut identity = identity(args)?;
    crate::context::runtime()?.block_on(async {
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
        let params = server_params(args, addr, &host, &trust).await?;
        // Offline messages stay queued until this chat ACKs them.
        let options = HandshakeOptions::default().with_delivery_receipts();
        let options = if args.pq {
            options.with_pq_hybrid()
        } else {
            options
        };
        let options = if args.obf {
            options.with_adaptive_obf()
        } else {
            options
        };
        let stream = transport::open_mode(args.mode, addr, &host, &trust).await?;
        let mut session = Session::handshake(stream, &identity, &params, &options).await?;
        if args.pq && !session.info().pq_hybrid() {
            bail!("the server did not accept pq-hybrid (classical session refused with --pq)");
        }
        if args.obf && !session.info().adaptive_obf() {
            bail!("the server did not accept adaptive-obf (unwrapped session refused with --obf)");
        }
        identity.adopt(session.info());
        identity.save(&args.identity)?;
        eprintln!(
            "connected as {} (user {}) to {}; channel {}{}{}",
            identity.device_id,
            session.info().user_id,
            params.domain,
            args.channel,
            if session.info().pq_hybrid() {
                "; pq-hybrid session"
            } else {
                ""
            },
            if session.info().adaptive_obf() {
                "; adaptive-obf"
            } else {
                ""
            }
        );
        converse(&mut session, &identity.device_id, args).await
    })
}

async fn converse<S: commucat_link::ByteStream>(
    session: &mut Session<S>,
    me: &str,
    args: &ChatArgs,
) -> Result<()> {
    let mut members = vec![me.to_owned()];
    members.extend(args.peers.iter().cloned());
    let join = Join {
        members,
        relay: true,
        group_id: None,
        name: None,
        member_count: None,
    };
    let mut pending = BTreeSet::new();
    pending.insert(
        session
            .send_control(FrameType::Join, args.channel, &join)
            .await?,
    );
    let mut stdin = stdin_lines();
    let mut input_open = true;
    let linger = tokio::time::sleep(Duration::from_secs(args.linger));
    tokio::pin!(linger);
    loop {
        if !input_open && pending.is_empty() {
            return Ok(());
        }
        tokio::select! {
            line = stdin.recv(), if input_open => match line.transpose().context("reading standard input")? {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    pending.insert(
                        session
                            .send_bytes(FrameType::Msg, args.channel, line.into_bytes())
                            .await?,
                    );
                }
                None => {
                    input_open = false;
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + Duration::from_secs(args.linger));
                }
            },
            frame = session.recv() => match frame? {
                Some(frame) => {
                    show(&frame, &mut pending);
                    if frame.frame_type() != FrameType::Ack {
                        session.acknowledge(&frame).await?;
                    }
                }
                None => bail!("the server closed the session"),
            },
            () = &mut linger, if !input_open => {
                bail!("{} frames not acknowledged within {} s", pending.len(), args.linger);
            }
        }
    }
}

/// Lines of standard input, read on a thread of their own (blocking reads stay off the
/// runtime); the channel closes at end of input.
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (lines, receiver) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let failed = line.is_err();
            if lines.blocking_send(line).is_err() || failed {
                break;
            }
        }
    });
    receiver
}

fn show(frame: &Frame, pending: &mut BTreeSet<u32>) {
    match frame.frame_type() {
        FrameType::Msg => {
            let text = String::from_utf8_lossy(frame.payload());
            println!("[{}] {text}", frame.channel_id());
        }
        FrameType::Ack => {
            if let Ok(ack) = frame.parse_control::<Ack>() {
                u32::try_from(ack.ack).map(|seq| pending.remove(&seq)).ok();
            }
        }
        FrameType::Join => {
            if let Ok(join) = frame.parse_control::<Join>() {
                eprintln!(
                    "[{}] members: {}",
                    frame.channel_id(),
                    join.members.join(", ")
                );
            }
        }
        FrameType::Error => match frame.parse_control::<Problem>() {
            Ok(problem) => eprintln!(
                "[{}] error: {} {}",
                frame.channel_id(),
                problem.title.unwrap_or_default(),
                problem.detail.unwrap_or_default()
            ),
            Err(_) => eprintln!("[{}] error frame", frame.channel_id()),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_split_into_host_and_port() {
        assert_eq!(
            split_server("https://chat.example:8443").unwrap(),
            ("chat.example".to_owned(), 8443)
        );
        assert_eq!(
            split_server("127.0.0.1:9/").unwrap(),
            ("127.0.0.1".to_owned(), 9)
        );
        assert_eq!(
            split_server("[::1]:8443").unwrap(),
            ("::1".to_owned(), 8443)
        );
        assert!(split_server("chat.example").is_err());
        assert!(split_server("https://:80").is_err());
        assert!(split_server("host:port").is_err());
    }
}
