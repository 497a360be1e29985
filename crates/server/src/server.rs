//! [`Server`]: a bound, ready-to-serve instance, and [`ServerHandle`] for one running in the
//! background.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use commucat_store::{PostgresStore, SqliteStore, Store};

use crate::api::{self, AppState, ServerInfo};
use crate::cluster::Cluster;
use crate::config::{Config, as_usize};
use crate::error::ServerError;
use crate::federation::Federation;
use crate::keys::ServerKeys;
use crate::keys::keyring::NoiseKeyring;
use crate::keys::pq::PqKeys;
use crate::keys::secrets;
use crate::ledger::Ledger;
use crate::listener::http::{self, ListenLimits};
use crate::live::Live;
use crate::reload::{KeyReloader, ReloadError, ReloadSources, Reloaded};
use crate::router::presence::{LocalPresence, Presence};
use crate::router::presence_redis::RedisPresence;
use crate::session::Sessions;
use crate::session::established::{Messaging, MessagingSettings};
use crate::session::handshake::{HandshakeSettings, Handshaker, NoiseKey};
use crate::session::ik_replay::ReplayCache;
use crate::tls::{CertSource, TlsIdentity};

/// A server whose keys and certificate are loaded and whose socket is bound.
#[derive(Debug)]
pub struct Server {
    config: Config,
    keys: ServerKeys,
    pq: Arc<PqKeys>,
    keyring: NoiseKeyring,
    reloader: KeyReloader,
    ledger: Ledger,
    tls: TlsIdentity,
    tls_config: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    /// The HTTP/3 listener's UDP socket (same port as `listener`), when `server.http3` is on.
    udp: Option<std::net::UdpSocket>,
    local_addr: SocketAddr,
    store: OpenStore,
    presence: Arc<dyn Presence>,
    /// The link to the other nodes (with Redis).
    cluster: Option<Arc<Cluster>>,
    /// Cancelled by [`ServerHandle::kill`].
    crash: CancellationToken,
    /// Federation with peer domains (its delivery workers start with `run`).
    federation: Arc<Federation>,
}

/// Name of the embedded database inside the data directory (when `store.url` is unset).
pub const DATABASE_FILE: &str = "commucat.db";

/// The session service for `config`, `keys`, `store` and the presence registry, accepting
/// only the current Noise key and recording no ledger.
#[must_use]
pub fn sessions(
    config: &Config,
    keys: &ServerKeys,
    store: Arc<dyn Store>,
    presence: Arc<dyn Presence>,
) -> Sessions {
    let accepted = NoiseKeyring::single(keys.noise.clone()).accepted(None, 0);
    let noise_keys = Live::new(crate::reload::handshake_keys(&accepted));
    sessions_with(
        config,
        keys,
        noise_keys,
        Ledger::off(),
        store,
        presence,
        None,
        None,
    )
}

