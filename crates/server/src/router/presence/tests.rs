//! One presence suite for every backend: each behaviour is an async body taking
//! `Arc<dyn Presence>`, run against [`LocalPresence`] always and against
//! [`RedisPresence`] when `COMMUCAT_TEST_REDIS` is set (then an unreachable Redis fails the
//! test). Each Redis test uses its own random key prefix and deletes its keys afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commucat_ccp::control::UserInfo;
use rand_core::{OsRng, RngCore};
use redis::AsyncCommands;

use super::*;
use crate::router::presence_redis::RedisPresence;

/// Set to a Redis URL (`redis://127.0.0.1:6379`) to run the suite against Redis too.
const REDIS_ENV: &str = "COMMUCAT_TEST_REDIS";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn entry(device: &str, state: &str, expires_at: i64) -> PresenceEntry {
    PresenceEntry {
        snapshot: PresenceSnapshot {
            entity: device.to_owned(),
            state: state.to_owned(),
            expires_at: Some(rfc3339(expires_at)),
            user: Some(UserInfo {
                id: Some("user-1".to_owned()),
                user_id: Some("user-1".to_owned()),
                handle: Some("alice".to_owned()),
                display_name: Some("Alice".to_owned()),
                avatar_url: None,
            }),
        },
        expires_at,
    }
}

// ---------------------------------------------------------------- behaviours

async fn set_get_replace(registry: Arc<dyn Presence>) {
    let now = now();
    let online = entry("dev-a", "online", now + 60);
    registry.set("dev-a", online.clone()).await.unwrap();
    assert_eq!(registry.get("dev-a", now).await.unwrap(), Some(online));

    let away = entry("dev-a", "away", now + 120);
    registry.set("dev-a", away.clone()).await.unwrap();
    assert_eq!(registry.get("dev-a", now).await.unwrap(), Some(away));
    assert_eq!(registry.get("dev-b", now).await.unwrap(), None);
}

async fn expires_after_ttl(registry: Arc<dyn Presence>) {
    let now = now();
    let short = entry("dev-a", "online", now + 1);
    registry.set("dev-a", short.clone()).await.unwrap();
    assert_eq!(registry.get("dev-a", now).await.unwrap(), Some(short));
    // Past its expiry a snapshot never counts, whether or not the backend dropped it yet.
    let later = entry("dev-b", "online", now + 60);
    registry.set("dev-b", later).await.unwrap();
    assert_eq!(registry.get("dev-b", now + 60).await.unwrap(), None);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(registry.get("dev-a", self::now()).await.unwrap(), None);
}

async fn remove_forgets(registry: Arc<dyn Presence>) {
    let now = now();
    registry
        .set("dev-a", entry("dev-a", "online", now + 60))
        .await
        .unwrap();
    registry
        .set("dev-b", entry("dev-b", "busy", now + 60))
        .await
        .unwrap();
    registry.remove("dev-a").await.unwrap();
    assert_eq!(registry.get("dev-a", now).await.unwrap(), None);
    assert_eq!(
        registry
            .get("dev-b", now)
            .await
            .unwrap()
            .unwrap()
            .snapshot
            .state,
        "busy"
    );
}

async fn absent_device(registry: Arc<dyn Presence>) {
    assert_eq!(registry.get("never-seen", now()).await.unwrap(), None);
    registry.remove("never-seen").await.unwrap();
    assert_eq!(registry.get("never-seen", 0).await.unwrap(), None);
}

async fn routes_name_the_serving_node(registry: Arc<dyn Presence>) {
    let ttl = Duration::from_secs(60);
    assert_eq!(registry.route("dev-a").await.unwrap(), None);
    registry.set_route("dev-a", "node-1", ttl).await.unwrap();
    assert_eq!(
        registry.route("dev-a").await.unwrap().as_deref(),
        Some("node-1")
    );
    // The device moves to another node: the old node's clean-up leaves the new route alone.
    registry.set_route("dev-a", "node-2", ttl).await.unwrap();
    assert!(!registry.remove_route("dev-a", "node-1").await.unwrap());
    assert_eq!(
        registry.route("dev-a").await.unwrap().as_deref(),
        Some("node-2")
    );
    assert!(registry.remove_route("dev-a", "node-2").await.unwrap());
    assert_eq!(registry.route("dev-a").await.unwrap(), None);
    assert!(!registry.remove_route("dev-a", "node-2").await.unwrap());
    // Routes and snapshots are separate entries.
    registry.set_route("dev-b", "node-1", ttl).await.unwrap();
    assert_eq!(registry.get("dev-b", now()).await.unwrap(), None);
}

