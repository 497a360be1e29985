//! Outages of the services the server depends on, with throwaway instances this test owns: a
//! PostgreSQL cluster (`initdb` + `pg_ctl` as the `postgres` user, on a temporary directory and
//! a free port) and a `redis-server` on its own port. While a service is down `/readyz` says
//! which, handshakes that need the store fail fast with a `Service Unavailable` ERROR, frames
//! that cannot be stored are refused (never ACKed), nothing acknowledged before is lost, and
//! the same server recovers when the service is back.
//!
//! The outage scenarios need the server binaries, so they run only where the shared services do:
//! the PostgreSQL one when `COMMUCAT_TEST_POSTGRES` is set, the Redis one when
//! `COMMUCAT_TEST_REDIS` is set (then a missing binary fails the test). A database that is not
//! there at startup is tested everywhere.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccp::FrameType;
use ccp::control::PresenceSnapshot;
use common::{Client, TestServer};
use commucat_client::{DeviceIdentity, HandshakeOptions};
use serde_json::Value;

/// Longest a handshake may take to be refused while the store is down (the pool's acquire
/// timeout is 1 s here; the handshake timeout is 10 s).
const FAIL_FAST: Duration = Duration::from_secs(5);
/// Longest the server may take to notice a service is back.
const RECOVERY: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- throwaway services

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` from `PATH`, else from the newest `/usr/lib/postgresql/<version>/bin`.
fn postgres_binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return found;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name))
        .filter(|candidate| candidate.is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("{name} is neither on PATH nor under /usr/lib/postgresql"))
}

/// Runs `program args…` as the `postgres` user, failing the test with its output on error.
fn as_postgres(program: &Path, args: &[&str]) {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("runuser {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(out.status.success(), "no postgres user");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// A PostgreSQL cluster of this test's own: stopped and deleted on drop.
struct ThrowawayPostgres {
    dir: tempfile::TempDir,
    port: u16,
    pg_ctl: PathBuf,
    running: bool,
}

impl ThrowawayPostgres {
    /// `initdb` on a fresh directory owned by `postgres`, then started on a free port.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        as_postgres(
            &postgres_binary("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let mut cluster = Self {
            dir,
            port: free_port(),
            pg_ctl: postgres_binary("pg_ctl"),
            running: false,
        };
        cluster.resume();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster (again) on its port, waiting up to 30 s until it accepts connections.
    fn resume(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        as_postgres(
            &self.pg_ctl,
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the cluster at once, as a crash would (no shutdown checkpoint).
    fn kill(&mut self) {
        as_postgres(
            &self.pg_ctl,
            &[
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ],
        );
        self.running = false;
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&self.pg_ctl)
                .args([
                    "-D",
                    &self.data(),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A `redis-server` of this test's own, keeping nothing on disk: killed on drop.
struct ThrowawayRedis {
    port: u16,
    child: Option<Child>,
}

impl ThrowawayRedis {
    fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.resume();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port, waiting up to 10 s until it answers PING.
    fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                let mut reply = [0u8; 7];
                if conn.write_all(b"PING\r\n").is_ok()
                    && conn.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- helpers

/// `GET /readyz`: the status code and the JSON body.
async fn readyz(server: &TestServer) -> (u16, Value) {
    let response = server
        .http()
        .get(format!("https://localhost:{}/readyz", server.addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `/readyz` until it answers `status`, for at most `within`.
async fn readyz_becomes(server: &TestServer, status: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = readyz(server).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {got} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `peer` waits for `id`'s `offline` snapshot (so later frames find it offline).
async fn wait_offline(peer: &mut Client, id: &str) {
    loop {
        let snapshot: PresenceSnapshot = peer
            .recv_on(FrameType::Presence, 0)
            .await
            .parse_control()
            .unwrap();
        if snapshot.entity == id && snapshot.state == "offline" {
            return;
        }
    }
}

/// A handshake of a new device; `Err(title)` when the server refused it.
async fn try_connect(server: &TestServer, device: &str) -> Result<(), String> {
    commucat_client::connect(
        server.addr,
        "localhost",
        &server.trust,
        &DeviceIdentity::generate(device),
        &server.params,
        &HandshakeOptions::default(),
    )
    .await
    .map(drop)
    .map_err(|e| {
        format!(
            "{} / {}",
            e.title().unwrap_or("(no title)"),
            e.problem()
                .and_then(|p| p.detail.clone())
                .unwrap_or_else(|| e.to_string())
        )
    })
}

// ---------------------------------------------------------------- scenarios

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn a_postgres_outage_is_reported_fails_fast_loses_nothing_and_heals() {
    let mut postgres = tokio::task::spawn_blocking(ThrowawayPostgres::start)
        .await
        .unwrap();
    let url = postgres.url();
    let server = TestServer::start(|c| {
        c.store.url = Some(url);
        c.store.acquire_timeout = Duration::from_secs(1);
    })
    .await;
    let mut alice = server.connect("alice-pg").await;
    alice.join(7, true).await;
    let mut bob = server.connect("bob-pg").await;
    bob.join(7, true).await;
    let bob_identity = bob.identity.clone();
    bob.close();
    wait_offline(&mut alice, "bob-pg").await;
    // Acknowledged before the outage: durable in PostgreSQL.
    alice.say(7, "before").await;
    assert_eq!(readyz(&server).await.0, 200);

    tokio::task::block_in_place(|| postgres.kill());

    // Readiness names the store.
    let body = readyz_becomes(&server, 503, Duration::from_secs(10)).await;
    assert_eq!(body["down"], serde_json::json!(["store"]), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("store unreachable: "),
        "{body}"
    );
    // A handshake fails fast with a clear ERROR instead of waiting for the handshake timeout.
    let started = Instant::now();
    let refused = try_connect(&server, "carol-pg").await.unwrap_err();
    assert!(
        started.elapsed() < FAIL_FAST,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        refused,
        "Service Unavailable / device registry unavailable; retry shortly"
    );
    // A frame for an offline member cannot be made durable: refused, not ACKed.
    let seq = alice.send(FrameType::Msg, 7, b"during").await;
    let problem = alice.error(seq, "Service Unavailable").await;
    assert!(
        problem
            .detail
            .as_deref()
            .unwrap()
            .contains("could not be queued"),
        "{problem:?}"
    );

    tokio::task::block_in_place(|| postgres.resume());

    // The same server recovers: ready again, handshakes work, the resend is stored, and the
    // offline member gets everything that was acknowledged, in order.
    readyz_becomes(&server, 200, RECOVERY).await;
    let deadline = Instant::now() + RECOVERY;
    while let Err(title) = try_connect(&server, "carol-pg").await {
        assert!(
            Instant::now() < deadline,
            "handshakes still refused: {title}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice.say(7, "after").await;
    let mut bob = server.connect_as(bob_identity).await;
    for expected in ["before", "after"] {
        let frame = bob.recv_on(FrameType::Msg, 7).await;
        assert_eq!(frame.payload().as_ref(), expected.as_bytes());
    }
    bob.expect_quiet(Duration::from_millis(300)).await;
    // Alice's session lived through the outage.
    alice.say(7, "still here").await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
async fn a_redis_outage_is_reported_keeps_sessions_working_and_heals() {
    let mut redis = tokio::task::spawn_blocking(ThrowawayRedis::start)
        .await
        .unwrap();
    let server = TestServer::start(|c| {
        c.presence.redis_url = Some(redis.url());
        c.presence.node_id = Some("node-outage".to_owned());
    })
    .await;
    let mut alice = server.connect("alice-rd").await;
    alice.join(7, true).await;
    assert_eq!(readyz(&server).await.0, 200);

    tokio::task::block_in_place(|| redis.kill());

    let body = readyz_becomes(&server, 503, Duration::from_secs(10)).await;
    assert_eq!(body["down"], serde_json::json!(["presence"]), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("presence registry (redis) unreachable: "),
        "{body}"
    );
    // Presence is best effort: handshakes (which need only the store) and messaging go on.
    let started = Instant::now();
    let mut bob = server.connect("bob-rd").await;
    assert!(
        started.elapsed() < FAIL_FAST,
        "took {:?}",
        started.elapsed()
    );
    bob.join(7, true).await;
    alice.say(7, "while redis is down").await;
    assert_eq!(
        bob.recv_on(FrameType::Msg, 7).await.payload().as_ref(),
        b"while redis is down"
    );

    tokio::task::block_in_place(|| redis.resume());

    readyz_becomes(&server, 200, RECOVERY).await;
    // The registry is written again: a new session's route appears in the fresh Redis.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _carol = server.connect("carol-rd").await;
    let deadline = Instant::now() + RECOVERY;
    loop {
        let node: Option<String> = redis::cmd("GET")
            .arg("route:carol-rd")
            .query_async(&mut conn)
            .await
            .unwrap();
        if node.as_deref() == Some("node-outage") {
            break;
        }
        assert!(Instant::now() < deadline, "route of carol-rd never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An unreachable `store.url` stops startup within about `store.acquire_timeout`, with an error
/// naming the URL (password hidden).
#[tokio::test]
async fn bind_fails_fast_naming_an_unreachable_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = commucat_server::Config::default();
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.path().to_owned();
    // Port 1 on loopback: nothing listens there.
    config.store.url = Some("postgres://chat:hunter2@127.0.0.1:1/chat".to_owned());
    config.store.acquire_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let error = commucat_server::Server::bind(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("store postgres://chat:***@127.0.0.1:1/chat: store unavailable: "),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
}
