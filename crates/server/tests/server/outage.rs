//! Outages of the services the server depends on, with throwaway instances this test owns: a
//! PostgreSQL cluster (`initdb` + `pg_ctl` as the `postgres` user, on a temporary directory and
//! a free port) and a `redis-server` on its own port. While a service is down `/readyz` says
//! which, handshakes that need the store fail fast with a `Service Unavailable` ERROR, frames
//! that cannot be stored are refused (never ACKed), nothing acknowledged before is lost, and
//! the same server recovers when the service is back.
//!
//! Both services are also restarted (PostgreSQL stopped at once, as a crash would; Redis killed)
//! twice while a device sends: every ACKed frame reaches its recipients, in order and once, and
//! the service returns. Instances come from `services`.
//!
//! The outage scenarios need the server binaries, so they run only where the shared services do:
//! the PostgreSQL one when `COMMUCAT_TEST_POSTGRES` is set, the Redis one when
//! `COMMUCAT_TEST_REDIS` is set (then a missing binary fails the test). The restart scenarios
//! follow the same rule: ignored (with the reason) without the variable, failing on a missing
//! binary with it. A database that is not there at startup is tested everywhere.

use crate::common;
use crate::services;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Client, TestServer, eventually};
use crate::services::{ThrowawayPostgres, ThrowawayRedis};
use commucat_ccp::control::{Ack, PresenceSnapshot};
use commucat_ccp::{Frame, FrameType, Problem};
use commucat_client::{DeviceIdentity, HandshakeOptions};
use serde_json::Value;
use tokio::sync::watch;

/// Longest a handshake may take to be refused while the store is down (the pool's acquire
/// timeout is 1 s here; the handshake timeout is 10 s).
const FAIL_FAST: Duration = Duration::from_secs(5);
/// Longest the server may take to notice a service is back.
const RECOVERY: Duration = Duration::from_secs(30);

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
    eventually(&format!("/readyz {status}"), within, || async {
        let (got, body) = readyz(server).await;
        (got == status).then_some(body)
    })
    .await
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
    eventually("handshakes accepted again", RECOVERY, || async {
        try_connect(&server, "carol-pg").await.ok()
    })
    .await;
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
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let _carol = server.connect("carol-rd").await;
    eventually("the route of carol-rd", RECOVERY, || {
        let mut conn = conn.clone();
        async move {
            let node: Option<String> = redis::cmd("GET")
                .arg("route:carol-rd")
                .query_async(&mut conn)
                .await
                .unwrap();
            (node.as_deref() == Some("node-outage")).then_some(())
        }
    })
    .await;
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

// ---------------------------------------------------------------- restarts during traffic

/// Restarts of a service during traffic.
const RESTARTS: usize = 2;
/// Frames ACKed between two restarts (and after the last one) before the test goes on.
const ACKS_BETWEEN: u64 = 20;
/// Pause between two sends: paces the traffic at about 200 frames/s, so a run stays small.
const PACE: Duration = Duration::from_millis(5);

/// Whether `frame` answers the frame sent with `sequence`: its ACK, or an ERROR naming it.
fn answers(frame: &Frame, sequence: u32) -> bool {
    let sequence = u64::from(sequence);
    match frame.frame_type() {
        FrameType::Ack => frame
            .parse_control::<Ack>()
            .is_ok_and(|ack| ack.ack == sequence),
        FrameType::Error => frame
            .parse_control::<Problem>()
            .is_ok_and(|p| p.extensions.get("sequence").and_then(Value::as_u64) == Some(sequence)),
        _ => false,
    }
}

/// Sends MSG `text` on channel 7; `true` if ACKed, `false` if refused with an ERROR.
async fn send_answered(client: &mut Client, text: &str) -> bool {
    let sequence = client.send(FrameType::Msg, 7, text.as_bytes()).await;
    let frame = client
        .recv_matching(&format!("the answer to {text}"), |f| answers(f, sequence))
        .await;
    frame.frame_type() == FrameType::Ack
}

