//! Plain-TCP WebSocket echo server for the Autobahn fuzzing client (see `docs/autobahn.md`).
//!
//! It runs the same stack as `/connect` in WebSocket mode — hyper-util's auto builder with
//! upgrades, axum 0.8's `WebSocketUpgrade` (tungstenite underneath) with the message and frame
//! size limits set to the default `limits.max_frame_len` — but without TLS and with an echo
//! handler instead of a CCP-1 session, since the suite expects an echo server.
//!
//! ```text
//! cargo run --release --example ws_echo -p commucat-server -- [127.0.0.1:9001]
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use commucat_server::Config;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:9001";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned())
        .parse()?;
    let max_len = Config::default().limits.max_frame_len;
    let router = Router::new().route(
        "/",
        get(move |upgrade: WebSocketUpgrade| async move { upgrade_echo(upgrade, max_len) }),
    );
    let listener = TcpListener::bind(addr).await?;
    println!("ws_echo listening on ws://{addr} (max message/frame {max_len} bytes)");
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept failed: {error}");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        #[allow(
            clippy::disallowed_methods,
            reason = "an example server without a shutdown drain: each connection task ends with its connection"
        )]
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .await
            {
                eprintln!("connection ended with an error: {error}");
            }
        });
    }
}

/// Same configuration as `crates/server/src/connect/mod.rs` applies to `/connect`.
fn upgrade_echo(upgrade: WebSocketUpgrade, max_len: usize) -> Response {
    upgrade
        .max_message_size(max_len)
        .max_frame_size(max_len)
        .on_upgrade(echo)
}

/// Echoes Text and Binary messages; tungstenite answers pings and the close handshake itself.
async fn echo(mut socket: WebSocket) {
    // A protocol error ends the loop like the end of the stream does.
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            // After a Close, the next `recv` flushes tungstenite's queued Close reply and ends.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}
