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

/// Idle time allowed, as a multiple of the ping cadence (`session.keepalive`).
const IDLE_PINGS: u32 = 3;
/// Time the peer gets to answer our Close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The session's side of a WebSocket.
#[derive(Debug)]
pub struct WsStream {
    upstream: mpsc::Receiver<io::Result<Bytes>>,
    downstream: mpsc::Sender<Bytes>,
}

impl WsStream {
    /// Starts the pump for `socket`. The server pings every `keepalive` and closes the socket
    /// (1001) when nothing — not even a pong — arrived for three of them.
    pub fn spawn(socket: WebSocket, buffer: usize, keepalive: Duration) -> Self {
        let (up_tx, up_rx) = mpsc::channel(buffer.max(1));
        let (down_tx, down_rx) = mpsc::channel(buffer.max(1));
        tokio::spawn(pump(socket, up_tx, down_rx, keepalive));
        Self {
            upstream: up_rx,
            downstream: down_tx,
        }
    }
}

impl ByteStream for WsStream {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        self.upstream.recv().await.transpose()
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.downstream
            .send(bytes)
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

async fn pump(
    mut socket: WebSocket,
    up: mpsc::Sender<io::Result<Bytes>>,
    mut down: mpsc::Receiver<Bytes>,
    keepalive: Duration,
) {
    let keepalive = keepalive.max(Duration::from_secs(1));
    let idle = keepalive * IDLE_PINGS;
    let mut last_inbound = Instant::now();
    let mut next_ping = last_inbound + keepalive;
    loop {
        tokio::select! {
            inbound = socket.recv() => {
                last_inbound = Instant::now();
                let bytes = match inbound {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Text(text))) => match STANDARD.decode(text.as_str()) {
                        Ok(bytes) => Bytes::from(bytes),
                        Err(_) => {
                            close(&mut socket, close_code::INVALID, "text message is not base64").await;
                            let _ = up.send(Err(bad("websocket text message is not base64"))).await;
                            break;
                        }
                    },
                    // Pings are answered by the socket itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Err(error)) => {
                        // tungstenite's `Error::Capacity`, seen through axum's boxed error.
                        let too_big = error.to_string().contains("Space limit exceeded");
                        if too_big {
                            close(&mut socket, close_code::SIZE, "message too big").await;
                        }
                        tracing::debug!(%error, "websocket read failed");
                        let _ = up.send(Err(bad(&error.to_string()))).await;
                        break;
                    }
                };
                if !bytes.is_empty() && up.send(Ok(bytes)).await.is_err() {
                    break;
                }
            }
            outbound = down.recv() => match outbound {
                Some(bytes) => {
                    if socket.send(Message::Binary(bytes)).await.is_err() {
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

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
