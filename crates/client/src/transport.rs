//! `/connect` transports as [`ByteStream`]s: HTTP/2 `POST` ([`H2Stream`], the deployed client's
//! way), HTTP/3 `POST` ([`H3Stream`]), and every connect mode through [`open_mode`].

mod h1;
pub mod h3;
mod text;
mod ws;

pub use h1::H1Stream;
pub use h3::{H3Connection, H3Stream};
pub use text::{TextFormat, TextStream};
pub use ws::{H2Io, Message, WsStream};

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use commucat_link::ByteStream;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::ClientError;
use crate::tls::{TlsTrust, client_config};

enum Downstream {
    /// Response headers not yet received (the client writes HELLO before they arrive).
    Pending(ResponseFuture),
    Open(RecvStream),
    Done,
}

/// The duplex body of one HTTP/2 `/connect` request.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: Downstream,
}

impl std::fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Stream").finish_non_exhaustive()
    }
}

fn to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io().unwrap_or_else(|| io::Error::other("h2 i/o"))
    } else {
        io::Error::other(e)
    }
}

/// Framing overhead of small DATA frames the h2 client may hold unread before it closes the
/// connection (`ENHANCE_YOUR_CALM`). The server sends each CCP-1 frame as its own DATA frame, so
/// an offline-queue replay of thousands of short messages is thousands of small DATA frames;
/// h2's default (half the 64 KiB window, about 170 short frames) cut such replays whenever the
/// application fell briefly behind. Memory stays bounded by the flow-control window; this only
/// bounds the bookkeeping overhead, at 1 MiB.
const SMALL_FRAME_BUDGET: usize = 1 << 20;

/// Opens TCP + TLS 1.3 + HTTP/2 to `addr` and starts `POST {path}` with an open body.
///
/// # Errors
/// [`ClientError::Transport`] for any connection failure.
pub async fn open(
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    path: &str,
) -> Result<H2Stream, ClientError> {
    open_from(None, addr, server_name, trust, path).await
}

/// [`open`] from a chosen local source address (`None`: the system picks). Load tools spread
/// connections over several loopback addresses (`127.x.y.z`) so that the ephemeral ports of one
/// source address do not limit how many can be open at once.
///
/// # Errors
/// [`ClientError::Transport`] for any connection failure (including an address that cannot be
/// bound).
pub async fn open_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    path: &str,
) -> Result<H2Stream, ClientError> {
    let transport = |e: &dyn std::fmt::Display| ClientError::Transport(e.to_string());
    let tls = tls_connect(local, addr, server_name, trust, b"h2").await?;
    let (mut client, connection) = h2::client::Builder::new()
        .data_frame_budget(SMALL_FRAME_BUDGET)
        .handshake(tls)
        .await
        .map_err(|e| transport(&e))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the HTTP/2 connection driver; it ends with the connection"
    )]
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "h2 connection ended");
        }
    });
    let authority = authority(addr, server_name);
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("https://{authority}{path}"))
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::USER_AGENT, "commucat-client/0.1")
        .body(())
        .map_err(|e| transport(&e))?;
    client = client.ready().await.map_err(|e| transport(&e))?;
    let (response, send) = client
        .send_request(request, false)
        .map_err(|e| transport(&e))?;
    Ok(H2Stream {
        send,
        recv: Downstream::Pending(response),
    })
}

/// Most bytes [`get`] reads from a response body.
pub const MAX_GET_BODY: usize = 1024 * 1024;

/// `GET {path}` over TLS 1.3 + HTTP/2 (e.g. `/api/server-info` before a handshake); returns
/// the status and body (at most [`MAX_GET_BODY`] bytes).
///
/// # Errors
/// [`ClientError::Transport`] for any connection failure or an oversized body.
pub async fn get(
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    path: &str,
) -> Result<(u16, Vec<u8>), ClientError> {
    request(
        addr,
        server_name,
        trust,
        http::Method::GET,
        path,
        None,
        None,
    )
    .await
}

/// `POST {path}` with a JSON body over TLS 1.3 + HTTP/2, with `Authorization: Bearer
/// <bearer>` if given; returns the status and body (at most [`MAX_GET_BODY`] bytes).
///
/// # Errors
/// [`ClientError::Transport`] for any connection failure or an oversized body.
pub async fn post_json(
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    path: &str,
    bearer: Option<&str>,
    json: Vec<u8>,
) -> Result<(u16, Vec<u8>), ClientError> {
    let method = http::Method::POST;
    request(addr, server_name, trust, method, path, bearer, Some(json)).await
}