/// The session service accepting the Noise keys in `noise_keys` (current first; a key reload
/// replaces them), recording in `ledger` and federating with `federation`'s peers if given.
#[must_use]
#[allow(
    clippy::too_many_arguments,
    reason = "each is one independent piece of the wiring; the server builds it in one place"
)]
pub fn sessions_with(
    config: &Config,
    keys: &ServerKeys,
    noise_keys: Live<Vec<NoiseKey>>,
    ledger: Ledger,
    store: Arc<dyn Store>,
    presence: Arc<dyn Presence>,
    cluster: Option<Arc<Cluster>>,
    federation: Option<Arc<Federation>>,
) -> Sessions {
    use crate::clock::secs;
    let settings = HandshakeSettings {
        domain: config.server.domain.clone(),
        prologue: config.crypto.prologue.as_bytes().to_vec(),
        noise_keys,
        device_ca: keys.device_ca.clone(),
        auto_approve: config.devices.auto_approve,
        max_auto_devices_per_user: config.devices.max_auto_devices_per_user,
        certificate_validity_secs: secs(config.devices.certificate_validity),
        renewal_margin_secs: secs(config.devices.renewal_margin),
        session_ttl_secs: secs(config.session.ttl),
        keepalive_secs: config.session.keepalive.as_secs(),
        clock_skew_secs: commucat_keys::DEFAULT_MAX_CLOCK_SKEW_SECS,
        profile: crate::profile::ProfileBounds::from_settings(&config.bounds),
        pq_hybrid: config.crypto.pq_hybrid,
        adaptive_obf: config.crypto.adaptive_obf,
        obf_max_padding: config.crypto.obf_max_padding,
    };
    let mut messaging = Messaging::new(
        Arc::clone(&store),
        presence,
        MessagingSettings::from_config(config),
    )
    .with_ledger(ledger.clone())
    .with_cluster(cluster);
    if let Some(federation) = federation {
        messaging = messaging.with_federation(federation);
    }
    let metrics = Arc::clone(&messaging.hub.metrics);
    let shared = Arc::clone(&messaging.presence);
    let transports = crate::transport::TransportManager::new(
        crate::transport::ManagerSettings {
            max_networks: config.transport.max_networks,
            deflection_window: config.transport.deflection_window,
            http3: config.server.http3,
        },
        Arc::clone(&metrics),
    );
    Sessions::new(
        Handshaker::new(Arc::new(settings), store)
            .with_ledger(ledger)
            .with_metrics(metrics)
            .with_replay_cache(Arc::new(ReplayCache::new(
                as_usize(config.bounds.ik_replay_entries),
                config.bounds.ik_replay_retention,
            )))
            .with_shared_replays(shared),
        Arc::new(messaging),
        config.session.handshake_timeout,
        config.limits.max_frame_len,
        transports,
    )
}

/// The store `config` asks for, with its pending migrations applied: PostgreSQL when
/// `store.url` is set (connected now, so an unreachable database stops startup), otherwise the
/// SQLite file in the data directory. The server and the offline `commucat` commands share this.
///
/// # Errors
/// [`ServerError::Store`] naming the database.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    Ok(OpenStore::open(config).await?.shared())
}

/// The store of a server, kept concrete so that shutdown can close it.
#[derive(Debug)]
enum OpenStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl OpenStore {
    async fn open(config: &Config) -> Result<Self, ServerError> {
        let Some(url) = &config.store.url else {
            let path = config.server.data_dir.join(DATABASE_FILE);
            let store = SqliteStore::open_with(&path, config.store.group_commit())
                .await
                .map_err(|source| ServerError::Store {
                    location: path.display().to_string(),
                    source,
                })?;
            tracing::info!(path = %path.display(), "store: sqlite");
            return Ok(Self::Sqlite(Arc::new(store)));
        };
        Ok(Self::Postgres(Arc::new(
            connect_postgres(config, url).await?,
        )))
    }

    /// A handle for the sessions and the API.
    fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => Arc::clone(store) as Arc<dyn Store>,
            Self::Postgres(store) => Arc::clone(store) as Arc<dyn Store>,
        }
    }

    /// Closes the pool once every checked-out connection is back: nothing else is written.
    async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

async fn connect_postgres(config: &Config, url: &str) -> Result<PostgresStore, ServerError> {
    let shown = crate::config::redact_url(url);
    let settings = config.store.postgres();
    let store = PostgresStore::connect(url, &settings)
        .await
        .map_err(|source| ServerError::Store {
            location: shown.clone(),
            source,
        })?;
    tracing::info!(
        url = %shown,
        schema = settings.schema.as_deref().unwrap_or("(search_path)"),
        max_connections = settings.max_connections,
        acquire_timeout_secs = settings.acquire_timeout.as_secs(),
        "store: postgres"
    );
    Ok(store)
}

/// The presence registry `config` asks for: Redis when `presence.redis_url` is set (connected
/// now, so a wrong URL stops startup), otherwise in-process.
async fn presence_registry(config: &Config) -> Result<Arc<dyn Presence>, ServerError> {
    let Some(url) = &config.presence.redis_url else {
        return Ok(Arc::new(LocalPresence::new()));
    };
    let registry = RedisPresence::connect(url, &config.presence.key_prefix)
        .await
        .map_err(|source| ServerError::Presence {
            url: crate::config::redact_url(url),
            source,
        })?;
    tracing::info!(
        url = %crate::config::redact_url(url),
        key_prefix = %config.presence.key_prefix,
        "presence registry: redis"
    );
    Ok(Arc::new(registry))
}