/// Blocks (on a blocking thread) until `acked` reaches `at_least`, for at most a minute.
fn wait_acked(runtime: &tokio::runtime::Handle, acked: &watch::Sender<u64>, at_least: u64) {
    let mut seen = acked.subscribe();
    let reached = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), seen.wait_for(|n| *n >= at_least))
            .await
            .is_ok_and(|changed| changed.is_ok())
    });
    assert!(reached, "traffic stalled before a restart");
}

/// What a sender saw: the texts ACKed, in order, and how many were refused.
#[derive(Default)]
struct Traffic {
    acked: Vec<String>,
    refused: u64,
}

/// Sends numbered MSGs on channel 7 until `restarts` is done, then until [`ACKS_BETWEEN`] more
/// are ACKed (the service is back), within [`RECOVERY`].
async fn traffic_until<T>(
    sender: &mut Client,
    acked: &watch::Sender<u64>,
    restarts: tokio::task::JoinHandle<T>,
) -> (Traffic, T) {
    let mut traffic = Traffic::default();
    let mut n = 0u64;
    let mut send = async |traffic: &mut Traffic| {
        let text = format!("m{n}");
        n += 1;
        if send_answered(sender, &text).await {
            traffic.acked.push(text);
            acked.send_modify(|n| *n += 1);
        } else {
            traffic.refused += 1;
        }
        // Pacing, not waiting: spreads the sends over the restarts.
        tokio::time::sleep(PACE).await;
    };
    while !restarts.is_finished() {
        send(&mut traffic).await;
    }
    let service = restarts.await.unwrap();
    let after = *acked.borrow() + ACKS_BETWEEN;
    let deadline = Instant::now() + RECOVERY;
    while *acked.borrow() < after {
        assert!(
            Instant::now() < deadline,
            "frames still refused after {RECOVERY:?}"
        );
        send(&mut traffic).await;
    }
    (traffic, service)
}

