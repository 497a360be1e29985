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

pub mod deployed;
pub mod rest;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commucat_ccp::control::{Ack, Join};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::transport::{self, H2Stream};
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust};
use commucat_link::ByteStream;
use commucat_server::{Config, Server, ServerHandle};
use commucat_store::{SqliteStore, Store};
use serde_json::{Value, json};

#[path = "../../../store/tests/support/postgres.rs"]
pub mod pg;

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the deployed client's view

/// Checks one frame the server sent as the deployed client would read it: its codec must accept
/// the bytes, and control payloads must carry the keys the terminal client requires.
fn check_deployed(frame: &commucat_proto::Frame) {
    use commucat_proto::{FramePayload, FrameType as T, call};
    let props = match &frame.payload {
        FramePayload::Control(c) => &c.properties,
        FramePayload::Opaque(_) => return,
    };
    let has_str = |keys: &[&str]| {
        keys.iter()
            .any(|k| props.get(*k).is_some_and(Value::is_string))
    };
    let ty = frame.frame_type;
    match ty {
        T::Typing => assert!(
            has_str(&["device", "device_id", "sender"]),
            "TYPING without sender: {props}"
        ),
        T::Presence => assert!(has_str(&["entity"]), "PRESENCE without entity: {props}"),
        T::Join => {
            assert!(props.is_object(), "JOIN not an object: {props}");
            let members = props.get("members").and_then(Value::as_array);
            assert!(
                members.is_some_and(|m| m.iter().all(Value::is_string)),
                "JOIN without members: {props}"
            );
        }
        T::GroupCreate => assert!(props.is_object(), "GROUP_CREATE not an object: {props}"),
        T::GroupInvite => {
            assert!(
                has_str(&["group_id"]),
                "GROUP_INVITE without group_id: {props}"
            );
            assert!(
                has_str(&["device", "member"]),
                "GROUP_INVITE without device: {props}"
            );
        }
        T::CallOffer => {
            serde_json::from_value::<call::CallOffer>(props.clone()).unwrap();
        }
        T::CallAnswer => {
            serde_json::from_value::<call::CallAnswer>(props.clone()).unwrap();
        }
        T::CallEnd => {
            serde_json::from_value::<call::CallEnd>(props.clone()).unwrap();
        }
        T::CallStats => {
            serde_json::from_value::<call::CallStats>(props.clone()).unwrap();
        }
        T::Error => {
            for key in ["title", "detail"] {
                assert!(
                    props.get(key).is_none_or(Value::is_string),
                    "ERROR {key}: {props}"
                );
            }
        }
        _ => {}
    }
}

/// A byte stream that runs everything the server sends through the deployed decoder, and checks
/// that server sequence numbers strictly increase on the connection.
pub struct Tapped<S> {
    inner: S,
    buf: Vec<u8>,
    last_sequence: u64,
}

impl<S> Tapped<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            last_sequence: 0,
        }
    }

    /// The wrapped stream.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: ByteStream> ByteStream for Tapped<S> {
    async fn read(&mut self) -> io::Result<Option<Bytes>> {
        let chunk = self.inner.read().await?;
        if let Some(bytes) = &chunk {
            self.buf.extend_from_slice(bytes);
            loop {
                match commucat_proto::Frame::decode(&self.buf) {
                    Ok((frame, used)) => {
                        self.buf.drain(..used);
                        assert!(
                            frame.sequence > self.last_sequence,
                            "server sequence {} after {}",
                            frame.sequence,
                            self.last_sequence
                        );
                        self.last_sequence = frame.sequence;
                        check_deployed(&frame);
                    }
                    Err(commucat_proto::CodecError::UnexpectedEof) => break,
                    Err(e) => panic!("the deployed decoder rejects a server frame: {e}"),
                }
            }
        }
        Ok(chunk)
    }

    async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.inner.write(bytes).await
    }
}

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
                    super::$name(super::common::StoreBackend::Sqlite).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                #[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
                async fn $name() {
                    let backend = super::common::StoreBackend::postgres().await.expect("COMMUCAT_TEST_POSTGRES is set");
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
    ) -> Result<commucat_server::keys::reload::Reloaded, commucat_server::keys::reload::ReloadError>
    {
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
        Client {
            id: identity.device_id.clone(),
            identity,
            session,
            backlog: VecDeque::new(),
        }
    }
}

/// Every record of the ledger at `path` once at least `count` of them match `wanted` (the
/// writer runs on its own thread; waits up to 10 s).
pub async fn ledger_records(
    path: &std::path::Path,
    count: usize,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    for _ in 0..500 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.iter().filter(|l| wanted(l)).count() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the ledger {} never held {count} matching records",
        path.display()
    );
}