async fn routes_expire_without_refresh(registry: Arc<dyn Presence>) {
    registry
        .set_route("dev-a", "node-1", Duration::from_secs(1))
        .await
        .unwrap();
    registry
        .set_route("dev-b", "node-1", Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(registry.route("dev-a").await.unwrap(), None);
    assert_eq!(
        registry.route("dev-b").await.unwrap().as_deref(),
        Some("node-1")
    );
}

async fn registry_answers_pings(registry: Arc<dyn Presence>) {
    registry.ping().await.unwrap();
    assert!(["local", "redis"].contains(&registry.backend()));
}

// ---------------------------------------------------------------- backends

/// A registry under test and, for Redis, what to clean up afterwards.
struct Backend {
    registry: Arc<dyn Presence>,
    redis: Option<(redis::Client, String)>,
}

impl Backend {
    fn local() -> Self {
        Self {
            registry: Arc::new(LocalPresence::new()),
            redis: None,
        }
    }

    /// `None` when `COMMUCAT_TEST_REDIS` is unset; panics when it is set but Redis is down.
    async fn redis() -> Option<Self> {
        let url = std::env::var(REDIS_ENV)
            .ok()
            .filter(|url| !url.trim().is_empty())?;
        let prefix = format!("commucat-test-{:016x}:", OsRng.next_u64());
        let registry = RedisPresence::connect(&url, &prefix)
            .await
            .unwrap_or_else(|err| panic!("{REDIS_ENV}={url} is set but unusable: {err}"));
        let client = redis::Client::open(url.as_str()).unwrap();
        Some(Self {
            registry: Arc::new(registry),
            redis: Some((client, prefix)),
        })
    }

    /// Deletes every key under the test's prefix.
    async fn cleanup(self) {
        if let Some((client, prefix)) = self.redis {
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = connection.keys(format!("{prefix}*")).await.unwrap();
            if !keys.is_empty() {
                connection.del::<_, ()>(keys).await.unwrap();
            }
        }
    }
}

macro_rules! suite {
    ($($behaviour:ident),* $(,)?) => {
        mod on_local {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let backend = super::Backend::local();
                    super::$behaviour(Arc::clone(&backend.registry)).await;
                    backend.cleanup().await;
                }
            )*
            use std::sync::Arc;
        }

        mod on_redis {
            $(
                #[tokio::test]
                #[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
                async fn $behaviour() {
                    let backend = super::Backend::redis().await.expect("COMMUCAT_TEST_REDIS is set");
                    super::$behaviour(Arc::clone(&backend.registry)).await;
                    backend.cleanup().await;
                }
            )*
            use std::sync::Arc;
        }
    };
}

suite!(
    set_get_replace,
    expires_after_ttl,
    remove_forgets,
    absent_device,
    routes_name_the_serving_node,
    routes_expire_without_refresh,
    registry_answers_pings,
);

// ---------------------------------------------------------------- Redis specifics

/// The stored value is the seed's snapshot JSON plus the numeric expiry, with a matching TTL.
#[tokio::test]
#[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
async fn redis_keys_hold_the_snapshot_json_with_a_ttl() {
    let backend = Backend::redis().await.expect("COMMUCAT_TEST_REDIS is set");
    let (client, prefix) = backend.redis.clone().unwrap();
    let expires_at = now() + 60;
    backend
        .registry
        .set("dev-a", entry("dev-a", "online", expires_at))
        .await
        .unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}presence:dev-a");
    let raw: String = connection.get(&key).await.unwrap();
    let value: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "entity": "dev-a",
            "state": "online",
            "expires_at": rfc3339(expires_at),
            "user": {
                "id": "user-1",
                "user_id": "user-1",
                "handle": "alice",
                "display_name": "Alice",
            },
            "expires_at_unix": expires_at,
        })
    );
    let ttl: i64 = connection.ttl(&key).await.unwrap();
    assert!((55..=60).contains(&ttl), "TTL {ttl}");

    // An already expired snapshot still gets the minimum TTL of one second.
    backend
        .registry
        .set("dev-b", entry("dev-b", "online", now() - 5))
        .await
        .unwrap();
    let ttl: i64 = connection
        .ttl(format!("{prefix}presence:dev-b"))
        .await
        .unwrap();
    assert!((0..=1).contains(&ttl), "TTL {ttl}");
    backend.cleanup().await;
}

/// `route:<device>` holds the node id as a plain string, with the TTL asked for.
#[tokio::test]
#[cfg_attr(not(commucat_test_redis), ignore = "needs COMMUCAT_TEST_REDIS")]
async fn redis_route_keys_hold_the_node_id_with_a_ttl() {
    let backend = Backend::redis().await.expect("COMMUCAT_TEST_REDIS is set");
    let (client, prefix) = backend.redis.clone().unwrap();
    backend
        .registry
        .set_route("dev-a", "node-7", Duration::from_secs(90))
        .await
        .unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}route:dev-a");
    let raw: String = connection.get(&key).await.unwrap();
    assert_eq!(raw, "node-7");
    let ttl: i64 = connection.ttl(&key).await.unwrap();
    assert!((85..=90).contains(&ttl), "TTL {ttl}");
    backend.cleanup().await;
}

/// A Redis that is not there fails fast with a `PresenceError` instead of hanging.
#[tokio::test]
async fn unreachable_redis_fails_fast() {
    // Port 1 on loopback: nothing listens there.
    let started = Instant::now();
    let error = RedisPresence::connect("redis://127.0.0.1:1", "")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("redis"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
}
