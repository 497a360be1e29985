//! Every node's live sessions, for the operator console: each node keeps one bounded snapshot
//! of its sessions in Redis and a heartbeat in a shared sorted set; the console of any node
//! reads them all.
//!
//! - `<prefix>sessions:<node>`: a JSON [`Snapshot`] of at most [`MAX_LISTED`] sessions (by
//!   device id) and the node's total, with a TTL of [`SNAPSHOT_TTL`].
//! - `<prefix>session-nodes`: node id → time of its last snapshot (unix seconds); entries older
//!   than [`SNAPSHOT_TTL`] are dropped by every writer, so a crashed node disappears from both
//!   within that time.
//!
//! The snapshot is rewritten when the set of sessions changes (checked every
//! [`CHECK_INTERVAL`] with [`Hub::sessions_version`], which copies nothing) and at least every
//! [`REFRESH_INTERVAL`] (frame counts); a node that closes deletes both entries. Redis being away costs only the console's view of other nodes.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Cluster, error};
use crate::clock::unix_now;
use crate::router::presence::PresenceError;
use crate::router::{Hub, LiveSession};

/// How often a node looks for sessions that started or ended.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often a node rewrites its snapshot even when no session started or ended.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a snapshot (and its heartbeat) outlives its node's last write.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(30);
/// Most sessions one node's snapshot lists (the total is always given).
pub const MAX_LISTED: usize = 500;
/// Most nodes whose snapshots the console reads.
pub const MAX_NODES: usize = 64;

/// One session as another node's console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSession {
    /// The device.
    pub device: String,
    /// The account.
    pub user: String,
    /// The account's handle.
    pub handle: String,
    /// How the client connected.
    pub mode: String,
    /// When the session was established, unix seconds.
    pub since: i64,
    /// The client's address as its node saw it.
    pub remote: Option<String>,
    /// Frames read from the client.
    pub frames_in: u64,
    /// Frames written to the client.
    pub frames_out: u64,
    /// Frames waiting in its mailbox.
    pub mailbox: u64,
}

impl From<&LiveSession> for NodeSession {
    fn from(s: &LiveSession) -> Self {
        Self {
            device: s.device_id.clone(),
            user: s.user_id.clone(),
            handle: s.handle.clone(),
            mode: s.mode.to_owned(),
            since: s.since,
            remote: s.remote.map(|a| a.to_string()),
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            mailbox: s.mailbox_frames,
        }
    }
}

/// One node's sessions at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The node.
    pub node: String,
    /// When the snapshot was taken, unix seconds.
    pub at: i64,
    /// Sessions online on the node (may exceed `sessions.len()`).
    pub total: usize,
    /// The first [`MAX_LISTED`] of them by device id.
    pub sessions: Vec<NodeSession>,
}

impl Snapshot {
    /// The snapshot of `live` (sorted by device id, as [`Hub::live_sessions`] returns them).
    #[must_use]
    pub fn of(node: &str, at: i64, live: &[LiveSession]) -> Self {
        Self {
            node: node.to_owned(),
            at,
            total: live.len(),
            sessions: live
                .iter()
                .take(MAX_LISTED)
                .map(NodeSession::from)
                .collect(),
        }
    }
}

/// The Redis key of `node`'s snapshot.
#[must_use]
pub fn snapshot_key(prefix: &str, node: &str) -> String {
    format!("{prefix}sessions:{node}")
}

/// The Redis sorted set of the nodes' last snapshot times.
#[must_use]
pub fn nodes_key(prefix: &str) -> String {
    format!("{prefix}session-nodes")
}

fn ttl_secs() -> i64 {
    i64::try_from(SNAPSHOT_TTL.as_secs()).unwrap_or(i64::MAX)
}

/// The task writing this node's snapshot.
pub(super) struct Writer {
    pub(super) node: String,
    pub(super) prefix: String,
    pub(super) connection: ConnectionManager,
    pub(super) hub: Arc<Hub>,
}

