//! The presence registry: each device's last PRESENCE snapshot, valid until it expires.
//!
//! [`Presence`] is the seam for a shared registry (Redis keys with a TTL, as the reference's
//! `presence:<device>`) when several nodes serve one deployment; [`LocalPresence`] keeps the
//! snapshots in this process. Expiry *notifications* do not come from the registry: the
//! session that published a snapshot holds a timer and announces `offline` when it fires.

use std::collections::HashMap;
use std::sync::Mutex;

use ccp::control::PresenceSnapshot;

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
}

/// The in-process registry (one node).
#[derive(Debug, Default)]
pub struct LocalPresence {
    entries: Mutex<HashMap<String, PresenceEntry>>,
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
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp (`2026-01-02T03:04:05Z`).
#[must_use]
pub fn rfc3339(unix_secs: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: &str, expires_at: i64) -> PresenceEntry {
        PresenceEntry {
            snapshot: PresenceSnapshot {
                entity: "dev-a".to_owned(),
                state: state.to_owned(),
                expires_at: Some(rfc3339(expires_at)),
                user: None,
            },
            expires_at,
        }
    }

    #[tokio::test]
    async fn snapshots_expire_and_can_be_removed() {
        let registry = LocalPresence::new();
        assert_eq!(registry.get("dev-a", 0).await.unwrap(), None);
        registry.set("dev-a", entry("online", 100)).await.unwrap();
        assert_eq!(
            registry
                .get("dev-a", 99)
                .await
                .unwrap()
                .unwrap()
                .snapshot
                .state,
            "online"
        );
        assert_eq!(registry.get("dev-a", 100).await.unwrap(), None);
        registry.set("dev-a", entry("away", 200)).await.unwrap();
        registry.remove("dev-a").await.unwrap();
        assert_eq!(registry.get("dev-a", 0).await.unwrap(), None);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
