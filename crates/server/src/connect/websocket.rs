//! WebSocket mode (RFC 6455 over HTTP/1.1, RFC 8441 extended CONNECT over HTTP/2) as a
//! [`ByteStream`].
//!
//! A pump task owns the socket; the session reads and writes through two bounded channels, so
//! reads stay cancel-safe and the pump alone handles pings, idle time-outs and the close
//! handshake. Inbound Binary messages are raw bytes (no alignment to frames needed), Text
//! messages the standard base64 of raw bytes; every downstream write is one Binary message.
//! Bad input ends the socket with a close code (1007 text not base64, 1009 message too big).

use std::io;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use commucat_link::ByteStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::budget::{ByteBudget, Reserved};

/// Idle time allowed, as a multiple of the ping cadence (`session.keepalive`).
const IDLE_PINGS: u32 = 3;
/// Time the peer gets to answer our Close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The session's side of a WebSocket.
#[derive(Debug)]
pub(crate) struct WsStream {
    upstream: mpsc::Receiver<io::Result<Bytes>>,
    downstream: mpsc::Sender<(Bytes, Reserved)>,
    budget: ByteBudget,
}

impl WsStream {
    /// Starts the pump for `socket`. The server pings every `keepalive` and closes the socket
    /// (1001) when nothing — not even a pong — arrived for three of them. At most `buffer`
    /// messages and `budget` bytes wait for a client that does not read.
    pub(crate) fn spawn(
        socket: WebSocket,
        buffer: usize,
        budget: ByteBudget,
        keepalive: Duration,
    ) -> Self {
        let (up_tx, up_rx) = mpsc::channel(buffer.max(1));
        let (down_tx, down_rx) = mpsc::channel(buffer.max(1));
        #[allow(
            clippy::disallowed_methods,
            reason = "the pump ends with the socket or when the (tracked) session drops its side"
        )]
        tokio::spawn(pump(socket, up_tx, down_rx, keepalive));
        Self {
            upstream: up_rx,
            downstream: down_tx,
            budget,
        }
    }
}

impl ByteStream for WsStream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        self.upstream.recv().await.transpose()
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        let reserved = self.budget.reserve(bytes.len()).await?;
        self.downstream
            .send((bytes, reserved))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed"))
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // Best effort: the peer may already be gone.
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    // The closing handshake: wait a little for the peer's Close before dropping the socket.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// What the pump's inbound side does with one message from the socket.
enum Inbound {
    /// Bytes for the session.
    Bytes(Bytes),
    /// Nothing for the session (control message, empty message).
    Skip,
    /// The socket is done; `Some` carries the error the session reads last.
    End(Option<io::Error>),
}

async fn pump(
    mut socket: WebSocket,
    up: mpsc::Sender<io::Result<Bytes>>,
    mut down: mpsc::Receiver<(Bytes, Reserved)>,
    keepalive: Duration,
) {
    let keepalive = keepalive.max(Duration::from_secs(1));
    let idle = keepalive * IDLE_PINGS;
    let mut last_inbound = Instant::now();
    let mut next_ping = last_inbound + keepalive;
    // Bytes read from the socket that the session has not taken yet. While they wait, the
    // socket is not read (back-pressure on the client) but `down` keeps being drained: the
    // session may itself be waiting to write before it reads again.
    let mut pending: Option<Bytes> = None;
    loop {
        tokio::select! {
            inbound = socket.recv(), if pending.is_none() => {
                last_inbound = Instant::now();
                match classify(&mut socket, inbound).await {
                    Inbound::Bytes(bytes) => pending = Some(bytes),
                    Inbound::Skip => {}
                    Inbound::End(error) => {
                        if let Some(error) = error {
                            let _ = up.send(Err(error)).await;
                        }
                        break;
                    }
                }
            }
            permit = up.reserve(), if pending.is_some() => match (permit, pending.take()) {
                (Ok(permit), Some(bytes)) => permit.send(Ok(bytes)),
                // The session is gone.
                _ => break,
            },
            outbound = down.recv() => match outbound {
                Some((bytes, reserved)) => {
                    let sent = socket.send(Message::Binary(bytes)).await;
                    drop(reserved);
                    if sent.is_err() {
                        break;
                    }
                }
                None => {
                    close(&mut socket, close_code::NORMAL, "session ended").await;
                    break;
                }
            },
            () = tokio::time::sleep_until(next_ping) => {
                if last_inbound.elapsed() >= idle {
                    close(&mut socket, close_code::AWAY, "idle timeout").await;
                    break;
                }
                next_ping = Instant::now() + keepalive;
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Turns one socket read into what the session gets; closes the socket on bad input.
async fn classify(
    socket: &mut WebSocket,
    inbound: Option<Result<Message, axum::Error>>,
) -> Inbound {
    match inbound {
        None | Some(Ok(Message::Close(_))) => Inbound::End(None),
        Some(Ok(Message::Binary(bytes))) if bytes.is_empty() => Inbound::Skip,
        Some(Ok(Message::Binary(bytes))) => Inbound::Bytes(bytes),
        Some(Ok(Message::Text(text))) => match STANDARD.decode(text.as_str()) {
            Ok(bytes) if bytes.is_empty() => Inbound::Skip,
            Ok(bytes) => Inbound::Bytes(Bytes::from(bytes)),
            Err(_) => {
                close(socket, close_code::INVALID, "text message is not base64").await;
                Inbound::End(Some(bad("websocket text message is not base64")))
            }
        },
        // Pings are answered by the socket itself.
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Skip,
        Some(Err(error)) => {
            let error = error.into_inner();
            let too_big = matches!(
                error.downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
                Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
            );
            if too_big {
                close(socket, close_code::SIZE, "message too big").await;
            }
            tracing::debug!(%error, "websocket read failed");
            Inbound::End(Some(bad(&error.to_string())))
        }
    }
}

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
