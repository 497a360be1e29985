//! Presence through the real server: snapshots `{entity, state, expires_at, user}` fanned out to
//! devices sharing a channel, `offline` on expiry (1 s TTL here) and on disconnect, and the
//! live snapshots a joiner receives. Every scenario runs on the in-process registry and, when
//! `COMMUCAT_TEST_REDIS` is set, again on the Redis registry (checking the keys it writes).

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{Client, TestServer, WAIT, eventually};
use commucat_ccp::FrameType;
use commucat_ccp::control::PresenceSnapshot;
use rand_core::{OsRng, RngCore};
use redis::AsyncCommands;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

async fn snapshot(client: &mut Client) -> PresenceSnapshot {
    client
        .recv_on(FrameType::Presence, 0)
        .await
        .parse_control()
        .unwrap()
}

/// Parses the RFC 3339 UTC form the server writes (`2026-01-02T03:04:05Z`) into Unix seconds.
fn unix(rfc3339: &str) -> i64 {
    assert_eq!(rfc3339.len(), 20, "{rfc3339}");
    assert!(
        rfc3339.ends_with('Z') && &rfc3339[10..11] == "T",
        "{rfc3339}"
    );
    let n = |range: std::ops::Range<usize>| rfc3339[range].parse::<u8>().unwrap();
    let year: i32 = rfc3339[0..4].parse().unwrap();
    let month = time::Month::try_from(n(5..7)).unwrap();
    let date = time::Date::from_calendar_date(year, month, n(8..10)).unwrap();
    let clock = time::Time::from_hms(n(11..13), n(14..16), n(17..19)).unwrap();
    time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp()
}

/// Set to a Redis URL (`redis://127.0.0.1:6379`) to run the scenarios on Redis presence too.
const REDIS_ENV: &str = "COMMUCAT_TEST_REDIS";

/// A Redis the server under test uses, with this test's own key prefix.
struct RedisProbe {
    url: String,
    prefix: String,
    connection: redis::aio::MultiplexedConnection,
}

impl RedisProbe {
    /// `None` when `COMMUCAT_TEST_REDIS` is unset; panics when it is set but Redis is down.
    async fn from_env() -> Option<Self> {
        let url = std::env::var(REDIS_ENV)
            .ok()
            .filter(|url| !url.trim().is_empty())?;
        let client = redis::Client::open(url.as_str()).unwrap();
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .unwrap_or_else(|_| panic!("{REDIS_ENV}={url}: connect timed out"))
        .unwrap_or_else(|err| panic!("{REDIS_ENV}={url} is set but unreachable: {err}"));
        Some(Self {
            url,
            prefix: format!("commucat-it-{:016x}:", OsRng.next_u64()),
            connection,
        })
    }

    /// A server using this Redis for presence, with `tweak` applied too.
    async fn server(&self, tweak: impl FnOnce(&mut commucat_server::Config)) -> TestServer {
        TestServer::start(|c| {
            c.presence.redis_url = Some(self.url.clone());
            c.presence.key_prefix.clone_from(&self.prefix);
            tweak(c);
        })
        .await
    }

    /// The JSON stored for `device`, if any.
    async fn stored(&self, device: &str) -> Option<Value> {
        let raw: Option<String> = self
            .connection
            .clone()
            .get(format!("{}presence:{device}", self.prefix))
            .await
            .unwrap();
        raw.map(|raw| serde_json::from_str(&raw).unwrap())
    }

    /// The node id stored in `route:<device>` and its TTL (seconds), if the key exists.
    async fn route(&self, device: &str) -> Option<(String, i64)> {
        let key = format!("{}route:{device}", self.prefix);
        let mut connection = self.connection.clone();
        let node: Option<String> = connection.get(&key).await.unwrap();
        let ttl: i64 = connection.ttl(&key).await.unwrap();
        node.map(|node| (node, ttl))
    }

    /// Deletes every key under the prefix.
    async fn cleanup(mut self) {
        let keys: Vec<String> = self
            .connection
            .keys(format!("{}*", self.prefix))
            .await
            .unwrap();
        if !keys.is_empty() {
            self.connection.del::<_, ()>(keys).await.unwrap();
        }
    }
}

