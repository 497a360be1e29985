//! Shared helpers for the messaging tests: the real server on 127.0.0.1:0 (restartable on the
//! same data directory and store) on SQLite or PostgreSQL ([`StoreBackend`],
//! [`on_each_store!`]), and SDK clients whose every received byte is also decoded by the
//! deployed client's codec (`commucat-proto` 1.0.41) and checked for the keys the deployed
//! terminal client requires (wire-compat §7.3–§7.4).

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod client;
pub mod deployed;
pub mod modes;
pub mod poll;
pub mod rest;
mod tap;

pub use client::{Client, describe, json_of};
pub use poll::eventually;
pub use tap::Tapped;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use commucat_client::transport;
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust};
use commucat_server::{Config, Server, ServerHandle};
use commucat_store::{SqliteStore, Store};
use serde_json::Value;

#[path = "../../../../store/tests/support/postgres.rs"]
pub mod pg;

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the store behind it

/// The store a test server runs on.
#[derive(Clone)]
pub enum StoreBackend {
    /// The embedded SQLite file in the server's data directory (the default).
    Sqlite,
    /// A schema of its own on the server named by `COMMUCAT_TEST_POSTGRES`, dropped when the
    /// last holder goes.
    Postgres(Arc<pg::TestSchema>),
}

impl StoreBackend {
    /// A fresh PostgreSQL schema; `None` when `COMMUCAT_TEST_POSTGRES` is unset (an unreachable
    /// server fails the test).
    pub async fn postgres() -> Option<Self> {
        pg::TestSchema::new()
            .await
            .map(|schema| Self::Postgres(Arc::new(schema)))
    }

    /// Points `config` at this store.
    pub fn apply(&self, config: &mut Config) {
        match self {
            Self::Sqlite => config.store.url = None,
            Self::Postgres(schema) => {
                config.store.url = Some(schema.url().to_owned());
                config.store.schema = Some(schema.name.clone());
            }
        }
    }