/// The link to the other nodes `config` asks for: with `presence.redis_url`, connected and
/// subscribed now (so an unreachable Redis stops startup); none otherwise.
async fn cluster_link(config: &Config) -> Result<Option<Arc<Cluster>>, ServerError> {
    let Some(url) = &config.presence.redis_url else {
        return Ok(None);
    };
    let node = config.presence.node_id.clone().unwrap_or_default();
    let cluster = Cluster::connect(
        url,
        &config.presence.key_prefix,
        &node,
        config.limits.max_frame_len,
    )
    .await
    .map_err(|source| ServerError::Presence {
        url: crate::config::redact_url(url),
        source,
    })?;
    tracing::info!(node = %node, "cluster link: redis pub/sub");
    Ok(Some(cluster))
}

impl Server {
    /// Validates `config`, creates the data directory (mode 0700), loads or generates the
    /// keys and the TLS certificate, and binds the listen address.
    pub async fn bind(mut config: Config) -> Result<Self, ServerError> {
        config.validate()?;
        // One id for this process, in routes and on the cluster's channels.
        if config.presence.node_id.is_none() {
            config.presence.node_id = Some(format!("node-{}", &crate::registry::random_id()[..16]));
        }
        secrets::create_private_dir(&config.server.data_dir).map_err(ServerError::DataDir)?;
        let keys = ServerKeys::load_or_generate(&config.server.data_dir)?;
        let federation_key = crate::keys::federation::load_or_generate(&config.server.data_dir)?;
        let federation_public = federation_key.public_key();
        let pq = Arc::new(PqKeys::load_or_generate(&config.server.data_dir)?);
        let keyring = NoiseKeyring::load(&config.server.data_dir, keys.noise.clone())?;
        let tls = TlsIdentity::load_or_generate(&config)?;
        let tls_config = tls.server_config()?;
        let store = OpenStore::open(&config).await?;
        // The peer registry in the store, merged with the configured peers.
        let peer_rows =
            store
                .shared()
                .federation_peers()
                .await
                .map_err(|source| ServerError::Store {
                    location: "federation_peer".to_owned(),
                    source,
                })?;
        let federation_settings = crate::federation::registry::merge(
            &config.federation,
            &peer_rows,
            &config.server.domain,
        )?;
        let federation_rotation = crate::keys::federation::load_rotation(
            &config.server.data_dir,
            &federation_key,
            crate::clock::unix_now(),
        )?;
        let federation = Arc::new(
            Federation::new(&config.server.domain, federation_key, federation_settings)
                .with_rotation(federation_rotation),
        );
        let presence = presence_registry(&config).await?;
        let cluster = cluster_link(&config).await?;
        let ledger = Ledger::start(&config.ledger, &config.server.data_dir)?;
        let reloader = KeyReloader::new(
            ReloadSources {
                data_dir: config.server.data_dir.clone(),
                grace: config.crypto.noise_key_grace,
                domain: config.server.domain.clone(),
                device_ca_public: keys.device_ca.public_key(),
                pq: Arc::clone(&pq),
                ledger: ledger.clone(),
                keyring: &keyring,
                server_info: ServerInfo::new(&config, &keys, &pq).with_federation(
                    federation.domain(),
                    config.federation.enabled,
                    &federation_public,
                    federation.rotation(),
                ),
            },
            crate::clock::unix_now(),
        )
        .map_err(ServerError::PostQuantum)?;
        let addr = config.server.listen;
        let (listener, udp, local_addr) = bind_listeners(addr, config.server.http3).await?;
        Ok(Self {
            config,
            keys,
            pq,
            keyring,
            reloader,
            ledger,
            tls,
            tls_config,
            listener,
            udp,
            local_addr,
            store,
            presence,
            cluster,
            crash: CancellationToken::new(),
            federation,
        })
    }

