//! Graceful shutdown drains the sessions before the store closes: frames a connected
//! recipient's session still held — ACKed to their sender, not yet written to the recipient —
//! are queued for it, and after a restart on the same data directory the recipient gets every
//! one of them. Runs on SQLite and on PostgreSQL.
//!
//! The stopped server runs as `commucat serve` does: on a runtime of its own that is dropped as
//! soon as `Server::run` returns, so whatever a session task had not finished by then is gone.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, StoreBackend, Tapped, TestServer, WAIT, queued, queued_becomes};
use bytes::Bytes;
use commucat_ccp::control::{Ack, PresenceSnapshot};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::transport::{self, H2Stream};
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust};
use commucat_server::{Config, Server, ServerError};
use commucat_store::{SqliteStore, Store};
use serde_json::json;
use tokio::sync::oneshot;

const CHANNEL: u32 = 7;
/// Queued for bob while he is away, 16 KiB each: together more than the transport towards a
/// client that does not read holds (HTTP/2 window, send buffer, `transport_buffer_bytes`), so
/// bob's replay blocks on them. Replayed envelopes stay queued until proven received.
const FILLERS: u64 = 100;
const FILLER_BYTES: usize = 16 * 1024;
/// Sent while bob's session is blocked: they wait in its mailbox, ACKed but neither written nor
/// stored.
const LIVE: u64 = 20;

fn filler(i: u64) -> Vec<u8> {
    let mut payload = format!("filler-{i:03}").into_bytes();
    payload.resize(FILLER_BYTES, b'.');
    payload
}

fn live(i: u64) -> Vec<u8> {
    format!("live-{i:02}").into_bytes()
}

/// The label a MSG payload starts with (`filler-007`, `live-03`).
fn label(frame: &Frame) -> String {
    let text = String::from_utf8_lossy(frame.payload());
    text.split('.').next().unwrap_or_default().to_owned()
}

fn configure(config: &mut Config, backend: &StoreBackend, dir: &Path) {
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.to_owned();
    config.server.domain = "chat.test".to_owned();
    config.server.shutdown_grace = Duration::from_secs(1);
    config.bounds.transport_buffer_bytes = 64 * 1024;
    backend.apply(config);
}

/// A second handle on the store the servers use.
async fn store_of(backend: &StoreBackend, dir: &Path) -> Arc<dyn Store> {
    match backend {
        StoreBackend::Sqlite => Arc::new(
            SqliteStore::open(&dir.join(commucat_server::server::DATABASE_FILE))
                .await
                .unwrap(),
        ),
        StoreBackend::Postgres(schema) => Arc::new(schema.store().await),
    }
}

/// The server as a process: its own runtime on its own thread, dropped when `run` returns.
struct Process {
    addr: SocketAddr,
    pem: Vec<u8>,
    trust: TlsTrust,
    params: ServerParams,
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), ServerError>>,
}

