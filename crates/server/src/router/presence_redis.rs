//! The Redis presence registry: one key `<prefix>presence:<device>` per device holding the
//! snapshot JSON `{entity,state,expires_at,user}` (seed 001 "Presence Metadata", wire-compat
//! §10) plus `expires_at_unix`, written with `SET … EX <ttl>` so Redis forgets it at expiry.
//!
//! Routes are `<prefix>route:<device>` holding the serving node's id, also with a TTL; a route
//! is removed only by the node it names (compare-and-delete in one Lua script).
//!
//! Markers of [`Presence::mark_once`] are `<prefix>once:<marker>` (`SET NX EX`), e.g.
//! `once:ik:<hex ephemeral>` for the IK replay cache shared by the nodes.
//!
//! Commands go through a [`ConnectionManager`] that reconnects in the background; connection
//! and response timeouts make a Redis outage an immediate [`PresenceError`] instead of a hang.

use std::time::Duration;

use commucat_ccp::control::PresenceSnapshot;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::presence::{Presence, PresenceEntry, PresenceError};

/// Time allowed to open a connection to Redis.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for one command's reply.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The stored value: the snapshot peers receive, plus the expiry as Unix seconds.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    snapshot: PresenceSnapshot,
    expires_at_unix: i64,
}

/// Presence snapshots in Redis, shared by every node of a deployment.
#[derive(Clone)]
pub struct RedisPresence {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisPresence {
    /// Connects to `url` (`redis://` or `rediss://`); keys are `<key_prefix>presence:<device>`.
    ///
    /// Fails (within about [`CONNECT_TIMEOUT`]) when Redis cannot be reached.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, PresenceError> {
        let client = redis::Client::open(url).map_err(error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(error)?;
        Ok(Self {
            connection,
            prefix: key_prefix.to_owned(),
        })
    }

    /// The Redis key of `device_id`.
    #[must_use]
    pub fn key(&self, device_id: &str) -> String {
        format!("{}presence:{device_id}", self.prefix)
    }

    /// The Redis key of a [`Presence::mark_once`] marker.
    #[must_use]
    pub fn once_key(&self, marker: &str) -> String {
        format!("{}once:{marker}", self.prefix)
    }

    /// The Redis key of `device_id`'s route.
    #[must_use]
    pub fn route_key(&self, device_id: &str) -> String {
        format!("{}route:{device_id}", self.prefix)
    }
}

/// Deletes `KEYS[1]` only if it holds `ARGV[1]`.
const DELETE_IF_OWNED: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[2]` seconds if it is absent or already holds
/// `ARGV[1]`; 1 when set.
pub(crate) const REFRESH_IF_OWNED: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return 1
end
return 0
";

#[allow(clippy::needless_pass_by_value)] // used as `map_err(error)`
fn error(err: redis::RedisError) -> PresenceError {
    PresenceError(format!("redis: {err}"))
}

#[async_trait::async_trait]
impl Presence for RedisPresence {
    async fn set(&self, device_id: &str, entry: PresenceEntry) -> Result<(), PresenceError> {
        let ttl = u64::try_from(entry.expires_at.saturating_sub(crate::clock::unix_now()))
            .unwrap_or(0)
            .max(1);
        let value = serde_json::to_string(&Stored {
            snapshot: entry.snapshot,
            expires_at_unix: entry.expires_at,
        })
        .map_err(|err| PresenceError(format!("encoding snapshot: {err}")))?;
        let mut connection = self.connection.clone();
        connection
            .set_ex::<_, _, ()>(self.key(device_id), value, ttl)
            .await
            .map_err(error)
    }

    async fn get(&self, device_id: &str, now: i64) -> Result<Option<PresenceEntry>, PresenceError> {
        let mut connection = self.connection.clone();
        let value: Option<String> = connection.get(self.key(device_id)).await.map_err(error)?;
        let Some(value) = value else {
            return Ok(None);
        };
        let stored: Stored = serde_json::from_str(&value)
            .map_err(|err| PresenceError(format!("malformed snapshot for {device_id}: {err}")))?;
        if stored.expires_at_unix <= now {
            return Ok(None);
        }
        Ok(Some(PresenceEntry {
            snapshot: stored.snapshot,
            expires_at: stored.expires_at_unix,
        }))
    }

    async fn remove(&self, device_id: &str) -> Result<(), PresenceError> {
        let mut connection = self.connection.clone();
        connection
            .del::<_, ()>(self.key(device_id))
            .await
            .map_err(error)
    }

    async fn set_route(
        &self,
        device_id: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<(), PresenceError> {
        let mut connection = self.connection.clone();
        connection
            .set_ex::<_, _, ()>(self.route_key(device_id), node, ttl.as_secs().max(1))
            .await
            .map_err(error)
    }

    async fn refresh_route(
        &self,
        device_id: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, PresenceError> {
        let mut connection = self.connection.clone();
        let set: i64 = redis::cmd("EVAL")
            .arg(REFRESH_IF_OWNED)
            .arg(1)
            .arg(self.route_key(device_id))
            .arg(node)
            .arg(ttl.as_secs().max(1))
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        Ok(set > 0)
    }

    async fn route(&self, device_id: &str) -> Result<Option<String>, PresenceError> {
        let mut connection = self.connection.clone();
        connection
            .get(self.route_key(device_id))
            .await
            .map_err(error)
    }

    async fn remove_route(&self, device_id: &str, node: &str) -> Result<bool, PresenceError> {
        let mut connection = self.connection.clone();
        let removed: i64 = redis::cmd("EVAL")
            .arg(DELETE_IF_OWNED)
            .arg(1)
            .arg(self.route_key(device_id))
            .arg(node)
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        Ok(removed > 0)
    }

    async fn mark_once(&self, marker: &str, ttl: Duration) -> Result<bool, PresenceError> {
        let mut connection = self.connection.clone();
        // `SET … NX EX`: "OK" when the key was created, nil when it already existed.
        let created: Option<String> = redis::cmd("SET")
            .arg(self.once_key(marker))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        Ok(created.is_some())
    }

    async fn ping(&self) -> Result<(), PresenceError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