    /// This domain's federation public key (Ed25519), which peers pin.
    #[must_use]
    pub fn federation_public_key(&self) -> [u8; 32] {
        self.federation.key().public_key()
    }

    /// The bound address (with the real port when the configured port was 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Noise keys as loaded at startup: current version and the superseded ones.
    #[must_use]
    pub fn keyring(&self) -> &NoiseKeyring {
        &self.keyring
    }

    /// Reloads the Noise keys of this server once it runs (see [`crate::reload`]); for a
    /// SIGHUP listener such as [`crate::reload::reload_on_hangup`].
    #[must_use]
    pub fn key_reloader(&self) -> KeyReloader {
        self.reloader.clone()
    }

    /// The server's long-term keys.
    #[must_use]
    pub fn keys(&self) -> &ServerKeys {
        &self.keys
    }

    /// The server's post-quantum keys.
    #[must_use]
    pub fn pq_keys(&self) -> &PqKeys {
        &self.pq
    }

    /// SHA-256 fingerprint of the TLS certificate (`AB:CD:…`).
    #[must_use]
    pub fn cert_fingerprint(&self) -> &str {
        &self.tls.fingerprint
    }

    /// The TLS certificate file (PEM) clients can trust or pin.
    #[must_use]
    pub fn cert_path(&self) -> &Path {
        &self.tls.cert_path
    }

