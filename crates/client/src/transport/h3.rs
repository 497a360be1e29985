//! `/connect` over HTTP/3: QUIC (quinn) + h3, one `POST` request stream carrying raw frame
//! bytes both ways, as the HTTP/2 `POST` does.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use commucat_link::ByteStream;
use h3::client::{RequestStream, SendRequest};

use crate::ClientError;
use crate::tls::{TlsTrust, client_config};

/// QUIC keep-alive PING cadence: keeps a quiet session's connection (and NAT bindings) open.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The client's QUIC idle time-out (the smaller of both ends' applies).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An open HTTP/3 connection: its endpoint, QUIC connection and request sender.
pub struct H3Connection {
    endpoint: quinn::Endpoint,
    quic: quinn::Connection,
    requests: SendRequest<h3_quinn::OpenStreams, Bytes>,
    authority: String,
}

impl Drop for H3Connection {
    /// Closes the QUIC connection: the h3 driver task holds it too and would otherwise keep
    /// it (and its keep-alive PINGs) going.
    fn drop(&mut self) {
        self.quic.close(quinn::VarInt::from_u32(0), b"done");
    }
}

impl std::fmt::Debug for H3Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Connection")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// The duplex body of one HTTP/3 `/connect` request.
pub struct H3Stream {
    send: RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    recv: RequestStream<h3_quinn::RecvStream, Bytes>,
    /// The response status, once its head has been read.
    status: Option<u16>,
    done: bool,
    /// Keeps the connection open while the stream lives.
    _connection: Option<Arc<H3Connection>>,
}

impl std::fmt::Debug for H3Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Stream").finish_non_exhaustive()
    }
}

fn transport(e: &dyn std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

impl H3Connection {
    /// Opens QUIC (ALPN `h3`, TLS 1.3 with `trust`) to `addr` and sets up HTTP/3.
    ///
    /// # Errors
    /// [`ClientError::Transport`] for any connection failure (a server without HTTP/3 does not
    /// answer: the QUIC handshake times out).
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        trust: &TlsTrust,
    ) -> Result<Self, ClientError> {
        let mut tls = client_config(trust)?;
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Config(format!("QUIC TLS: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut parameters = quinn::TransportConfig::default();
        parameters.keep_alive_interval(Some(KEEP_ALIVE));
        parameters.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
        config.transport_config(Arc::new(parameters));
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(local).map_err(|e| transport(&e))?;
        endpoint.set_default_client_config(config);
        let quic = endpoint
            .connect(addr, server_name)
            .map_err(|e| transport(&e))?
            .await
            .map_err(|e| transport(&e))?;
        let (mut driver, requests) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|e| transport(&e))?;
        #[allow(
            clippy::disallowed_methods,
            reason = "the HTTP/3 connection driver; it ends with the connection"
        )]
        tokio::spawn(async move {
            let error = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            tracing::debug!(%error, "h3 connection ended");
        });
        Ok(Self {
            endpoint,
            quic,
            requests,
            authority: super::authority(addr, server_name),
        })
    }

    /// Starts `POST {path}` with an open body on this connection. The stream keeps the
    /// connection open as long as it lives.
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the request cannot be sent (for example the server's
    /// stream limit is reached and stays so, or the connection is gone).
    pub async fn open(self: &Arc<Self>, path: &str) -> Result<H3Stream, ClientError> {
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("https://{}{path}", self.authority))
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(http::header::USER_AGENT, "commucat-client/0.1")
            .body(())
            .map_err(|e| transport(&e))?;
        let mut requests = self.requests.clone();
        let stream = requests
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        let (send, recv) = stream.split();
        Ok(H3Stream {
            send,
            recv,
            status: None,
            done: false,
            _connection: Some(Arc::clone(self)),
        })
    }

    /// `GET {path}` on this connection; the status and body (at most
    /// [`super::MAX_GET_BODY`] bytes).
    ///
    /// # Errors
    /// [`ClientError::Transport`] for any failure or an oversized body.
    pub async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(format!("https://{}{path}", self.authority))
            .header(http::header::USER_AGENT, "commucat-client/0.1")
            .body(())
            .map_err(|e| transport(&e))?;
        let mut requests = self.requests.clone();
        let mut stream = requests
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        stream.finish().await.map_err(|e| transport(&e))?;
        let response = stream.recv_response().await.map_err(|e| transport(&e))?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| transport(&e))? {
            if body.len() + chunk.remaining() > super::MAX_GET_BODY {
                return Err(ClientError::Transport(format!(
                    "{path}: response body over {} bytes",
                    super::MAX_GET_BODY
                )));
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                body.extend_from_slice(part);
                let taken = part.len();
                chunk.advance(taken);
            }
        }
        Ok((response.status().as_u16(), body))
    }

    /// The QUIC connection (statistics, close).
    #[must_use]
    pub fn quic(&self) -> &quinn::Connection {
        &self.quic
    }

    /// The local UDP address of the endpoint.
    ///
    /// # Errors
    /// The socket's address is unavailable.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }
}

/// Opens a fresh HTTP/3 connection to `addr` and starts `POST {path}` on it.
///
/// # Errors
/// [`ClientError::Transport`] for any connection failure.
pub async fn open(
    addr: SocketAddr,
    server_name: &str,
    trust: &TlsTrust,
    path: &str,
) -> Result<H3Stream, ClientError> {
    let connection = Arc::new(H3Connection::connect(addr, server_name, trust).await?);
    connection.open(path).await
}

fn to_io(e: &h3::error::StreamError) -> io::Error {
    io::Error::other(e.to_string())
}

impl H3Stream {
    /// The response status (waits for the response head if it has not arrived yet).
    ///
    /// # Errors
    /// The stream failed before the head arrived.
    pub async fn status(&mut self) -> io::Result<u16> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let response = self.recv.recv_response().await.map_err(|e| to_io(&e))?;
        let status = response.status().as_u16();
        self.status = Some(status);
        Ok(status)
    }

    /// Ends the request body (the server sees end of stream).
    ///
    /// # Errors
    /// The stream is already gone.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.send.finish().await.map_err(|e| to_io(&e))
    }
}

impl ByteStream for H3Stream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let status = self.status().await?;
        if status != 200 {
            return Err(io::Error::other(format!("/connect answered HTTP {status}")));
        }
        loop {
            match self.recv.recv_data().await.map_err(|e| to_io(&e))? {
                Some(mut chunk) => {
                    if chunk.has_remaining() {
                        return Ok(Some(chunk.copy_to_bytes(chunk.remaining())));
                    }
                }
                None => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.send.send_data(bytes).await.map_err(|e| to_io(&e))
    }

    /// The payload goes to h3 as the caller's buffer (no copy).
    async fn write_frame(&mut self, header: Bytes, payload: Bytes) -> io::Result<()> {
        self.write(header).await?;
        self.write(payload).await
    }
}
