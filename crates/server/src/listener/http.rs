//! The accept loop: TCP → TLS 1.3 → HTTP/2 or HTTP/1.1 on one port.
//!
//! * At most `max_connections` connections are open at once (a semaphore permit per
//!   connection); further clients wait in the kernel's backlog.
//! * At most `bounds.connections_per_ip` of them from one address ([`PerIp`]); a connection
//!   beyond that is closed at once and counted as a refusal.
//! * A client that does not finish the TLS handshake within `tls_handshake_timeout` is dropped.
//! * A connection with no request or `/connect` session in progress for
//!   `bounds.idle_connection_timeout` is closed ([`Activity`]); a WebSocket session keeps its
//!   connection's slots until it ends.
//! * The HTTP version follows the first bytes (hyper-util `auto`): an HTTP/2 preface gets
//!   HTTP/2, anything else HTTP/1.1 — so clients that negotiated ALPN `h2`, and clients that
//!   sent no ALPN at all, are both served.
//! * On shutdown the listener closes, open connections are asked to finish (HTTP/2 GOAWAY,
//!   HTTP/1.1 close after the current response) and get `shutdown_grace` before being cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::activity::{self, Activity};
use super::per_ip::{IpSlot, PerIp};
use crate::config::Bound;
use crate::metrics::Metrics;

/// Bounds of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time open connections get to finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// `session.keepalive`: HTTP/2 PING cadence; a connection whose peer does not answer a
    /// PING within this time is closed (with every `/connect` stream on it).
    pub keepalive: Duration,
    /// `bounds.connections_per_ip`: connections open at once from one address.
    pub connections_per_ip: usize,
    /// `bounds.idle_connection_timeout`: how long a connection may have no request or session
    /// in progress.
    pub idle_timeout: Duration,
}

/// Time an idle connection gets to close cleanly (HTTP/2 GOAWAY) before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Time HTTP/1.1 clients get to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    limits: ListenLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = PerIp::new(limits.connections_per_ip);
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = Arc::new(http_builder(limits.keepalive));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connection tasks so the set only holds live ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    back_off_after(&error).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.admit(peer.ip()) else {
            metrics.bound_refusals.count(Bound::ConnectionsPerIp);
            tracing::debug!(%peer, "connections per address exceeded; closed");
            drop(tcp);
            continue;
        };
        connections.spawn(connection(
            Connection {
                tcp,
                peer,
                acceptor: acceptor.clone(),
                router: router.clone(),
                http: Arc::clone(&http),
                handshake_timeout: limits.tls_handshake_timeout,
                idle_timeout: limits.idle_timeout,
                stop: stop_rx.clone(),
                metrics: Arc::clone(&metrics),
            },
            (permit, slot),
        ));
    }

    drop(listener);
    // Receivers only fail to get this if they are all gone, i.e. nothing to drain.
    let _ = stop_tx.send(true);
    while connections.try_join_next().is_some() {}
    tracing::info!(
        open = connections.len(),
        grace_secs = limits.shutdown_grace.as_secs(),
        "stopped accepting; draining connections"
    );
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "grace period over; closing remaining connections"
        );
        connections.shutdown().await;
    }
    tracing::info!("server stopped");
}

/// Concurrent HTTP/2 streams one connection may open.
pub const H2_MAX_STREAMS: u32 = 16;

fn http_builder(keepalive: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        // RFC 8441: WebSocket over HTTP/2 via extended CONNECT.
        .enable_connect_protocol()
        // One connection may carry a session and a few REST calls, not hundreds of sessions:
        // `bounds.connections_per_ip` counts connections, so streams per connection are
        // bounded too.
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(Some(keepalive.max(Duration::from_secs(1))))
        .keep_alive_timeout(keepalive.max(Duration::from_secs(1)));
    builder
}

/// Accept errors are per-connection (reset before accept) or resource exhaustion (out of file
/// descriptors); the latter gets a pause so the loop does not spin.
async fn back_off_after(error: &io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => {
            tracing::debug!(%error, "accept failed");
        }
        _ => {
            tracing::warn!(%error, "accept failed; pausing 100 ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The client's socket address, attached to every request of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// What one connection task needs.
struct Connection {
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    http: Arc<auto::Builder<TokioExecutor>>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

/// Serves one connection; `_slots` free its places when the task ends.
async fn connection(conn: Connection, _slots: (OwnedSemaphorePermit, IpSlot)) {
    let Connection {
        tcp,
        peer,
        acceptor,
        router,
        http,
        handshake_timeout,
        idle_timeout,
        mut stop,
        metrics,
    } = conn;
    let _open = metrics.connection_accepted();
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    let alpn = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    tracing::trace!(%peer, alpn = alpn.as_deref().unwrap_or("none"), "TLS established");

    let activity = Activity::new();
    let service = TowerToHyperService::new(
        router
            .layer(axum::Extension(PeerAddr(peer)))
            .layer(axum::Extension(activity.clone()))
            .layer(axum::middleware::from_fn_with_state(
                activity.clone(),
                activity::track,
            )),
    );
    let served = http.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = stop.changed() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
        () = activity.idle_for(idle_timeout) => {
            metrics.bound_refusals.count(Bound::IdleConnectionTimeout);
            tracing::debug!(%peer, "no request in progress; idle connection closed");
            served.as_mut().graceful_shutdown();
            match tokio::time::timeout(IDLE_CLOSE_GRACE, served).await {
                Ok(result) => result,
                Err(_elapsed) => Ok(()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
    // An upgraded WebSocket session outlives the HTTP connection it came from: it keeps the
    // connection's places until it ends.
    activity.quiet().await;
}
