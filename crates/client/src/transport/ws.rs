//! WebSocket `/connect` (RFC 6455 over HTTP/1.1, RFC 8441 extended CONNECT over HTTP/2) as a
//! [`ByteStream`]: every write is one Binary message; Binary (and base64 Text) messages are read
//! back as bytes; pings are answered by the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use commucat_link::ByteStream;
use futures_util::{SinkExt, StreamExt};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

pub use tokio_tungstenite::tungstenite::Message;

use crate::ClientError;

/// A WebSocket to `/connect` over any transport `T`.
pub struct WsStream<T> {
    socket: WebSocketStream<T>,
}

impl<T> std::fmt::Debug for WsStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream").finish_non_exhaustive()
    }
}

fn transport(e: &dyn std::fmt::Display) -> ClientError {
    ClientError::Transport(e.to_string())
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> WsStream<T> {
    /// The socket itself, e.g. to send a Text or Ping message.
    pub fn socket_mut(&mut self) -> &mut WebSocketStream<T> {
        &mut self.socket
    }

    /// Sends a Close message and waits for the server's.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn close(&mut self) -> io::Result<()> {
        self.socket.close(None).await.map_err(io::Error::other)
    }
}

/// RFC 6455 opening handshake (`GET {path}`, `Upgrade: websocket`) over an HTTP/1.1 stream.
pub(crate) async fn start_h1<T>(
    io: T,
    authority: &str,
    path: &str,
) -> Result<WsStream<T>, ClientError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let request = format!("wss://{authority}{path}")
        .into_client_request()
        .map_err(|e| transport(&e))?;
    let (socket, response) = tokio_tungstenite::client_async(request, io)
        .await
        .map_err(|e| transport(&e))?;
    tracing::debug!(status = %response.status(), "websocket open (HTTP/1.1)");
    Ok(WsStream { socket })
}

/// RFC 8441 extended CONNECT (`:protocol websocket`) on a new HTTP/2 connection.
pub(crate) async fn start_h2<T>(
    io: T,
    authority: &str,
    path: &str,
) -> Result<WsStream<H2Io>, ClientError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.map_err(|e| transport(&e))?;
    #[allow(
        clippy::disallowed_methods,
        reason = "the HTTP/2 connection driver; it ends with the connection"
    )]
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "h2 connection ended");
        }
    });
    let mut client = client.ready().await.map_err(|e| transport(&e))?;
    // The server announces SETTINGS_ENABLE_CONNECT_PROTOCOL in its first SETTINGS frame.
    for _ in 0..100 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if !client.is_extended_connect_protocol_enabled() {
        return Err(ClientError::Transport(
            "server does not support extended CONNECT".to_owned(),
        ));
    }
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://{authority}{path}"))
        .header("sec-websocket-version", "13")
        .body(())
        .map_err(|e| transport(&e))?;
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (response, send) = client
        .send_request(request, false)
        .map_err(|e| transport(&e))?;
    let response = response.await.map_err(|e| transport(&e))?;
    if response.status() != http::StatusCode::OK {
        return Err(ClientError::Transport(format!(
            "extended CONNECT answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let io = H2Io {
        send,
        recv: response.into_body(),
        pending: Bytes::new(),
    };
    let socket = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    Ok(WsStream { socket })
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for WsStream<T> {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.socket.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(bytes))) if !bytes.is_empty() => return Ok(Some(bytes)),
                Some(Ok(Message::Text(text))) => {
                    let bytes = STANDARD
                        .decode(text.as_str())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    return Ok(Some(bytes.into()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.socket
            .send(Message::Binary(bytes))
            .await
            .map_err(io::Error::other)
    }
}

/// One HTTP/2 stream as an `AsyncRead + AsyncWrite` byte pipe (for the WebSocket over it).
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
}

impl std::fmt::Debug for H2Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Io").finish_non_exhaustive()
    }
}

fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io().unwrap_or_else(|| io::Error::other("h2 i/o"))
    } else {
        io::Error::other(e)
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(bytes)) => {
                    let _ = self.recv.flow_control().release_capacity(bytes.len());
                    self.pending = bytes;
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => {}
                Some(Ok(granted)) => {
                    let n = granted.min(buf.len());
                    let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    self.send.send_data(chunk, false).map_err(h2_io)?;
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "stream closed",
                    )));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