/// Reads MSGs on channel 7 until every text in `expected` arrived; asserts they came in order
/// and once each.
async fn receives_all(receiver: &mut Client, expected: &[String]) {
    let wanted: HashSet<&str> = expected.iter().map(String::as_str).collect();
    let mut got: Vec<String> = Vec::new();
    while !wanted.iter().all(|t| got.iter().any(|g| g == t)) {
        let Some(frame) = receiver.recv_within(common::WAIT).await else {
            let missing: Vec<&&str> = wanted
                .iter()
                .filter(|t| !got.iter().any(|g| g == **t))
                .collect();
            panic!(
                "{} of {} ACKed frames never arrived: {missing:?}",
                missing.len(),
                wanted.len()
            );
        };
        if frame.frame_type() == FrameType::Msg && frame.channel_id() == 7 {
            got.push(String::from_utf8(frame.payload().to_vec()).unwrap());
        }
    }
    let acked_arrivals: Vec<&String> = got.iter().filter(|g| wanted.contains(g.as_str())).collect();
    assert_eq!(acked_arrivals.len(), expected.len(), "duplicates");
    assert!(
        acked_arrivals.iter().zip(expected).all(|(a, b)| *a == b),
        "out of order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn postgres_restarted_during_traffic_loses_nothing_acknowledged() {
    if let Some(why) = services::missing_postgres() {
        panic!("throwaway PostgreSQL {why}");
    }
    let mut postgres = tokio::task::spawn_blocking(ThrowawayPostgres::start)
        .await
        .unwrap();
    let url = postgres.url();
    let server = TestServer::start(|c| {
        c.store.url = Some(url);
        c.store.acquire_timeout = Duration::from_secs(1);
    })
    .await;
    let mut alice = server.connect("alice-pgr").await;
    alice.join(7, true).await;
    let mut bob = server.connect("bob-pgr").await;
    bob.join(7, true).await;
    let bob_identity = bob.identity.clone();
    bob.close();
    wait_offline(&mut alice, "bob-pgr").await;

    // Every frame from here on must be stored for bob; the cluster is stopped at once (as a
    // crash would) and started again twice while alice sends.
    let acked = Arc::new(watch::Sender::new(0));
    let counter = Arc::clone(&acked);
    let runtime = tokio::runtime::Handle::current();
    let restarts = tokio::task::spawn_blocking(move || {
        for round in 1..=RESTARTS {
            wait_acked(
                &runtime,
                &counter,
                ACKS_BETWEEN * u64::try_from(round).unwrap(),
            );
            postgres.kill();
            postgres.resume();
        }
        postgres
    });
    let (traffic, _postgres) = traffic_until(&mut alice, &acked, restarts).await;
    eprintln!(
        "postgres restarted {RESTARTS} times: {} frames ACKed, {} refused",
        traffic.acked.len(),
        traffic.refused
    );

    // The service is back: ready, handshakes work, alice's session lived through it, and bob
    // gets every ACKed frame, in order, once.
    readyz_becomes(&server, 200, RECOVERY).await;
    try_connect(&server, "carol-pgr").await.unwrap();
    let mut bob = server.connect_as(bob_identity).await;
    receives_all(&mut bob, &traffic.acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
async fn redis_restarted_during_traffic_loses_nothing_and_refuses_nothing() {
    if let Some(why) = services::missing_redis() {
        panic!("throwaway Redis {why}");
    }
    let mut redis = tokio::task::spawn_blocking(ThrowawayRedis::start)
        .await
        .unwrap();
    let server = TestServer::start(|c| {
        c.presence.redis_url = Some(redis.url());
        c.presence.node_id = Some("node-restarts".to_owned());
    })
    .await;
    let mut alice = server.connect("alice-rdr").await;
    alice.join(7, true).await;
    let mut bob = server.connect("bob-rdr").await;
    bob.join(7, true).await;
    let mut carol = server.connect("carol-rdr").await;
    carol.join(7, true).await;
    let carol_identity = carol.identity.clone();
    carol.close();
    wait_offline(&mut alice, "carol-rdr").await;

    // bob receives live while alice sends; carol's copies go to the offline queue.
    let (bob_texts, bob_done) = tokio::sync::oneshot::channel::<Vec<String>>();
    let bob_reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        loop {
            let frame = bob.recv_on(FrameType::Msg, 7).await;
            let text = String::from_utf8(frame.payload().to_vec()).unwrap();
            if text == "end" {
                let _ = bob_texts.send(texts);
                return bob;
            }
            texts.push(text);
        }
    });
    let acked = Arc::new(watch::Sender::new(0));
    let counter = Arc::clone(&acked);
    let runtime = tokio::runtime::Handle::current();
    let restarts = tokio::task::spawn_blocking(move || {
        for round in 1..=RESTARTS {
            wait_acked(
                &runtime,
                &counter,
                ACKS_BETWEEN * u64::try_from(round).unwrap(),
            );
            redis.kill();
            redis.resume();
        }
        redis
    });
    let (traffic, redis) = traffic_until(&mut alice, &acked, restarts).await;
    eprintln!(
        "redis restarted {RESTARTS} times: {} frames ACKed, {} refused",
        traffic.acked.len(),
        traffic.refused
    );
    // Presence is best effort: no frame is refused because Redis is away.
    assert_eq!(traffic.refused, 0);
    alice.say(7, "end").await;
    let live = bob_done.await.unwrap();
    let _bob = bob_reader.await.unwrap();
    assert_eq!(live, traffic.acked, "bob's live copies");

    // The registry is written again after the restarts, and carol gets every frame offline.
    readyz_becomes(&server, 200, RECOVERY).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut carol = server.connect_as(carol_identity).await;
    eventually("the route of carol-rdr", RECOVERY, || {
        let mut conn = conn.clone();
        async move {
            let node: Option<String> = redis::cmd("GET")
                .arg("route:carol-rdr")
                .query_async(&mut conn)
                .await
                .unwrap();
            (node.as_deref() == Some("node-restarts")).then_some(())
        }
    })
    .await;
    let mut expected = traffic.acked.clone();
    expected.push("end".to_owned());
    receives_all(&mut carol, &expected).await;
}
