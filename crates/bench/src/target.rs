//! The server under test: address, TLS trust, Noise parameters, and how connections reach it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use commucat_client::transport::{self, H2Stream};
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust};
use commucat_keys::HandshakePattern;
use commucat_link::Connection;

use crate::args::TargetArgs;

/// Time one connect + handshake may take before it counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything needed to open sessions on the server under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address (loopback); the first node when there are several.
    pub addr: SocketAddr,
    /// Every node's address when the load is spread over several (`--target`); connection
    /// number `i` goes to `nodes[i % nodes.len()]`. Empty: everything goes to `addr`.
    pub nodes: Vec<SocketAddr>,
    /// TLS server name.
    pub server_name: String,
    /// TLS trust.
    pub trust: TlsTrust,
    /// Noise parameters.
    pub params: ServerParams,
    /// Server process, for `/proc` readings.
    pub server_pid: Option<u32>,
    /// Spread connections over 127.0.0.0/8.
    pub spread: bool,
    /// Prefix making this run's device ids unique on a server that keeps earlier runs' devices.
    pub run_id: String,
}

impl Target {
    /// A target from known parameters.
    ///
    /// # Errors
    /// A non-loopback address: the tool only loads the local machine.
    pub fn new(addr: SocketAddr, trust: TlsTrust, params: ServerParams) -> Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("{addr} is not a loopback address: commucat bench only loads the local machine");
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "a unique label for this run, not a time the server reads"
        )]
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            addr,
            nodes: Vec::new(),
            server_name: "localhost".to_owned(),
            trust,
            params,
            server_pid: None,
            spread: addr.is_ipv4(),
            run_id: format!(
                "{:x}",
                (nanos ^ u128::from(std::process::id())) & 0xff_ffff_ffff
            ),
        })
    }

    /// Builds the target from the command line, asking `GET /api/server-info` for what was
    /// not given.
    ///
    /// # Errors
    /// Missing or unreadable trust material, a server that does not answer, bad keys.
    pub async fn resolve(args: &TargetArgs) -> Result<Self> {
        let trust = match (&args.ca, &args.fingerprint) {
            (Some(path), _) => TlsTrust::CaPem(
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            ),
            (None, Some(fp)) => TlsTrust::fingerprint(fp)?,
            (None, None) => bail!(
                "say how to trust the server: --ca FILE (e.g. commucat-data/tls/dev_cert.pem) or --fingerprint HEX"
            ),
        };
        let placeholder = ServerParams::new(String::new(), [0; 32]);
        let first = args.target.first().copied().unwrap_or(args.addr);
        let mut target = Self::new(first, trust, placeholder)?;
        if let Some(remote) = args.target.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "{remote} is not a loopback address: commucat bench only loads the local machine"
            );
        }
        if args.target.len() > 1 {
            target.nodes.clone_from(&args.target);
        }
        target.server_name.clone_from(&args.server_name);
        target.server_pid = args.server_pid;
        target.spread = target.spread && !args.no_spread;
        let (domain, key) = match (&args.domain, &args.server_key) {
            (Some(domain), Some(key)) => (domain.clone(), key.clone()),
            _ => {
                let info = target.server_info().await?;
                let field = |name: &str| {
                    info.get(name)
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("/api/server-info has no {name:?}"))
                };
                (
                    args.domain.clone().map_or_else(|| field("domain"), Ok)?,
                    args.server_key
                        .clone()
                        .map_or_else(|| field("noise_public"), Ok)?,
                )
            }
        };
        let server_static =
            commucat_keys::decode_hex32(&key).map_err(|e| anyhow!("server Noise key: {e}"))?;
        target.params = ServerParams::new(domain, server_static);
        Ok(target)
    }

    /// `GET /api/server-info` over HTTP/2.
    async fn server_info(&self) -> Result<serde_json::Value> {
        let tls = transport::tls_connect(None, self.addr, &self.server_name, &self.trust, b"h2")
            .await
            .context("connecting for /api/server-info")?;
        let (client, connection) = h2::client::handshake(tls).await?;
        #[allow(
            clippy::disallowed_methods,
            reason = "the HTTP/2 connection driver of one request; it ends with the connection"
        )]
        tokio::spawn(connection);
        let request = http::Request::get(format!(
            "https://{}:{}/api/server-info",
            self.server_name,
            self.addr.port()
        ))
        .body(())?;
        let mut client = client.ready().await?;
        let (response, _) = client.send_request(request, true)?;
        let response = tokio::time::timeout(CONNECT_TIMEOUT, response)
            .await
            .context("/api/server-info timed out")??;
        if !response.status().is_success() {
            bail!("/api/server-info answered HTTP {}", response.status());
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk: Bytes = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
            if bytes.len() > 1 << 20 {
                bail!("/api/server-info answer over 1 MiB");
            }
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The source address of connection number `i`: 127.a.b.c with every octet in 1..=254
    /// (so up to 16 M sources), or `None` when spreading is off.
    pub(crate) fn source(&self, i: usize) -> Option<IpAddr> {
        if !self.spread {
            return None;
        }
        let octet = |n: usize| u8::try_from(1 + n % 254).unwrap_or(1);
        Some(IpAddr::V4(Ipv4Addr::new(
            127,
            octet(i / (254 * 254)),
            octet(i / 254),
            octet(i),
        )))
    }

    /// A new device identity, never handed out before in this process (`kind` and `i` name
    /// it for logs; a process-wide serial number keeps ids unique across scenario runs).
    pub(crate) fn identity(&self, kind: &str, i: usize) -> DeviceIdentity {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let id = format!("bench-{}-{kind}{i}-{serial}", self.run_id);
        let handle = id.replace('-', "_");
        DeviceIdentity::generate(id).with_handle(handle)
    }

    /// The first of `n` consecutive channel ids no earlier scenario of this process used.
    ///
    /// Channel membership merges and outlives sessions: reusing a channel would make its
    /// earlier, now disconnected members recipients too, and every message would go to their
    /// durable queue. The ids start at a point derived from the run id, so other runs against
    /// the same server do not collide either.
    pub(crate) fn channels(&self, n: usize) -> Result<u32> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let seed = u64::from_str_radix(&self.run_id, 16).unwrap_or(0) % (1 << 30);
        let n = u64::try_from(n)?;
        let first = 1 + seed + NEXT.fetch_add(n, Ordering::Relaxed);
        u32::try_from(first + n)
            .map(|_| u32::try_from(first).unwrap_or(u32::MAX))
            .map_err(|_| anyhow!("channel ids exhausted"))
    }

    /// The node connection number `i` goes to.
    pub(crate) fn node(&self, i: usize) -> SocketAddr {
        match self.nodes.len() {
            0 => self.addr,
            n => self.nodes.get(i % n).copied().unwrap_or(self.addr),
        }
    }

    /// Opens `/connect` from source number `i` (to node `i mod N`) and runs the handshake.
    pub(crate) async fn connect(
        &self,
        i: usize,
        identity: &DeviceIdentity,
        options: &HandshakeOptions,
    ) -> Result<Session<H2Stream>> {
        let attempt = async {
            let stream = transport::open_from(
                self.source(i),
                self.node(i),
                &self.server_name,
                &self.trust,
                "/connect",
            )
            .await?;
            Session::handshake(stream, identity, &self.params, options).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| anyhow!("connect + handshake took over {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("device {}", identity.device_id))
    }

    /// Registers a device (one handshake) and returns its identity with the certificate and
    /// account the server gave it, ready to reconnect.
    pub(crate) async fn register(
        &self,
        i: usize,
        mut identity: DeviceIdentity,
    ) -> Result<DeviceIdentity> {
        let session = self
            .connect(i, &identity, &HandshakeOptions::default())
            .await?;
        identity.adopt(session.info());
        Ok(identity)
    }

    /// Opens a raw `/connect` stream (no handshake) from source `i` to `addr`, for the echo
    /// baseline.
    pub(crate) async fn open_raw(
        &self,
        addr: SocketAddr,
        i: usize,
    ) -> Result<Connection<H2Stream>> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            transport::open_from(
                self.source(i),
                addr,
                &self.server_name,
                &self.trust,
                "/connect",
            ),
        )
        .await
        .map_err(|_| anyhow!("connecting to {addr} took over {CONNECT_TIMEOUT:?}"))??;
        Ok(Connection::new(stream, commucat_ccp::MAX_FRAME_LEN))
    }
}

/// Handshake options for a pattern and transport.
pub(crate) fn options(ik: bool, noise: bool) -> HandshakeOptions {
    let mut options = HandshakeOptions::default();
    if ik {
        options = options.with_pattern(HandshakePattern::Ik);
    }
    if noise {
        options = options.with_noise_transport();
    }
    options
}