/// One HTTP/2 request on a fresh TLS connection.
async fn request(
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    method: http::Method,
    path: &str,
    bearer: Option<&str>,
    json: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), ClientError> {
    let transport = |e: &dyn std::fmt::Display| ClientError::Transport(e.to_string());
    let tls = tls_connect(None, addr, server_name, trust, b"h2").await?;
    let (client, connection) = h2::client::handshake(tls)
        .await
        .map_err(|e| transport(&e))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the HTTP/2 connection driver; it ends with the connection"
    )]
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "h2 connection ended");
        }
    });
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("https://{}{path}", authority(addr, server_name)))
        .header(http::header::USER_AGENT, "commucat-client/0.1");
    if let Some(token) = bearer {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if json.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = builder.body(()).map_err(|e| transport(&e))?;
    let mut client = client.ready().await.map_err(|e| transport(&e))?;
    let (response, mut send) = client
        .send_request(request, json.is_none())
        .map_err(|e| transport(&e))?;
    if let Some(json) = json {
        send.send_data(Bytes::from(json), true)
            .map_err(|e| transport(&e))?;
    }
    let response = response.await.map_err(|e| transport(&e))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| transport(&e))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if bytes.len() + chunk.len() > MAX_GET_BODY {
            return Err(ClientError::Transport(format!(
                "{path}: response body over {MAX_GET_BODY} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}

/// TCP (from `local` when given) + TLS 1.3 to `addr`, offering the single ALPN protocol `alpn`.
///
/// # Errors
/// [`ClientError::Transport`] for any connection failure.
pub async fn tls_connect(
    local: Option<IpAddr>,
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    alpn: &[u8],
) -> Result<TlsStream<TcpStream>, ClientError> {
    let transport = |e: &dyn std::fmt::Display| ClientError::Transport(e.to_string());
    let mut config = client_config(trust)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = match local {
        None => TcpStream::connect(addr).await.map_err(|e| transport(&e))?,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|e| transport(&e))?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| transport(&format!("binding {ip}: {e}")))?;
            socket.connect(addr).await.map_err(|e| transport(&e))?
        }
    };
    tcp.set_nodelay(true).map_err(|e| transport(&e))?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| ClientError::Config(format!("server name: {e}")))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| transport(&e))
}

fn authority(addr: SocketAddr, server_name: &str) -> String {
    if server_name.contains(':') {
        format!("[{server_name}]:{}", addr.port())
    } else {
        format!("{server_name}:{}", addr.port())
    }
}

/// A way of reaching `/connect` (see the server's `docs/connect-modes.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// HTTP/2 duplex `POST`, raw frame bytes both ways.
    H2Binary,
    /// HTTP/1.1 `POST` with chunked request and response bodies, raw frame bytes both ways.
    H1Chunked,
    /// HTTP/2 `POST ?mode=sse`: raw bytes up, Server-Sent Events down.
    Sse,
    /// HTTP/2 `POST ?mode=ndjson`: raw bytes up, NDJSON lines down.
    Ndjson,
    /// RFC 6455 WebSocket over HTTP/1.1.
    WebSocket,
    /// RFC 8441 WebSocket over HTTP/2 (extended CONNECT).
    WebSocketH2,
    /// HTTP/3 (QUIC) `POST`, raw frame bytes both ways; the server needs `server.http3`.
    H3,
}

impl ConnectMode {
    /// Every mode.
    pub const ALL: [Self; 7] = [
        Self::H2Binary,
        Self::H1Chunked,
        Self::Sse,
        Self::Ndjson,
        Self::WebSocket,
        Self::WebSocketH2,
        Self::H3,
    ];

    /// Parses a mode name: `h2`, `h1`, `sse`, `ndjson`, `ws`, `ws-h2`, `h3` (or the variant
    /// names in kebab case).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "h2" | "h2-binary" | "binary" => Self::H2Binary,
            "h1" | "h1-chunked" => Self::H1Chunked,
            "sse" => Self::Sse,
            "ndjson" | "long-poll" => Self::Ndjson,
            "ws" | "websocket" => Self::WebSocket,
            "ws-h2" | "websocket-h2" => Self::WebSocketH2,
            "h3" | "quic" | "http3" => Self::H3,
            _ => return None,
        })
    }

    /// Whether frames can travel as Noise transport records (SSE and NDJSON need visible frames).
    #[must_use]
    pub const fn carries_noise_transport(self) -> bool {
        !matches!(self, Self::Sse | Self::Ndjson)
    }
}

