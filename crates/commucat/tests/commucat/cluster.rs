//! Several nodes as real processes: three `commucat serve` children share a fresh PostgreSQL
//! schema (`COMMUCAT_TEST_POSTGRES`), a fresh Redis key prefix (`COMMUCAT_TEST_REDIS`) and one
//! set of keys. The node holding a recipient is killed with SIGKILL while a sender on another
//! node keeps sending; the recipient reconnects to the third node and gets every frame the
//! sender had acknowledged: nothing lost, what arrives after the reconnect in sending order,
//! and only frames already delivered before the kill may come again (each at most once).
//!
//! Ignored (with the reason) unless both services are configured.

use std::collections::{HashSet, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use commucat_ccp::control::Ack;
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::transport::{self, H2Stream};
use commucat_client::{DeviceIdentity, HandshakeOptions, ServerParams, Session, TlsTrust};
use serde_json::json;

use crate::common::BIN;

/// Longest wait for anything in this test (a node starting, a frame arriving).
const WAIT: Duration = Duration::from_secs(60);

/// What every node of the deployment shares.
struct Shared {
    store_url: String,
    schema: String,
    redis_url: String,
    prefix: String,
}

/// One `commucat serve` child; SIGKILLed on drop.
struct Node {
    id: String,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts node `id` on a free loopback port with `data_dir`, logging to `log`.
    fn start(id: &str, data_dir: &Path, log: &Path, shared: &Shared) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .env("COMMUCAT_LISTEN", addr.to_string())
            .env("COMMUCAT_STORE_URL", &shared.store_url)
            .env("COMMUCAT_STORE_SCHEMA", &shared.schema)
            .env("COMMUCAT_REDIS_URL", &shared.redis_url)
            .env("COMMUCAT_REDIS_KEY_PREFIX", &shared.prefix)
            .env("COMMUCAT_NODE_ID", id)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        Self {
            id: id.to_owned(),
            addr,
            data_dir: data_dir.to_owned(),
            log: log.to_owned(),
            child: Some(child),
        }
    }

    fn trust(&self) -> TlsTrust {
        TlsTrust::CaPem(std::fs::read(self.data_dir.join("tls").join("dev_cert.pem")).unwrap())
    }

    /// Waits until the node answers `GET /readyz` with 200 (PostgreSQL and Redis reachable);
    /// returns its Noise parameters from `/api/server-info`.
    async fn ready(&mut self) -> ServerParams {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited during startup ({status}): {}",
                    self.id,
                    self.log_text()
                );
            }
            let cert = self.data_dir.join("tls").join("dev_cert.pem");
            if cert.exists()
                && let Ok((200, _)) =
                    transport::get(self.addr, "localhost", &self.trust(), "/readyz").await
            {
                let (status, body) =
                    transport::get(self.addr, "localhost", &self.trust(), "/api/server-info")
                        .await
                        .unwrap();
                assert_eq!(status, 200);
                let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let key =
                    commucat_keys::decode_hex32(info["noise_public"].as_str().unwrap()).unwrap();
                return ServerParams::new(info["domain"].as_str().unwrap(), key);
            }
            assert!(
                began.elapsed() < WAIT,
                "{} not ready within {WAIT:?}: {}",
                self.id,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A session of `identity` on this node, with `delivery-receipts`.
    async fn connect(&self, identity: &DeviceIdentity, params: &ServerParams) -> Peer {
        let stream = transport::open(self.addr, "localhost", &self.trust(), "/connect")
            .await
            .unwrap();
        let options = HandshakeOptions::default().with_delivery_receipts();
        let session = Session::handshake(stream, identity, params, &options)
            .await
            .unwrap();
        Peer {
            session,
            backlog: VecDeque::new(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An SDK session that confirms every frame it takes (as the CLI chat does).
struct Peer {
    session: Session<H2Stream>,
    backlog: VecDeque<Frame>,
}

impl Peer {
    /// The next frame, or `None` when none arrives within `wait`; panics if the link ends.
    async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        let frame = match tokio::time::timeout(wait, self.session.recv()).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => panic!("the server closed the stream"),
            Ok(Err(e)) => panic!("link failed: {e}"),
            Err(_) => return None,
        };
        if !matches!(frame.frame_type(), FrameType::Ack | FrameType::Error) {
            self.session.acknowledge(&frame).await.unwrap();
        }
        Some(frame)
    }

    /// Waits for the ACK of `sequence` (keeping other frames for later); an ERROR about it
    /// fails the test.
    async fn ack(&mut self, sequence: u32) {
        loop {
            let frame = match tokio::time::timeout(WAIT, self.session.recv()).await {
                Ok(Ok(Some(frame))) => frame,
                other => panic!("no ACK of {sequence}: {other:?}"),
            };
            match frame.frame_type() {
                FrameType::Ack
                    if frame
                        .parse_control::<Ack>()
                        .is_ok_and(|a| a.ack == u64::from(sequence)) =>
                {
                    return;
                }
                FrameType::Error => {
                    let problem: Problem = frame.parse_control().unwrap();
                    panic!("ERROR instead of the ACK of {sequence}: {problem:?}");
                }
                FrameType::Ack => {}
                _ => {
                    self.session.acknowledge(&frame).await.unwrap();
                    self.backlog.push_back(frame);
                }
            }
        }
    }

    /// JOINs `channel` declaring `members`, waits for the ACK.
    async fn join(&mut self, channel: u32, members: &[&str]) {
        let sequence = self
            .session
            .send_control(
                FrameType::Join,
                channel,
                &json!({"members": members, "relay": true}),
            )
            .await
            .unwrap();
        self.ack(sequence).await;
    }

    /// Sends a MSG and waits for its ACK.
    async fn say(&mut self, channel: u32, text: &str) {
        let sequence = self
            .session
            .send_bytes(FrameType::Msg, channel, text.as_bytes().to_vec())
            .await
            .unwrap();
        self.ack(sequence).await;
    }

    /// The next MSG on `channel`, as text; `None` if none arrives within [`WAIT`].
    async fn next_text(&mut self, channel: u32) -> Option<String> {
        loop {
            let frame = self.recv_within(WAIT).await?;
            if frame.frame_type() == FrameType::Msg && frame.channel_id() == channel {
                return Some(String::from_utf8(frame.payload().to_vec()).unwrap());
            }
        }
    }
}

/// Copies the files under `from` into `to` (the keys and certificate node 1 wrote).
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A device identity registering on first connect.
fn identity(id: &str) -> DeviceIdentity {
    DeviceIdentity::generate(id).with_handle(id.replace('-', "_"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(commucat_test_postgres, commucat_test_redis)),
    ignore = "needs COMMUCAT_TEST_POSTGRES and COMMUCAT_TEST_REDIS"
)]
async fn sigkill_of_the_recipients_node_process_loses_no_acknowledged_frame() {
    const TOTAL: usize = 200;
    const CHANNEL: u32 = 5;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    let shared = Shared {
        store_url: std::env::var("COMMUCAT_TEST_POSTGRES").unwrap(),
        schema: format!("cluster_kill_{}_{nanos}", std::process::id()),
        redis_url: std::env::var("COMMUCAT_TEST_REDIS").unwrap(),
        prefix: format!("commucat-cluster-kill-{}-{nanos}:", std::process::id()),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = |n: usize| dir.path().join(format!("n{n}"));
    let log = |n: usize| dir.path().join(format!("n{n}.log"));
    std::fs::create_dir_all(data(1)).unwrap();
    let mut n1 = Node::start("n1", &data(1), &log(1), &shared);
    let params = n1.ready().await;
    // One set of keys for the deployment: nodes 2 and 3 start from node 1's.
    let mut nodes = Vec::new();
    for n in [2, 3] {
        std::fs::create_dir_all(data(n)).unwrap();
        copy_tree(&data(1), &data(n));
        let mut node = Node::start(&format!("n{n}"), &data(n), &log(n), &shared);
        assert_eq!(node.ready().await.server_static, params.server_static);
        nodes.push(node);
    }
    let [n2, mut n3]: [Node; 2] = nodes.try_into().ok().unwrap();

    let (alice_id, bob_id) = (identity("alice-k9"), identity("bob-k9"));
    let mut alice = n1.connect(&alice_id, &params).await;
    let mut bob = n3.connect(&bob_id, &params).await;
    alice.join(CHANNEL, &["alice-k9", "bob-k9"]).await;
    bob.join(CHANNEL, &["bob-k9", "alice-k9"]).await;

    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..TOTAL {
            let text = format!("m{i:03}");
            alice.say(CHANNEL, &text).await;
            acked.push(text);
        }
        (alice, acked)
    });
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 20 {
        seen.push(bob.next_text(CHANNEL).await.expect("a MSG before the kill"));
    }
    // Node 3, holding Bob, dies where it stands: no drain, no route withdrawn, nothing flushed.
    n3.kill();
    drop(bob);
    let (_alice, acked) = sender.await.unwrap();
    assert_eq!(acked.len(), TOTAL, "every MSG acknowledged");

    let mut bob = n2.connect(&bob_id, &params).await;
    let wanted: HashSet<&String> = acked.iter().collect();
    let mut got: HashSet<String> = seen.iter().cloned().collect();
    let mut after: Vec<String> = Vec::new();
    while !wanted.iter().all(|t| got.contains(*t)) {
        let Some(text) = bob.next_text(CHANNEL).await else {
            let missing: Vec<&&String> = wanted.iter().filter(|t| !got.contains(**t)).collect();
            panic!(
                "{} acknowledged frames never arrived: {missing:?}\nnode 2 log:\n{}",
                missing.len(),
                n2.log_text()
            );
        };
        got.insert(text.clone());
        after.push(text);
    }
    // After the reconnect: sending order, each frame at most once, and a repeat only of a
    // frame delivered before the kill (its receipt died with node 3).
    let mut sorted = after.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        after.len(),
        "a frame came twice after the reconnect"
    );
    assert_eq!(after, sorted, "order after the reconnect");
    let seen: HashSet<&String> = seen.iter().collect();
    let repeated = after.iter().filter(|t| seen.contains(t)).count();
    eprintln!(
        "before the kill {} frames, after the reconnect {} ({repeated} repeated)",
        seen.len(),
        after.len()
    );
    assert!(
        bob.recv_within(Duration::from_millis(300))
            .await
            .is_none_or(|f| f.frame_type() != FrameType::Msg)
    );

    // Clean up this run's keys (routes and presence would expire; channel records would not).
    let client = redis::Client::open(shared.redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::AsyncCommands::keys(&mut connection, format!("{}*", shared.prefix))
            .await
            .unwrap();
    if !keys.is_empty() {
        redis::AsyncCommands::del::<_, ()>(&mut connection, keys)
            .await
            .unwrap();
    }
    drop((n1, n2));
}