impl Writer {
    /// Writes on every change and every [`REFRESH_INTERVAL`] until `stop` (then deletes the
    /// snapshot) or `kill` (then leaves it to expire, as a crash would).
    pub(super) async fn run(mut self, stop: CancellationToken, kill: CancellationToken) {
        let mut written: Option<((u64, usize), tokio::time::Instant)> = None;
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = kill.cancelled() => return,
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            // The version is read before the copy: a change in between is written next time.
            let version = self.hub.sessions_version();
            let due = written.as_ref().is_none_or(|(previous, at)| {
                *previous != version || at.elapsed() >= REFRESH_INTERVAL
            });
            if !due {
                continue;
            }
            let live = self.hub.live_sessions();
            match self
                .write(&Snapshot::of(&self.node, unix_now(), &live))
                .await
            {
                Ok(()) => written = Some((version, tokio::time::Instant::now())),
                Err(e) => tracing::debug!(error = %e, "session snapshot not written"),
            }
        }
        if kill.is_cancelled() {
            return;
        }
        let mut pipe = redis::pipe();
        pipe.del(snapshot_key(&self.prefix, &self.node))
            .ignore()
            .zrem(nodes_key(&self.prefix), &self.node)
            .ignore();
        if let Err(e) = pipe.query_async::<()>(&mut self.connection).await {
            tracing::debug!(error = %e, "session snapshot not removed; it expires");
        }
    }

    async fn write(&mut self, snapshot: &Snapshot) -> Result<(), PresenceError> {
        let json = serde_json::to_vec(snapshot).map_err(|e| PresenceError(e.to_string()))?;
        let nodes = nodes_key(&self.prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(snapshot_key(&self.prefix, &self.node))
            .arg(json)
            .arg("EX")
            .arg(ttl_secs())
            .ignore()
            .zadd(&nodes, &self.node, snapshot.at)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&nodes)
            .arg("-inf")
            .arg(format!("({}", snapshot.at.saturating_sub(ttl_secs())))
            .ignore()
            .expire(&nodes, ttl_secs())
            .ignore();
        pipe.query_async::<()>(&mut self.connection)
            .await
            .map_err(error)
    }
}

impl Cluster {
    /// The latest snapshots of every node but this one that wrote one in the last
    /// [`SNAPSHOT_TTL`] (at most [`MAX_NODES`], most recent first), ordered by node id.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn other_nodes_sessions(&self) -> Result<Vec<Snapshot>, PresenceError> {
        let mut connection = self.connection.clone();
        let since = unix_now().saturating_sub(ttl_secs());
        let nodes: Vec<String> = redis::cmd("ZRANGE")
            .arg(nodes_key(&self.prefix))
            .arg("+inf")
            .arg(since)
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_NODES)
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        let nodes: Vec<String> = nodes.into_iter().filter(|n| *n != self.node).collect();
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes
            .iter()
            .map(|n| snapshot_key(&self.prefix, n))
            .collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .map_err(error)?;
        let mut snapshots: Vec<Snapshot> = values
            .into_iter()
            .flatten()
            .filter_map(|bytes| match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(error = %e, "unreadable session snapshot skipped");
                    None
                }
            })
            .collect();
        snapshots.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(snapshots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_lists_at_most_max_listed_sessions_and_counts_all() {
        let hub = Hub::default();
        let mut receivers = Vec::new();
        for i in 0..=MAX_LISTED {
            let stats = Arc::new(crate::router::SessionStats::new(
                format!("u-{i}"),
                format!("user{i}"),
                "binary",
                7,
            ));
            let (mailbox, rx) = crate::router::Mailbox::new(format!("s-{i}"), 4, None);
            hub.register(&format!("dev-{i:04}"), mailbox.with_stats(stats));
            receivers.push(rx);
        }
        let snapshot = Snapshot::of("n1", 100, &hub.live_sessions());
        assert_eq!(snapshot.total, MAX_LISTED + 1);
        assert_eq!(snapshot.sessions.len(), MAX_LISTED);
        assert_eq!(snapshot.sessions[0].device, "dev-0000");
        assert_eq!(snapshot.sessions[0].mode, "binary");
        let json = serde_json::to_vec(&snapshot).unwrap();
        assert_eq!(serde_json::from_slice::<Snapshot>(&json).unwrap(), snapshot);
    }
}
