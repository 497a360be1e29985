//! The HTTP/3 listener: QUIC on UDP, at the TCP listener's port, with the same certificate.
//!
//! Every request is handed to the same router as the TCP listener's ([`super::h3_bridge`]), so
//! `/connect` over HTTP/3 runs the same session code (the request body is the session's
//! upstream, the response body its downstream) and REST calls answer as they do over HTTP/2.
//!
//! Bounds, like the TCP listener's:
//! * at most `limits.max_connections` QUIC connections at once; a further one is refused
//!   (QUIC `CONNECTION_REFUSED`) rather than queued: UDP has no backlog;
//! * at most `bounds.connections_per_ip` of them per address (IPv6 per /64), refused the same
//!   way and counted as a `connections_per_ip` refusal;
//! * at most [`H3_MAX_STREAMS`] concurrent request streams per connection (QUIC stream flow
//!   control: the peer cannot open more), 3 unidirectional streams each way beyond h3's own;
//! * the QUIC handshake must finish within `limits.tls_handshake_timeout`;
//! * a connection with no request in progress for `bounds.idle_connection_timeout` is closed
//!   (GOAWAY, then close); one from which nothing arrives (not even the keep-alive PINGs both
//!   ends send every `session.keepalive`) for the QUIC idle time-out is dropped;
//! * `bounds.transport_buffer_bytes` bounds the bytes QUIC holds unacknowledged per connection;
//! * quinn's anti-amplification limit stays on: before a client's address is validated the
//!   server sends at most three times the bytes it received from it (RFC 9000 §8).
//!
//! On shutdown the endpoint stops accepting, each connection sends GOAWAY and gets
//! `server.shutdown_grace` for its requests to end (the drain ends every session at once),
//! then the endpoint closes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::activity::Activity;
use super::http::ListenLimits;
use super::per_ip::{IpSlot, PerIp};
use crate::config::Bound;
use crate::metrics::Metrics;

/// Concurrent HTTP/3 request streams one connection may open (as HTTP/2's).
pub const H3_MAX_STREAMS: u32 = super::http::H2_MAX_STREAMS;

/// Unidirectional streams a peer may open: h3's control stream and the two QPACK streams.
const H3_MAX_UNI_STREAMS: u32 = 3;

/// Largest request header section accepted, bytes.
const MAX_FIELD_SECTION: u64 = 16 * 1024;

/// Time an idle connection gets to close cleanly after GOAWAY.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the QUIC endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    /// The rustls configuration is unusable for QUIC.
    #[error("QUIC TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be used.
    #[error("QUIC endpoint: {0}")]
    Endpoint(#[from] std::io::Error),
}

/// The quinn server configuration: the TLS identity and the transport bounds.
///
/// # Errors
/// A rustls configuration QUIC cannot use.
pub fn server_config(
    tls: rustls::ServerConfig,
    limits: &ListenLimits,
    send_window: u64,
) -> Result<quinn::ServerConfig, H3Error> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| H3Error::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport(limits, send_window)));
    // Connections mid-handshake wait in quinn; bounded like accepted ones.
    config.max_incoming(limits.max_connections.max(1));
    Ok(config)
}

/// The transport parameters the server offers.
fn transport(limits: &ListenLimits, send_window: u64) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(H3_MAX_STREAMS.into());
    transport.max_concurrent_uni_streams(H3_MAX_UNI_STREAMS.into());
    let keepalive = limits.keepalive.max(Duration::from_secs(1));
    transport.keep_alive_interval(Some(keepalive));
    let idle = limits.idle_timeout.max(keepalive.saturating_mul(3));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    transport.send_window(send_window.max(64 * 1024));
    transport
}

/// Accepts QUIC connections on `endpoint` until `shutdown` completes, then drains.
pub async fn serve(
    endpoint: quinn::Endpoint,
    router: Router,
    limits: ListenLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = PerIp::new(limits.connections_per_ip);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let incoming = tokio::select! {
            biased;
            () = &mut shutdown => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let peer = incoming.remote_address();
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%peer, "QUIC connections at the limit; refused");
            incoming.refuse();
            continue;
        };
        let Some(slot) = per_ip.admit(peer.ip()) else {
            metrics.bound_refusals.count(Bound::ConnectionsPerIp);
            tracing::debug!(%peer, "connections per address exceeded; QUIC connection refused");
            incoming.refuse();
            continue;
        };
        connections.spawn(connection(
            incoming,
            Context {
                router: router.clone(),
                limits,
                stop: stop_rx.clone(),
                metrics: Arc::clone(&metrics),
            },
            (permit, slot),
        ));
    }
    let _ = stop_tx.send(true);
    while connections.try_join_next().is_some() {}
    tracing::info!(
        open = connections.len(),
        "HTTP/3: stopped accepting; draining"
    );
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"server stopping");
    // Lets the CONNECTION_CLOSE frames go out; bounded in case a peer never answers.
    let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, endpoint.wait_idle()).await;
}

/// What one connection task needs.
struct Context {
    router: Router,
    limits: ListenLimits,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

type H3Connection = h3::server::Connection<h3_quinn::Connection, Bytes>;

/// Serves one QUIC connection; `_slots` free its places when the task ends.
async fn connection(
    incoming: quinn::Incoming,
    context: Context,
    _slots: (OwnedSemaphorePermit, IpSlot),
) {
    let Context {
        router,
        limits,
        mut stop,
        metrics,
    } = context;
    let peer = incoming.remote_address();
    let _open = metrics.connection_accepted();
    let handshake = async {
        let quic = incoming.await.map_err(|e| e.to_string())?;
        h3::server::builder()
            .max_field_section_size(MAX_FIELD_SECTION)
            .build::<_, Bytes>(h3_quinn::Connection::new(quic))
            .await
            .map_err(|e| e.to_string())
    };
    let mut h3: H3Connection = tokio::select! {
        result = tokio::time::timeout(limits.tls_handshake_timeout, handshake) => match result {
            Ok(Ok(h3)) => h3,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "QUIC handshake failed");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, "QUIC handshake timed out");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    let activity = Activity::new();
    let mut requests = JoinSet::new();
    let closing = loop {
        while requests.try_join_next().is_some() {}
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    requests.spawn(super::h3_bridge::request(
                        resolver,
                        router.clone(),
                        peer,
                        activity.clone(),
                    ));
                }
                Ok(None) => break false,
                Err(error) => {
                    tracing::debug!(%peer, %error, "HTTP/3 connection ended");
                    break false;
                }
            },
            _ = stop.changed() => break true,
            () = activity.idle_for(limits.idle_timeout) => {
                metrics.bound_refusals.count(Bound::IdleConnectionTimeout);
                tracing::debug!(%peer, "no request in progress; idle HTTP/3 connection closed");
                break true;
            }
        }
    };
    if closing {
        // GOAWAY: no new requests; those in progress end (sessions end with the drain).
        if let Err(error) = h3.shutdown(0).await {
            tracing::debug!(%peer, %error, "HTTP/3 GOAWAY failed");
        }
    }
    // The connection is driven (control streams, refused late requests) until the requests in
    // progress have ended; dropping it then closes the QUIC connection.
    let drive = async {
        loop {
            match h3.accept().await {
                Ok(Some(_late)) => {}
                Ok(None) | Err(_) => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        () = drive => {}
        () = async { while requests.join_next().await.is_some() {} } => {}
    }
}