    /// Serves until `shutdown` completes, then stops accepting and drains: open connections get
    /// up to `server.shutdown_grace` to finish; every session is told to finish at once, queues
    /// what it holds for its device and is waited for, up to `server.drain_deadline`; then the
    /// ledger is flushed and the store closed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Self {
            config,
            keys,
            pq,
            keyring,
            reloader,
            ledger,
            tls,
            tls_config,
            listener,
            udp,
            local_addr,
            store,
            presence,
            cluster,
            crash,
            federation,
        } = self;
        let acceptor = TlsAcceptor::from(tls_config);
        let noise_keys = reloader.handshake_cell();
        let accepted = noise_keys.load().len();
        let cert_kind = match tls.source {
            CertSource::Configured => "configured",
            CertSource::DevReused => "dev (reused)",
            CertSource::DevGenerated => "dev (generated)",
        };
        tracing::info!(
            listen = %local_addr,
            domain = %config.server.domain,
            data_dir = %config.server.data_dir.display(),
            cert = %tls.cert_path.display(),
            cert_kind,
            cert_sha256 = %tls.fingerprint,
            noise_public = %hex::encode(keys.noise.public()),
            noise_key_version = keyring.current_version,
            noise_keys_accepted = accepted,
            device_ca_public = %keys.device_ca.public_key_hex(),
            http3 = udp.is_some(),
            "commucat listening (TLS 1.3; HTTP/2 and HTTP/1.1; HTTP/3 when http3 is on)"
        );
        report_reality(&config.transport);
        #[allow(
            clippy::disallowed_methods,
            reason = "the janitor holds nothing to drain; it is aborted once the sessions are done"
        )]
        let janitor = tokio::spawn(crate::janitor::run(
            store.shared(),
            crate::janitor::PURGE_INTERVAL,
        ));
        let mut rest =
            api::RestSettings::new(&config, &keys, &pq).map_err(ServerError::PostQuantum)?;
        rest.p2p.relay_port = local_addr.port();
        rest.p2p.bundle = reloader.bundle_cell();
        let sessions = sessions_with(
            &config,
            &keys,
            noise_keys,
            ledger.clone(),
            store.shared(),
            presence,
            cluster.clone(),
            Some(Arc::clone(&federation)),
        );
        if let Some(cluster) = &cluster {
            let limits = sessions.messaging().settings.channel_limits();
            cluster.listen(Arc::clone(sessions.hub()), limits);
        }
        let workers = crate::federation::delivery::workers(&federation, &store.shared(), &ledger)?;
        let mut deliveries = tokio::task::JoinSet::new();
        for worker in workers {
            tracing::info!(peer = worker.domain(), "federation delivery started");
            deliveries.spawn(worker.run());
        }
        let metrics = Arc::clone(&sessions.hub().metrics);
        let drain = sessions.drain().clone();
        let rest = Arc::new(rest);
        #[allow(
            clippy::disallowed_methods,
            reason = "the limiter sweep holds nothing to drain; it is aborted with the janitor"
        )]
        let sweep = tokio::spawn(api::rate_limit::sweep(
            Arc::clone(&rest),
            api::rate_limit::SWEEP_INTERVAL,
        ));
        let state = AppState {
            server_info: reloader.server_info_cell(),
            rest,
            sessions,
            connect: crate::connect::ConnectSettings {
                keepalive: config.session.keepalive,
                max_frame_len: config.limits.max_frame_len,
                transport_buffer_bytes: crate::config::as_usize(
                    config.bounds.transport_buffer_bytes,
                ),
            },
        };
        let router = api::router_with(state.clone(), crate::console::routes(state));
        let limits = ListenLimits {
            max_connections: config.limits.max_connections,
            tls_handshake_timeout: config.limits.tls_handshake_timeout,
            shutdown_grace: config.server.shutdown_grace,
            keepalive: config.session.keepalive,
            connections_per_ip: crate::config::as_usize(config.bounds.connections_per_ip),
            idle_timeout: config.bounds.idle_connection_timeout,
        };
        let quic = match udp {
            Some(udp) => Some((quic_endpoint(udp, &tls, &limits, &config)?, router.clone())),
            None => None,
        };
        let router = match &quic {
            Some(_) => with_alt_svc(router.clone(), local_addr.port()),
            None => router,
        };
        // The shutdown signal stops the listeners and, at the same moment, every session; the
        // drain deadline counts from then, alongside the connections' grace.
        let stopping = drain.clone();
        let stop_quic = CancellationToken::new();
        let stopping_quic = stop_quic.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.stop();
            stopping_quic.cancel();
        };
        let quic_serving = async {
            if let Some((endpoint, router)) = quic {
                crate::listener::h3::serve(
                    endpoint,
                    router,
                    limits,
                    Arc::clone(&metrics),
                    stop_quic.cancelled(),
                )
                .await;
            }
        };
        let sessions_done = async {
            drain.stopping().await;
            drain.finished(config.server.drain_deadline).await
        };
        let serving = async {
            let (tcp, (), drained) = tokio::join!(
                http::serve(
                    listener,
                    acceptor,
                    router,
                    limits,
                    Arc::clone(&metrics),
                    shutdown
                ),
                quic_serving,
                sessions_done
            );
            (tcp, drained)
        };
        let ((), drained) = tokio::select! {
            biased;
            () = crash.cancelled() => {
                // Everything ends where it stands; nothing is flushed or closed.
                drain.kill();
                if let Some(cluster) = &cluster {
                    cluster.abort();
                }
                return Ok(());
            }
            done = serving => done,
        };
        if drained {
            tracing::info!("sessions drained");
        } else {
            tracing::warn!(
                remaining = drain.running(),
                deadline_secs = config.server.drain_deadline.as_secs(),
                "drain deadline over; closing the store with sessions still running"
            );
        }
        janitor.abort();
        sweep.abort();
        // Doorbells for what the sessions queued while ending still go out.
        if let Some(cluster) = &cluster {
            cluster.close().await;
        }
        // Undelivered events stay in the outbox for the next start.
        deliveries.shutdown().await;
        // Records of the drained connections reach the ledger before the process may exit.
        let _ = tokio::task::spawn_blocking(move || ledger.flush()).await;
        store.close().await;
        Ok(())
    }

    /// Runs the server on a background task; stop it with [`ServerHandle::shutdown`].
    #[must_use]
    pub fn spawn(self) -> ServerHandle {
        let local_addr = self.local_addr;
        let reloader = self.reloader.clone();
        let crash = self.crash.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        #[allow(
            clippy::disallowed_methods,
            reason = "the server's own task: its handle is kept and awaited by `shutdown`"
        )]
        let task = tokio::spawn(self.run(async move {
            // A dropped handle stops the server too.
            let _ = stopped.await;
        }));
        ServerHandle {
            local_addr,
            reloader,
            stop,
            crash,
            task,
        }
    }
}