/// Waits (up to 10 s) until `device` has `count` queued envelopes; returns the last count.
pub async fn queued_becomes(store: &Arc<dyn Store>, device: &str, count: u64) -> u64 {
    let mut now = queued(store, device).await;
    for _ in 0..500 {
        if now == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = queued(store, device).await;
    }
    now
}

/// Queued envelopes of `device` now.
pub async fn queued(store: &Arc<dyn Store>, device: &str) -> u64 {
    store.queued_count(device, unix_now()).await.unwrap()
}

pub fn unix_now() -> i64 {
    commucat_server::clock::unix_now()
}

// ---------------------------------------------------------------- a client

/// An SDK session plus a backlog of frames received while waiting for others.
pub struct Client {
    pub id: String,
    pub identity: DeviceIdentity,
    pub session: Session<Tapped<H2Stream>>,
    backlog: VecDeque<Frame>,
}

impl Client {
    /// The next frame (backlog first); panics after [`WAIT`] or if the stream ends.
    pub async fn recv(&mut self) -> Frame {
        match self.recv_within(WAIT).await {
            Some(frame) => frame,
            None => panic!("{}: no frame within {WAIT:?}", self.id),
        }
    }

    /// The next frame, or `None` if none arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        match tokio::time::timeout(wait, self.session.recv()).await {
            Ok(Ok(Some(frame))) => {
                self.acknowledge(&frame).await;
                Some(frame)
            }
            Ok(Ok(None)) => panic!("{}: server closed the stream", self.id),
            Ok(Err(e)) => panic!("{}: link failed: {e}", self.id),
            Err(_) => None,
        }
    }

    /// ACKs `frame` if the session negotiated `delivery-receipts` (a link already gone is
    /// ignored: the frame simply stays queued on the server).
    async fn acknowledge(&mut self, frame: &Frame) {
        if frame.frame_type() != FrameType::Ack && frame.frame_type() != FrameType::Error {
            let _ = self.session.acknowledge(frame).await;
        }
    }

    /// Reads until the server ends the stream; returns every frame (backlog first).
    pub async fn recv_until_closed(&mut self) -> Vec<Frame> {
        let mut frames: Vec<Frame> = self.backlog.drain(..).collect();
        loop {
            match tokio::time::timeout(WAIT, self.session.recv()).await {
                Ok(Ok(Some(frame))) => {
                    self.acknowledge(&frame).await;
                    frames.push(frame);
                }
                Ok(Ok(None) | Err(_)) => return frames,
                Err(_) => panic!("{}: stream still open after {WAIT:?}", self.id),
            }
        }
    }

    /// The first frame matching `wanted` (from the backlog or the stream); frames before it
    /// that do not match stay in the backlog, in order.
    pub async fn recv_matching(&mut self, what: &str, wanted: impl Fn(&Frame) -> bool) -> Frame {
        if let Some(i) = self.backlog.iter().position(&wanted) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let frame = match tokio::time::timeout(WAIT, self.session.recv()).await {
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => panic!("{}: stream closed waiting for {what}", self.id),
                Ok(Err(e)) => panic!("{}: link failed waiting for {what}: {e}", self.id),
                Err(_) => panic!(
                    "{}: no {what} within {WAIT:?}; backlog {:?}",
                    self.id,
                    self.backlog.iter().map(describe).collect::<Vec<_>>()
                ),
            };
            self.acknowledge(&frame).await;
            if wanted(&frame) {
                return frame;
            }
            self.backlog.push_back(frame);
        }
    }

    /// The next frame of `frame_type` on `channel`.
    pub async fn recv_on(&mut self, frame_type: FrameType, channel: u32) -> Frame {
        self.recv_matching(&format!("{frame_type} on {channel}"), |f| {
            f.frame_type() == frame_type && f.channel_id() == channel
        })
        .await
    }

    /// Asserts that nothing arrives (and nothing is in the backlog) for `wait`, and that the
    /// connection is still open at the end: a closed stream or a failed connection is not quiet.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        assert!(
            self.backlog.is_empty(),
            "{}: unexpected {:?}",
            self.id,
            self.backlog.iter().map(describe).collect::<Vec<_>>()
        );
        match tokio::time::timeout(wait, self.session.recv()).await {
            // Quiet: nothing arrived and the connection is still up.
            Err(_elapsed) => {}
            Ok(Ok(Some(frame))) => panic!("{}: unexpected {}", self.id, describe(&frame)),
            Ok(Ok(None)) => panic!(
                "{}: the server closed the stream instead of staying quiet",
                self.id
            ),
            Ok(Err(error)) => panic!(
                "{}: the connection failed instead of staying quiet: {error}",
                self.id
            ),
        }
    }

    /// Sends an opaque frame (MSG, KEY_UPDATE, VOICE/VIDEO); returns its sequence.
    pub async fn send(&mut self, frame_type: FrameType, channel: u32, payload: &[u8]) -> u32 {
        self.session
            .send_bytes(frame_type, channel, Bytes::copy_from_slice(payload))
            .await
            .unwrap()
    }

    /// Sends a control frame; returns its sequence.
    pub async fn control(&mut self, frame_type: FrameType, channel: u32, value: &Value) -> u32 {
        self.session
            .send_control(frame_type, channel, value)
            .await
            .unwrap()
    }

    /// Waits for the ACK of `sequence`; an ERROR about that sequence fails the test.
    pub async fn ack(&mut self, sequence: u32) -> Ack {
        let frame = self
            .recv_matching(&format!("ACK of {sequence}"), |f| {
                is_ack_of(f, sequence) || is_error_about(f, sequence)
            })
            .await;
        if frame.frame_type() == FrameType::Error {
            let problem: Problem = frame.parse_control().unwrap();
            panic!(
                "{}: ERROR instead of ACK of {sequence}: {problem:?}",
                self.id
            );
        }
        frame.parse_control().unwrap()
    }

    /// Waits for an ERROR about `sequence` and checks its title.
    pub async fn error(&mut self, sequence: u32, title: &str) -> Problem {
        let frame = self
            .recv_matching(&format!("ERROR about {sequence}"), |f| {
                is_ack_of(f, sequence) || is_error_about(f, sequence)
            })
            .await;
        assert_eq!(
            frame.frame_type(),
            FrameType::Error,
            "{}: ACK where {title} was expected",
            self.id
        );
        let problem: Problem = frame.parse_control().unwrap();
        assert_eq!(problem.title.as_deref(), Some(title), "{problem:?}");
        problem
    }

    /// Sends a MSG and waits for its ACK.
    pub async fn say(&mut self, channel: u32, text: &str) -> u32 {
        let sequence = self.send(FrameType::Msg, channel, text.as_bytes()).await;
        self.ack(sequence).await;
        sequence
    }

    /// JOINs `channel` (declaring only itself, like the deployed client) and returns the member
    /// list of the server's JOIN notice.
    pub async fn join(&mut self, channel: u32, relay: bool) -> Vec<String> {
        let members = json!({"members": [self.id], "relay": relay});
        self.join_with(channel, &members).await
    }

    /// JOINs with an explicit payload; returns the notice's member list.
    pub async fn join_with(&mut self, channel: u32, payload: &Value) -> Vec<String> {
        let sequence = self.control(FrameType::Join, channel, payload).await;
        self.ack(sequence).await;
        let notice: Join = self
            .recv_on(FrameType::Join, channel)
            .await
            .parse_control()
            .unwrap();
        notice.members
    }

    /// Waits for a JOIN notice on `channel` listing exactly `members`.
    pub async fn members_become(&mut self, channel: u32, members: &[&str]) {
        loop {
            let notice: Join = self
                .recv_on(FrameType::Join, channel)
                .await
                .parse_control()
                .unwrap();
            if notice.members == members {
                return;
            }
        }
    }

    /// Ends the stream (the server sees the client leave).
    pub fn close(self) {
        drop(self);
    }
}

fn is_ack_of(frame: &Frame, sequence: u32) -> bool {
    frame.frame_type() == FrameType::Ack
        && frame
            .parse_control::<Ack>()
            .is_ok_and(|a| a.ack == u64::from(sequence))
}

fn is_error_about(frame: &Frame, sequence: u32) -> bool {
    frame.frame_type() == FrameType::Error
        && frame
            .parse_control::<Problem>()
            .is_ok_and(|p| p.extensions.get("sequence") == Some(&json!(sequence)))
}

/// A short description of a frame for assertion messages.
pub fn describe(frame: &Frame) -> String {
    let payload = if frame.frame_type().is_control() {
        String::from_utf8_lossy(frame.payload()).into_owned()
    } else {
        format!("{} bytes", frame.payload().len())
    };
    format!(
        "{} ch{} #{} {payload}",
        frame.frame_type(),
        frame.channel_id(),
        frame.sequence()
    )
}

/// The JSON of a control frame.
pub fn json_of(frame: &Frame) -> Value {
    frame.parse_control().unwrap()
}
