//! PRESENCE: a device's snapshot `{entity, state, expires_at, user}`, stored in the presence
//! registry for `session.presence_ttl` and fanned out (on channel 0) to the online devices that
//! share a channel with it; `offline` when it expires without refresh or the device
//! disconnects. Every PRESENCE the server sends names its `entity`.

use commucat_ccp::control::{PresenceSnapshot, PresenceUpdate, UserInfo};
use commucat_ccp::{Frame, FrameType, ProblemKind};
use commucat_link::ByteStream;

use super::{End, Messaging, SessionTask, secs, unix_now};
use crate::router::presence::{PresenceEntry, rfc3339};

/// Longest accepted presence state.
pub(super) const MAX_STATE_LEN: usize = 64;
/// Channel presence snapshots travel on (the one deployed clients send PRESENCE on).
pub(super) const PRESENCE_CHANNEL: u32 = 0;

pub use crate::router::presence::{ROUTE_REFRESH, ROUTE_TTL};

/// Records that this node serves `device` (whose session here started at `since`, Unix
/// microseconds) and tells the other nodes, whose older sessions of it end. A registry failure
/// is logged and otherwise ignored: frames for the device still reach its offline queue, and it
/// replays them at its next connect.
pub(super) async fn claim_route(m: &Messaging, device: &str, since: i64) {
    if let Err(e) = m
        .presence
        .set_route(device, &m.settings.node_id, ROUTE_TTL)
        .await
    {
        tracing::warn!(%device, error = %e, "route not recorded in the presence registry");
    }
    if let Some(cluster) = &m.cluster {
        cluster.moved(device, since).await;
    }
}

/// Refreshes `device`'s route unless another node took it over meanwhile; if it did, the
/// session here that started at `since` ends as moved (in case this node missed the other
/// node's announcement).
pub(super) async fn refresh_route(m: &Messaging, device: &str, since: i64) {
    match m
        .presence
        .refresh_route(device, &m.settings.node_id, ROUTE_TTL)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            if m.hub.move_away(device, since.saturating_add(1)) {
                tracing::info!(%device, "route taken over by another node; session here ended");
            }
        }
        Err(e) => {
            tracing::warn!(%device, error = %e, "route not refreshed in the presence registry");
        }
    }
}

/// Removes `device`'s route if it still names this node (the session ended with no successor
/// here).
pub(super) async fn withdraw_route(m: &Messaging, device: &str) {
    if let Err(e) = m.presence.remove_route(device, &m.settings.node_id).await {
        tracing::warn!(%device, error = %e, "route not removed from the presence registry; it expires");
    }
}

/// Completes at `deadline`, never if there is none.
pub(super) async fn expiry(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn entry(m: &Messaging, device: &str, state: &str, user: UserInfo) -> PresenceEntry {
    let expires_at = unix_now().saturating_add(secs(m.settings.presence_ttl));
    PresenceEntry {
        snapshot: PresenceSnapshot {
            entity: device.to_owned(),
            state: state.to_owned(),
            expires_at: Some(rfc3339(expires_at)),
            user: Some(user),
        },
        expires_at,
    }
}

/// Sends `snapshot` to the online devices sharing a channel with its entity.
async fn announce(m: &Messaging, snapshot: &PresenceSnapshot) {
    // The peers and their mailboxes in one look-up.
    let ((), peers) = m
        .hub
        .targets(|t| ((), t.channels.peers_of(&snapshot.entity)));
    if peers.is_empty() {
        return;
    }
    match Frame::control(FrameType::Presence, PRESENCE_CHANNEL, 0, snapshot) {
        Ok(frame) => {
            m.relay().live(&snapshot.entity, &frame, peers);
        }
        Err(e) => tracing::warn!(error = %e, "presence snapshot not sent"),
    }
}

/// Forgets the device's snapshot and tells its peers it is `offline` (on disconnect).
pub(super) async fn announce_offline(m: &Messaging, device: &str, user: UserInfo) {
    if let Err(e) = m.presence.remove(device).await {
        tracing::warn!(%device, error = %e, "presence registry");
    }
    announce(m, &entry(m, device, "offline", user).snapshot).await;
}

impl<S: ByteStream> SessionTask<S> {
    pub(super) async fn presence(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(update) = self.parsed::<PresenceUpdate>(frame).await? else {
            return Ok(());
        };
        if update.state.is_empty() || update.state.len() > MAX_STATE_LEN {
            return self
                .reject(
                    frame,
                    ProblemKind::InvalidControlPayload,
                    format!("PRESENCE state must be 1 to {MAX_STATE_LEN} bytes"),
                )
                .await;
        }
        let entry = entry(&self.m, &self.device_id, &update.state, self.user_info());
        if let Err(e) = self.m.presence.set(&self.device_id, entry.clone()).await {
            tracing::warn!(device = %self.device_id, error = %e, "presence registry");
        }
        self.presence_deadline = Some(tokio::time::Instant::now() + self.m.settings.presence_ttl);
        self.ack(frame).await?;
        announce(&self.m, &entry.snapshot).await;
        Ok(())
    }

    /// The published snapshot expired without refresh: peers learn the device is `offline`.
    pub(super) async fn expire_presence(&mut self) -> Result<(), End> {
        self.presence_deadline = None;
        announce_offline(&self.m, &self.device_id, self.user_info()).await;
        Ok(())
    }

    /// Sends this session the live snapshots of `members` (after it joined their channel).
    pub(super) async fn send_presence_of(&mut self, members: &[String]) -> Result<(), End> {
        let now = unix_now();
        let me = self.device_id.clone();
        for member in members.iter().filter(|m| **m != me) {
            match self.m.presence.get(member, now).await {
                Ok(Some(entry)) => {
                    self.send_control(FrameType::Presence, PRESENCE_CHANNEL, &entry.snapshot)
                        .await?;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "presence registry"),
            }
        }
        Ok(())
    }
}