impl Process {
    async fn start(config: Config) -> Self {
        let (ready_tx, ready) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let result = runtime.block_on(async move {
                let server = Server::bind(config.clone()).await?;
                let pem = std::fs::read(server.cert_path()).unwrap();
                let params =
                    ServerParams::new(config.server.domain.clone(), server.keys().noise.public());
                let _ = ready_tx.send((server.local_addr(), pem, params));
                server
                    .run(async move {
                        let _ = stop_rx.await;
                    })
                    .await
            });
            // What `commucat serve` does once `run` returns: the runtime goes, and with it
            // every task still on it.
            drop(runtime);
            let _ = done_tx.send(result);
        });
        let (addr, pem, params) = ready.await.expect("the server started");
        Self {
            addr,
            trust: TlsTrust::CaPem(pem.clone()),
            pem,
            params,
            stop,
            done,
        }
    }

    /// Graceful shutdown, as on SIGTERM; returns once the process would exit.
    async fn shut_down(self) {
        let _ = self.stop.send(());
        self.done.await.unwrap().unwrap();
    }

    async fn connect(
        &self,
        identity: &DeviceIdentity,
        options: &HandshakeOptions,
    ) -> Session<Tapped<H2Stream>> {
        let stream = transport::open(self.addr, "localhost", &self.trust, "/connect")
            .await
            .unwrap();
        Session::handshake(Tapped::new(stream), identity, &self.params, options)
            .await
            .unwrap()
    }

    /// A gauge of `/metrics` (`commucat_mailbox_frames`, `commucat_online_devices`).
    async fn gauge(&self, name: &str) -> u64 {
        let text = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.pem).unwrap()])
            .resolve("localhost", self.addr)
            .build()
            .unwrap()
            .get(format!("https://localhost:{}/metrics", self.addr.port()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} on /metrics"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits (up to 10 s) until the gauge `name` reads `value`; returns the last reading.
    async fn gauge_becomes(&self, name: &str, value: u64) -> u64 {
        let mut now = self.gauge(name).await;
        for _ in 0..500 {
            if now == value {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            now = self.gauge(name).await;
        }
        now
    }
}

/// The next frame `session` receives that `wanted` accepts (others are skipped).
async fn next_matching(
    session: &mut Session<Tapped<H2Stream>>,
    what: &str,
    wanted: impl Fn(&Frame) -> bool,
) -> Frame {
    loop {
        let frame = tokio::time::timeout(WAIT, session.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("stream closed waiting for {what}"));
        if wanted(&frame) {
            return frame;
        }
    }
}

/// Sends a frame's worth and waits for its ACK; an ERROR about it fails the test.
async fn acked(session: &mut Session<Tapped<H2Stream>>, sequence: u32) {
    let frame = next_matching(session, &format!("ACK of {sequence}"), |f| {
        match f.frame_type() {
            FrameType::Ack => f
                .parse_control::<Ack>()
                .is_ok_and(|a| a.ack == u64::from(sequence)),
            FrameType::Error => true,
            _ => false,
        }
    })
    .await;
    if frame.frame_type() == FrameType::Error {
        let problem: Problem = frame.parse_control().unwrap();
        panic!("ERROR instead of the ACK of {sequence}: {problem:?}");
    }
}

async fn say(session: &mut Session<Tapped<H2Stream>>, payload: Vec<u8>) {
    let sequence = session
        .send_bytes(FrameType::Msg, CHANNEL, Bytes::from(payload))
        .await
        .unwrap();
    acked(session, sequence).await;
}

async fn join(session: &mut Session<Tapped<H2Stream>>, device: &str) {
    let join = json!({"members": [device], "relay": true});
    let sequence = session
        .send_control(FrameType::Join, CHANNEL, &join)
        .await
        .unwrap();
    acked(session, sequence).await;
}

async fn mailbox_frames_are_queued_before_the_store_closes(backend: StoreBackend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    configure(&mut config, &backend, dir.path());
    let process = Process::start(config).await;
    let store = store_of(&backend, dir.path()).await;
    let receipts = HandshakeOptions::default().with_delivery_receipts();

    // alice and bob share a channel; bob leaves, and 100 fillers are queued for him.
    let alice_id = DeviceIdentity::generate("alice-d").with_handle("alice_d");
    let bob_id = DeviceIdentity::generate("bob-d").with_handle("bob_d");
    let mut alice = process.connect(&alice_id, &receipts).await;
    join(&mut alice, "alice-d").await;
    let mut bob = process.connect(&bob_id, &receipts).await;
    join(&mut bob, "bob-d").await;
    drop(bob);
    next_matching(&mut alice, "bob's departure", |f| {
        f.frame_type() == FrameType::Presence
            && f.parse_control::<PresenceSnapshot>()
                .is_ok_and(|s| s.entity == "bob-d" && s.state == "offline")
    })
    .await;
    for i in 0..FILLERS {
        say(&mut alice, filler(i)).await;
    }
    assert_eq!(queued(&store, "bob-d").await, FILLERS);

    // bob is back, without receipts (like the deployed client), and does not read: his replay
    // blocks once the transport is full, so what alice sends now waits in his mailbox.
    let bob = process.connect(&bob_id, &HandshakeOptions::default()).await;
    // His session is registered (online) before its replay starts.
    assert_eq!(process.gauge_becomes("commucat_online_devices", 2).await, 2);
    for i in 0..LIVE {
        say(&mut alice, live(i)).await;
    }
    assert_eq!(
        process.gauge("commucat_mailbox_frames").await,
        LIVE,
        "every live frame waits in bob's mailbox (his session is blocked on its replay)"
    );
    assert_eq!(
        queued(&store, "bob-d").await,
        FILLERS,
        "the live frames are ACKed to alice but not stored yet"
    );

    // Graceful shutdown; the process is gone when this returns.
    process.shut_down().await;
    assert_eq!(
        queued(&store, "bob-d").await,
        FILLERS + LIVE,
        "bob's session queued its mailbox before the store closed"
    );
    drop((alice, bob));

    // Restarted on the same data directory and store: bob gets every frame alice had ACKed.
    let server = TestServer::start_on(backend.clone(), |c| {
        configure(c, &backend, dir.path());
    })
    .await;
    let mut bob = server.connect_as(bob_id).await;
    let expected: BTreeSet<String> = (0..FILLERS)
        .map(|i| format!("filler-{i:03}"))
        .chain((0..LIVE).map(|i| format!("live-{i:02}")))
        .collect();
    let mut got = BTreeSet::new();
    while got.len() < expected.len() {
        match bob.recv_within(WAIT).await {
            Some(frame) if frame.frame_type() == FrameType::Msg => {
                got.insert(label(&frame));
            }
            Some(_) => {}
            None => break,
        }
    }
    let missing: Vec<&String> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    assert_eq!(queued_becomes(&store, "bob-d", 0).await, 0);
}

common::on_each_store!(mailbox_frames_are_queued_before_the_store_closes);
