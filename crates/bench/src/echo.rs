//! The baseline fixture: TLS 1.3 + HTTP/2 on the server's own stack (its TLS configuration,
//! its accept loop with hyper-util's auto builder, axum), where `POST /connect` answers with
//! the request body itself. No protocol logic: what a relay costs beyond this is the
//! protocol's and the server's own work.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use commucat_server::Config;
use commucat_server::listener::http::{ListenLimits, serve};
use commucat_server::tls::TlsIdentity;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A bound echo server.
pub struct EchoServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// SHA-256 fingerprint of its certificate.
    pub fingerprint: String,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EchoServer {
    /// Binds `listen` with the certificate of `data_dir` (the dev certificate there is loaded,
    /// or generated like the server does; the same directory as the server's gives the same
    /// certificate).
    ///
    /// # Errors
    /// Unusable certificate files, or an address that cannot be bound.
    pub async fn bind(listen: SocketAddr, data_dir: &Path) -> Result<Self> {
        let mut config = Config::default();
        config.server.data_dir = data_dir.to_owned();
        let identity = TlsIdentity::load_or_generate(&config)?;
        let acceptor = TlsAcceptor::from(identity.server_config()?);
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            acceptor,
            addr,
            fingerprint: identity.fingerprint,
        })
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let router = Router::new().route("/connect", post(|body: Body| async move { body }));
        self.serve(router, shutdown).await;
    }

    /// Serves `router` instead of the echo on the same stack, until `shutdown` completes (the
    /// tests use it for servers that lose messages on purpose).
    pub async fn serve(self, router: Router, shutdown: impl Future<Output = ()>) {
        let defaults = Config::default();
        let limits = ListenLimits {
            max_connections: defaults.limits.max_connections,
            tls_handshake_timeout: defaults.limits.tls_handshake_timeout,
            shutdown_grace: Duration::from_secs(1),
            keepalive: defaults.session.keepalive,
            connections_per_ip: commucat_server::config::as_usize(
                defaults.bounds.connections_per_ip,
            ),
            idle_timeout: defaults.bounds.idle_connection_timeout,
        };
        // The connection counters are kept as the server keeps them, so the echo pays the same.
        let metrics = std::sync::Arc::default();
        serve(
            self.listener,
            self.acceptor,
            router,
            limits,
            metrics,
            shutdown,
        )
        .await;
    }
}

/// `commucat bench echo-server`: serves until Ctrl-C or SIGTERM.
///
/// # Errors
/// As [`EchoServer::bind`].
pub async fn serve_until_signal(listen: SocketAddr, data_dir: &Path) -> Result<()> {
    let server = EchoServer::bind(listen, data_dir).await?;
    println!(
        "echo listening on https://{} (certificate SHA-256 {})",
        server.addr, server.fingerprint
    );
    server
        .run(commucat_server::listener::signal::shutdown_signal())
        .await;
    Ok(())
}