    /// `"sqlite"` or `"postgres"`, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Runs each named `async fn(StoreBackend)` of the calling test file once per store: as
/// `sqlite::<name>` always, and as `postgres::<name>` when `COMMUCAT_TEST_POSTGRES` is set.
#[allow(unused_macros)]
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::StoreBackend::Sqlite).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                #[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
                async fn $name() {
                    let backend = crate::common::StoreBackend::postgres().await.expect("COMMUCAT_TEST_POSTGRES is set");
                    super::$name(backend).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_each_store;

// ---------------------------------------------------------------- the server

/// What one start of the server produced.
struct Launched {
    handle: ServerHandle,
    addr: SocketAddr,
    params: ServerParams,
    pem: Vec<u8>,
    fingerprint: String,
}

/// The real server with a temporary data directory.
pub struct TestServer {
    handle: Option<ServerHandle>,
    config: Config,
    /// What the server stores its state in (kept alive as long as the server).
    pub backend: StoreBackend,
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub trust: TlsTrust,
    pub params: ServerParams,
    /// The server's TLS certificate (PEM).
    pub pem: Vec<u8>,
    /// Its SHA-256 fingerprint as `serve` prints it.
    pub fingerprint: String,
}

impl TestServer {
    /// The server on SQLite, with `tweak` applied to its configuration.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(StoreBackend::Sqlite, tweak).await
    }

    /// The server on `backend`, with `tweak` applied to its configuration.
    pub async fn start_on(backend: StoreBackend, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.data_dir = dir.path().to_owned();
        config.server.domain = "chat.test".to_owned();
        config.server.shutdown_grace = Duration::from_secs(1);
        backend.apply(&mut config);
        tweak(&mut config);
        let launched = Self::launch(&config).await;
        Self {
            handle: Some(launched.handle),
            config,
            backend,
            _dir: dir,
            addr: launched.addr,
            trust: TlsTrust::CaPem(launched.pem.clone()),
            params: launched.params,
            pem: launched.pem,
            fingerprint: launched.fingerprint,
        }
    }

    async fn launch(config: &Config) -> Launched {
        let server = Server::bind(config.clone()).await.unwrap();
        let addr = server.local_addr();
        let pem = std::fs::read(server.cert_path()).unwrap();
        let fingerprint = server.cert_fingerprint().to_owned();
        let noise_public = server.keys().noise.public();
        let params = ServerParams::new(config.server.domain.clone(), noise_public);
        Launched {
            handle: server.spawn(),
            addr,
            params,
            pem,
            fingerprint,
        }
    }

    /// An HTTPS client trusting the server's certificate, with `localhost` resolved to it.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.pem).unwrap()])
            .resolve("localhost", self.addr)
            .build()
            .unwrap()
    }

    /// `GET /api/server-info`: what a client learns before it connects.
    pub async fn server_info(&self) -> Value {
        self.http()
            .get(format!(
                "https://localhost:{}/api/server-info",
                self.addr.port()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The value of the `/metrics` sample whose line starts with `prefix` (name and labels,
    /// with the trailing space), if there is one.
    pub async fn metric(&self, prefix: &str) -> Option<u64> {
        let text = self
            .http()
            .get(format!("https://localhost:{}/metrics", self.addr.port()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().parse().unwrap())
    }

    /// Waits until the `/metrics` sample `prefix` equals `wanted`.
    pub async fn metric_becomes(&self, prefix: &str, wanted: u64) {
        eventually(&format!("{prefix}= {wanted}"), WAIT, || async {
            (self.metric(prefix).await == Some(wanted)).then_some(())
        })
        .await;
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops the server (waiting for it to drain).
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.unwrap();
        }
    }

    /// Stops the server as a crash would: sessions dropped where they stand, nothing queued or
    /// withdrawn (see `ServerHandle::kill`).
    pub async fn kill(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.kill().await;
        }
    }

    /// Stops the server and starts it again on the same data directory and store (a new port).
    pub async fn restart(&mut self) {
        let before = self.params.server_static;
        self.relaunch().await;
        assert_eq!(before, self.params.server_static, "keys persist");
    }

    /// Like [`TestServer::restart`], with `tweak` applied to the configuration first.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) {
        tweak(&mut self.config);
        self.restart().await;
    }

    /// Stops the server and starts it again on the same data directory and store, where the
    /// Noise key may have been rotated in between.
    pub async fn relaunch(&mut self) {
        self.stop().await;
        let launched = Self::launch(&self.config).await;
        self.handle = Some(launched.handle);
        self.addr = launched.addr;
        self.trust = TlsTrust::CaPem(launched.pem.clone());
        self.params = launched.params;
        self.pem = launched.pem;
        self.fingerprint = launched.fingerprint;
    }

    /// Reloads the running server's Noise keys (what SIGHUP does to `commucat serve`).
    pub async fn reload_keys(
        &self,
    ) -> Result<commucat_server::reload::Reloaded, commucat_server::reload::ReloadError> {
        self.handle.as_ref().unwrap().reload_keys().await
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.config.server.data_dir
    }

    /// The server's database file.
    pub fn database(&self) -> PathBuf {
        self.config
            .server
            .data_dir
            .join(commucat_server::server::DATABASE_FILE)
    }

    /// A second handle on the server's store (SQLite's WAL allows it beside the server's own).
    pub async fn store(&self) -> Arc<dyn Store> {
        match &self.backend {
            StoreBackend::Sqlite => Arc::new(SqliteStore::open(&self.database()).await.unwrap()),
            StoreBackend::Postgres(schema) => Arc::new(schema.store().await),
        }
    }

    /// Connects a new device.
    pub async fn connect(&self, device_id: &str) -> Client {
        let identity = DeviceIdentity::generate(device_id).with_handle(device_id.replace('-', "_"));
        self.connect_as(identity).await
    }

    /// The preamble of a conversation: connects `ids`, JOINs each to `channel` in that order
    /// and waits until every one of them has seen the JOIN notice listing all of them.
    pub async fn conversation<const N: usize>(&self, channel: u32, ids: [&str; N]) -> [Client; N] {
        let mut clients = Vec::with_capacity(N);
        for id in ids {
            clients.push(self.connect(id).await);
        }
        let mut members = Vec::new();
        for client in &mut clients {
            members = client.join(channel, true).await;
        }
        // The last one's own notice lists everyone; the others wait for theirs.
        assert_eq!(members, ids, "members of channel {channel}");
        for client in clients.iter_mut().take(N.saturating_sub(1)) {
            client.members_become(channel, &ids).await;
        }
        match clients.try_into() {
            Ok(clients) => clients,
            Err(_) => unreachable!("one client per id"),
        }
    }

    /// Connects (again) as an existing device, with `delivery-receipts`: the client ACKs every
    /// frame it takes from the stream, as the CLI chat does.
    pub async fn connect_as(&self, identity: DeviceIdentity) -> Client {
        self.connect_with(
            identity,
            &HandshakeOptions::default().with_delivery_receipts(),
        )
        .await
    }

    /// Connects as an existing device with the given handshake options (without
    /// `delivery-receipts` the client ACKs nothing, as the deployed terminal client).
    pub async fn connect_with(
        &self,
        identity: DeviceIdentity,
        options: &HandshakeOptions,
    ) -> Client {
        let stream = transport::open(self.addr, "localhost", &self.trust, "/connect")
            .await
            .unwrap();
        let session = Session::handshake(Tapped::new(stream), &identity, &self.params, options)
            .await
            .unwrap();
        Client::new(identity, session)
    }
}

/// Every record of the ledger at `path` once at least `count` of them match `wanted` (the
/// writer runs on its own thread; waits up to [`WAIT`]).
pub async fn ledger_records(
    path: &std::path::Path,
    count: usize,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let what = format!("{count} matching records in the ledger {}", path.display());
    eventually(&what, WAIT, || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.iter().filter(|l| wanted(l)).count() >= count).then_some(lines)
    })
    .await
}

/// Waits (up to [`WAIT`]) until `device` has `count` queued envelopes; returns the last count.
pub async fn queued_becomes(store: &Arc<dyn Store>, device: &str, count: u64) -> u64 {
    let reached = poll::within(WAIT, || async {
        (queued(store, device).await == count).then_some(count)
    })
    .await;
    match reached {
        Some(count) => count,
        None => queued(store, device).await,
    }
}

/// Queued envelopes of `device` now.
pub async fn queued(store: &Arc<dyn Store>, device: &str) -> u64 {
    store.queued_count(device, unix_now()).await.unwrap()
}

pub fn unix_now() -> i64 {
    commucat_server::clock::unix_now()
}