#[tokio::test]
async fn snapshots_reach_channel_peers_and_expire_without_refresh() {
    let server = TestServer::start(|c| c.session.presence_ttl = Duration::from_secs(1)).await;
    fan_out_and_expiry(&server, None).await;
}

#[tokio::test]
#[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
async fn redis_snapshots_reach_channel_peers_and_expire_without_refresh() {
    let redis = RedisProbe::from_env()
        .await
        .expect("COMMUCAT_TEST_REDIS is set");
    let server = redis
        .server(|c| c.session.presence_ttl = Duration::from_secs(1))
        .await;
    fan_out_and_expiry(&server, Some(&redis)).await;
    redis.cleanup().await;
}

#[tokio::test]
async fn joiners_see_live_snapshots_and_disconnects_announce_offline() {
    let server = TestServer::start(|_| {}).await;
    joiners_and_disconnects(&server, None).await;
}

#[tokio::test]
#[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
async fn redis_joiners_see_live_snapshots_and_disconnects_announce_offline() {
    let redis = RedisProbe::from_env()
        .await
        .expect("COMMUCAT_TEST_REDIS is set");
    let server = redis.server(|_| {}).await;
    joiners_and_disconnects(&server, Some(&redis)).await;
    redis.cleanup().await;
}

async fn fan_out_and_expiry(server: &TestServer, redis: Option<&RedisProbe>) {
    let mut alice = server.connect("alice-pr").await;
    let mut bob = server.connect("bob-pr").await;
    let mut carol = server.connect("carol-pr").await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    alice.members_become(7, &["alice-pr", "bob-pr"]).await;
    carol.join(8, true).await;

    let started = Instant::now();
    let seq = alice
        .control(FrameType::Presence, 0, &json!({"state": "online"}))
        .await;
    alice.ack(seq).await;
    let online = snapshot(&mut bob).await;
    assert_eq!(online.entity, "alice-pr");
    assert_eq!(online.state, "online");
    let expires = unix(online.expires_at.as_deref().unwrap());
    assert!((expires - common::unix_now()).abs() <= 2, "{expires}");
    let user = online.user.unwrap();
    assert_eq!(user.handle.as_deref(), Some("alice_pr"));
    assert!(user.resolved_id().is_some());

    // No refresh: after the TTL bob learns alice is offline.
    let offline = snapshot(&mut bob).await;
    assert_eq!(
        (offline.entity.as_str(), offline.state.as_str()),
        ("alice-pr", "offline")
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    if let Some(redis) = redis {
        assert_eq!(redis.stored("alice-pr").await, None, "expired in Redis");
    }
    // carol shares no channel with alice and hears nothing; alice's own state is not echoed.
    carol.expect_quiet(QUIET).await;
    alice.expect_quiet(QUIET).await;

    // A refresh keeps it alive: two updates 600 ms apart, then one expiry.
    for state in ["busy", "away"] {
        let seq = alice
            .control(FrameType::Presence, 0, &json!({"state": state}))
            .await;
        alice.ack(seq).await;
        assert_eq!(snapshot(&mut bob).await.state, state);
        // Time passing is what is tested: 600 ms is within the 1 s TTL of each update.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(snapshot(&mut bob).await.state, "offline");
    bob.expect_quiet(QUIET).await;

    let seq = alice
        .control(FrameType::Presence, 0, &json!({"status": "wrong key"}))
        .await;
    alice.error(seq, "Invalid Control Payload").await;
}

async fn joiners_and_disconnects(server: &TestServer, redis: Option<&RedisProbe>) {
    let mut alice = server.connect("alice-pj").await;
    let mut bob = server.connect("bob-pj").await;
    alice.join(7, true).await;
    bob.join(7, true).await;
    let seq = alice
        .control(FrameType::Presence, 0, &json!({"state": "coding"}))
        .await;
    alice.ack(seq).await;
    let coding = snapshot(&mut bob).await;
    assert_eq!(coding.state, "coding");
    if let Some(redis) = redis {
        // The key holds what bob received, plus the expiry as Unix seconds.
        let stored = redis
            .stored("alice-pj")
            .await
            .expect("presence key in Redis");
        let expires_at = coding.expires_at.as_deref().unwrap();
        let mut expected = serde_json::to_value(&coding).unwrap();
        expected["expires_at_unix"] = json!(unix(expires_at));
        assert_eq!(stored, expected);
        assert_eq!(stored["entity"], "alice-pj");
        assert_eq!(stored["user"]["handle"], "alice_pj");
        let ttl: i64 = redis
            .connection
            .clone()
            .ttl(format!("{}presence:alice-pj", redis.prefix))
            .await
            .unwrap();
        assert!((1..=60).contains(&ttl), "TTL {ttl}");
    }

    // dave joins later and is told alice's current state right after his JOIN.
    let mut dave = server.connect("dave-pj").await;
    dave.join(7, true).await;
    let seen = snapshot(&mut dave).await;
    assert_eq!(
        (seen.entity.as_str(), seen.state.as_str()),
        ("alice-pj", "coding")
    );
    dave.expect_quiet(QUIET).await;

    // alice leaves: both peers get `offline`.
    alice.close();
    for peer in [&mut bob, &mut dave] {
        let gone = snapshot(peer).await;
        assert_eq!(
            (gone.entity.as_str(), gone.state.as_str()),
            ("alice-pj", "offline")
        );
    }
    if let Some(redis) = redis {
        assert_eq!(
            redis.stored("alice-pj").await,
            None,
            "removed on disconnect"
        );
    }
    // A new joiner sees no stale snapshot of alice.
    let mut erin = server.connect("erin-pj").await;
    erin.join(7, true).await;
    erin.expect_quiet(QUIET).await;
}

/// An established session writes `route:<device>` → this node's id (with the route TTL), a
/// newer session of the same device keeps it, and the end of the last session removes it.
#[tokio::test]
#[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
async fn redis_sessions_publish_and_withdraw_their_route() {
    let redis = RedisProbe::from_env()
        .await
        .expect("COMMUCAT_TEST_REDIS is set");
    let server = redis
        .server(|c| c.presence.node_id = Some("node-it".to_owned()))
        .await;
    let alice = server.connect("alice-r").await;
    let ttl = i64::try_from(commucat_server::session::established::ROUTE_TTL.as_secs()).unwrap();
    let (node, left) = redis.route("alice-r").await.expect("route written");
    assert_eq!(node, "node-it");
    assert!((ttl - 5..=ttl).contains(&left), "TTL {left}");
    assert_eq!(redis.route("bob-r").await, None);

    // The same device connects again: the older session is replaced, the route stays.
    let identity = alice.identity.clone();
    let again = server.connect_as(identity).await;
    // The replaced session has ended (and cleaned up after itself) once one session is left.
    server.metric_becomes("commucat_sessions_active ", 1).await;
    assert_eq!(
        redis.route("alice-r").await.map(|r| r.0).as_deref(),
        Some("node-it")
    );
    drop(alice);
    assert_eq!(
        redis.route("alice-r").await.map(|r| r.0).as_deref(),
        Some("node-it")
    );

    // The last session ends: the route goes.
    drop(again);
    eventually(
        "the route's removal after the session ended",
        WAIT,
        || async { redis.route("alice-r").await.is_none().then_some(()) },
    )
    .await;
    redis.cleanup().await;
}

/// An unreachable `presence.redis_url` stops startup quickly with an error naming the URL
/// (password hidden).
#[tokio::test]
async fn bind_fails_fast_naming_an_unreachable_redis() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = commucat_server::Config::default();
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.path().to_owned();
    config.presence.redis_url = Some("redis://:hunter2@127.0.0.1:1/0".to_owned());
    let started = Instant::now();
    let error = commucat_server::Server::bind(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("presence registry redis://:***@127.0.0.1:1/0: "),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
}
