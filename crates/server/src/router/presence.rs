//! The presence registry: each device's last PRESENCE snapshot, valid until it expires.
//!
//! [`Presence`] is the seam for a shared registry (Redis keys with a TTL, as the reference's
//! `presence:<device>`, [`super::presence_redis::RedisPresence`]) when several nodes serve one
//! deployment; [`LocalPresence`] keeps the snapshots in this process. Expiry *notifications* do
//! not come from the registry: the session that published a snapshot holds a timer and
//! announces `offline` when it fires.
//!
//! The registry also keeps each connected device's *route*: the id of the node serving it
//! (`route:<device>` in Redis), written with a TTL when a session is established, refreshed
//! while it lasts (unless another node took the device over) and removed when it ends. The
//! other nodes read routes to reach the device ([`crate::cluster`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use commucat_ccp::control::PresenceSnapshot;

/// Lifetime of a `route:<device>` entry: a node that dies without cleaning up stops claiming its
/// devices after this.
pub const ROUTE_TTL: Duration = Duration::from_secs(90);
/// How often a connected session rewrites its route (a third of [`ROUTE_TTL`]).
pub const ROUTE_REFRESH: Duration = Duration::from_secs(30);

/// A registry backend failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("presence registry unavailable: {0}")]
pub struct PresenceError(pub String);

/// A stored snapshot and when it stops counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The snapshot peers receive (`entity` always set).
    pub snapshot: PresenceSnapshot,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Where presence snapshots live.
#[async_trait::async_trait]
pub trait Presence: Send + Sync + std::fmt::Debug {
    /// Stores the device's snapshot (replacing the previous one).
    async fn set(&self, device_id: &str, entry: PresenceEntry) -> Result<(), PresenceError>;

    /// The device's snapshot, unless absent or expired at `now` (Unix seconds).
    async fn get(&self, device_id: &str, now: i64) -> Result<Option<PresenceEntry>, PresenceError>;

    /// Forgets the device's snapshot.
    async fn remove(&self, device_id: &str) -> Result<(), PresenceError>;

    /// Records that `node` serves `device_id`, for `ttl` (replacing any other route).
    async fn set_route(
        &self,
        device_id: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<(), PresenceError>;

    /// Moves the expiry of `device_id`'s route to `ttl` from now if it still names `node`, or
    /// records it if it expired; a route another node took over meanwhile is left alone.
    /// Returns whether the route names `node` now.
    async fn refresh_route(
        &self,
        device_id: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, PresenceError> {
        match self.route(device_id).await? {
            Some(owner) if owner != node => Ok(false),
            _ => self.set_route(device_id, node, ttl).await.map(|()| true),
        }
    }

    /// The node serving `device_id`, unless none is recorded or the route expired.
    async fn route(&self, device_id: &str) -> Result<Option<String>, PresenceError>;

    /// Forgets the route of `device_id` if it still names `node` (a device that meanwhile
    /// connected to another node keeps that route); returns whether it was removed.
    async fn remove_route(&self, device_id: &str, node: &str) -> Result<bool, PresenceError>;

    /// Cheap round trip for readiness checks; `Ok` for the in-process registry.
    async fn ping(&self) -> Result<(), PresenceError> {
        Ok(())
    }

    /// Records `marker` for `ttl` unless another node of the deployment recorded it first;
    /// whether it is new. Nodes use it to refuse a replayed IK HELLO that another node accepted.
    /// The in-process registry shares nothing and answers `true` (the node's own replay cache
    /// covers it).
    async fn mark_once(&self, marker: &str, ttl: Duration) -> Result<bool, PresenceError> {
        let _ = (marker, ttl);
        Ok(true)
    }

    /// What backs the registry, for logs and readiness reports (`"local"`, `"redis"`).
    fn backend(&self) -> &'static str;
}

/// The in-process registry (one node).
#[derive(Debug, Default)]
pub struct LocalPresence {
    entries: Mutex<HashMap<String, PresenceEntry>>,
    /// device → (node, expiry)
    routes: Mutex<HashMap<String, (String, Instant)>>,
}

impl LocalPresence {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, PresenceEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Presence for LocalPresence {
    async fn set(&self, device_id: &str, entry: PresenceEntry) -> Result<(), PresenceError> {
        self.entries().insert(device_id.to_owned(), entry);
        Ok(())
    }

    async fn get(&self, device_id: &str, now: i64) -> Result<Option<PresenceEntry>, PresenceError> {
        let mut entries = self.entries();
        match entries.get(device_id) {
            Some(entry) if entry.expires_at > now => Ok(Some(entry.clone())),
            Some(_) => {
                entries.remove(device_id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn remove(&self, device_id: &str) -> Result<(), PresenceError> {
        self.entries().remove(device_id);
        Ok(())
    }

    async fn set_route(
        &self,
        device_id: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<(), PresenceError> {
        self.routes().insert(
            device_id.to_owned(),
            (node.to_owned(), Instant::now() + ttl),
        );
        Ok(())
    }

    async fn route(&self, device_id: &str) -> Result<Option<String>, PresenceError> {
        let mut routes = self.routes();
        match routes.get(device_id) {
            Some((node, expires)) if *expires > Instant::now() => Ok(Some(node.clone())),
            Some(_) => {
                routes.remove(device_id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn remove_route(&self, device_id: &str, node: &str) -> Result<bool, PresenceError> {
        let mut routes = self.routes();
        if routes
            .get(device_id)
            .is_some_and(|(owner, _)| owner == node)
        {
            routes.remove(device_id);
            return Ok(true);
        }
        Ok(false)
    }

    fn backend(&self) -> &'static str {
        "local"
    }
}

pub use crate::clock::rfc3339;

#[cfg(test)]
mod tests;