/// Binds the TCP listener at `addr` and, with `http3`, a UDP socket on the same address and
/// the TCP listener's actual port. When the configured port is 0 and that UDP port is taken,
/// another TCP port is tried (a few times).
async fn bind_listeners(
    addr: SocketAddr,
    http3: bool,
) -> Result<(TcpListener, Option<std::net::UdpSocket>, SocketAddr), ServerError> {
    const ATTEMPTS: usize = 16;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        if !http3 {
            return Ok((listener, None, local_addr));
        }
        match std::net::UdpSocket::bind(local_addr) {
            Ok(udp) => return Ok((listener, Some(udp), local_addr)),
            Err(source)
                if addr.port() == 0
                    && attempt < ATTEMPTS
                    && source.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(source) => {
                return Err(ServerError::Bind {
                    addr: local_addr,
                    source,
                });
            }
        }
    }
}

/// The QUIC endpoint on `udp` with the server's certificate.
fn quic_endpoint(
    udp: std::net::UdpSocket,
    tls: &TlsIdentity,
    limits: &ListenLimits,
    config: &Config,
) -> Result<quinn::Endpoint, ServerError> {
    use crate::listener::h3::H3Error;
    let send_window = config.bounds.transport_buffer_bytes;
    let server_config =
        crate::listener::h3::server_config(tls.quic_server_config()?, limits, send_window)?;
    udp.set_nonblocking(true).map_err(H3Error::Endpoint)?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config),
        udp,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(H3Error::Endpoint)?;
    Ok(endpoint)
}

/// `router` with `Alt-Svc: h3=":<port>"` on every response: HTTP/3 is offered at the same
/// port (for a day; clients re-learn it from any later response).
fn with_alt_svc(router: axum::Router, port: u16) -> axum::Router {
    let value = format!("h3=\":{port}\"; ma=86400");
    let value = axum::http::HeaderValue::from_str(&value)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("clear"));
    router.layer(axum::middleware::map_response(
        move |mut response: axum::response::Response| {
            let value = value.clone();
            async move {
                response
                    .headers_mut()
                    .insert(axum::http::header::ALT_SVC, value);
                response
            }
        },
    ))
}

/// A server running on a background task.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    reloader: KeyReloader,
    stop: oneshot::Sender<()>,
    crash: CancellationToken,
    task: JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Re-reads the Noise key files and swaps the keys new handshakes accept, the
    /// server-info keys and the assist bundle; on failure the keys in force stay (see
    /// [`crate::reload`]). What SIGHUP does to `commucat serve`.
    ///
    /// # Errors
    /// Why the keys in force were kept.
    pub async fn reload_keys(&self) -> Result<Reloaded, ReloadError> {
        self.reloader.reload_async().await
    }

    /// Stops the server as a crash would (for tests of node loss): the listener closes, every
    /// session is dropped where it stands without queueing what it holds, routes and presence
    /// stay in Redis until they expire, nothing more is published to other nodes.
    pub async fn kill(self) {
        self.crash.cancel();
        let _ = self.task.await;
    }

    /// Starts graceful shutdown and waits until the server has drained.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        // The task may already have ended; its result is reported below.
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Logs what the configured REALITY material is (nothing when none is configured).
fn report_reality(settings: &crate::config::TransportSettings) {
    use crate::transport::reality::RealityMaterial;
    let material = RealityMaterial::check(settings, crate::clock::unix_now());
    match material {
        RealityMaterial::NotConfigured => {}
        RealityMaterial::Valid { current: true, .. } => {
            tracing::info!("{}", material.describe());
        }
        _ => tracing::warn!("{}", material.describe()),
    }
}