/// An open `/connect` stream in any mode.
#[derive(Debug)]
pub enum ModeStream {
    /// [`ConnectMode::H2Binary`].
    H2(H2Stream),
    /// [`ConnectMode::H1Chunked`].
    H1(H1Stream),
    /// [`ConnectMode::Sse`], [`ConnectMode::Ndjson`].
    Text(TextStream<H2Stream>),
    /// [`ConnectMode::WebSocket`].
    Ws(Box<WsStream<TlsStream<TcpStream>>>),
    /// [`ConnectMode::WebSocketH2`].
    WsH2(Box<WsStream<H2Io>>),
    /// [`ConnectMode::H3`].
    H3(Box<H3Stream>),
}

/// Opens `/connect` to `addr` in `mode`.
///
/// # Errors
/// [`ClientError::Transport`] for any connection failure.
pub async fn open_mode(
    mode: ConnectMode,
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
) -> Result<ModeStream, ClientError> {
    let authority = authority(addr, server_name);
    Ok(match mode {
        ConnectMode::H2Binary => ModeStream::H2(open(addr, server_name, trust, "/connect").await?),
        ConnectMode::Sse => ModeStream::Text(TextStream::new(
            open(addr, server_name, trust, "/connect?mode=sse").await?,
            TextFormat::Sse,
        )),
        ConnectMode::Ndjson => ModeStream::Text(TextStream::new(
            open(addr, server_name, trust, "/connect?mode=long-poll").await?,
            TextFormat::Ndjson,
        )),
        ConnectMode::H1Chunked => {
            let tls = tls_connect(None, addr, server_name, trust, b"http/1.1").await?;
            ModeStream::H1(h1::start(tls, &authority, "/connect").await?)
        }
        ConnectMode::WebSocket => {
            let tls = tls_connect(None, addr, server_name, trust, b"http/1.1").await?;
            ModeStream::Ws(Box::new(ws::start_h1(tls, &authority, "/connect").await?))
        }
        ConnectMode::WebSocketH2 => {
            let tls = tls_connect(None, addr, server_name, trust, b"h2").await?;
            ModeStream::WsH2(Box::new(ws::start_h2(tls, &authority, "/connect").await?))
        }
        ConnectMode::H3 => ModeStream::H3(Box::new(
            h3::open(addr, server_name, trust, "/connect").await?,
        )),
    })
}

impl ByteStream for ModeStream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Self::H2(s) => s.read().await,
            Self::H1(s) => s.read().await,
            Self::Text(s) => s.read().await,
            Self::Ws(s) => s.read().await,
            Self::WsH2(s) => s.read().await,
            Self::H3(s) => s.read().await,
        }
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        match self {
            Self::H2(s) => s.write(bytes).await,
            Self::H1(s) => s.write(bytes).await,
            Self::Text(s) => s.write(bytes).await,
            Self::Ws(s) => s.write(bytes).await,
            Self::WsH2(s) => s.write(bytes).await,
            Self::H3(s) => s.write(bytes).await,
        }
    }
}

impl H2Stream {
    /// Ends the request body (the server sees end of stream).
    pub fn finish(&mut self) {
        // Ignored error: the stream may already be gone, which is what finishing wants.
        let _ = self.send.send_data(Bytes::new(), true);
    }
}

impl ByteStream for H2Stream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match &mut self.recv {
                Downstream::Pending(response) => {
                    let response = response.await.map_err(to_io)?;
                    if response.status() != http::StatusCode::OK {
                        return Err(io::Error::other(format!(
                            "/connect answered HTTP {}",
                            response.status().as_u16()
                        )));
                    }
                    self.recv = Downstream::Open(response.into_body());
                }
                Downstream::Open(body) => match body.data().await {
                    Some(Ok(bytes)) => {
                        // Reading is consuming: give the window back so the server may send more.
                        let _ = body.flow_control().release_capacity(bytes.len());
                        if bytes.is_empty() {
                            continue;
                        }
                        return Ok(Some(bytes));
                    }
                    Some(Err(e)) => return Err(to_io(e)),
                    None => {
                        self.recv = Downstream::Done;
                        return Ok(None);
                    }
                },
                Downstream::Done => return Ok(None),
            }
        }
    }

    async fn write(&mut self, mut bytes: Bytes) -> io::Result<()> {
        // Respect the server's flow-control window: send only what it has room for.
        while !bytes.is_empty() {
            self.send.reserve_capacity(bytes.len());
            let granted = poll_fn(|cx| self.send.poll_capacity(cx))
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stream closed"))?
                .map_err(to_io)?;
            if granted == 0 {
                continue;
            }
            let chunk = bytes.split_to(granted.min(bytes.len()));
            self.send.send_data(chunk, false).map_err(to_io)?;
        }
        Ok(())
    }

    /// The payload goes to h2 as the caller's buffer (h2 sends `Bytes` without copying).
    async fn write_frame(&mut self, header: Bytes, payload: Bytes) -> io::Result<()> {
        self.write(header).await?;
        self.write(payload).await
    }
}
