//! Plain channels shared by the nodes of a deployment ([`crate::cluster`]): an accepted JOIN or
//! LEAVE is recorded in Redis and announced to the other nodes, and a sender that is not a
//! member of a channel on this node (it joined on another node, or before this node restarted)
//! is restored from that record instead of being refused. Without a cluster nothing happens
//! here. Group channels need none of this: their members come from the stored roster.

use commucat_link::ByteStream;

use super::SessionTask;

impl<S: ByteStream> SessionTask<S> {
    /// Shares an accepted plain JOIN of `channel` that declared `declared`, and merges the
    /// members that joined on other nodes into the channel here; returns the members then, if
    /// there is a cluster.
    pub(super) async fn share_join(
        &mut self,
        channel: u32,
        relay: bool,
        declared: &[String],
    ) -> Option<Vec<String>> {
        let cluster = self.m.cluster.as_ref()?;
        cluster
            .share_join(channel, &self.device_id, relay, declared)
            .await;
        let limits = self.m.settings.channel_limits();
        match cluster.shared_members(channel, limits.members).await {
            Ok(members) => {
                let me = self.device_id.clone();
                self.m.hub.channels(|c| {
                    c.merge_remote(channel, members.iter().map(|(d, _)| d.as_str()), limits);
                    c.members_if_member(channel, &me)
                })
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "shared channel membership unavailable");
                None
            }
        }
    }

    /// Shares a LEAVE of plain channel `channel`.
    pub(super) async fn share_leave(&mut self, channel: u32) {
        if let Some(cluster) = &self.m.cluster {
            cluster.share_leave(channel, &self.device_id).await;
        }
    }

    /// Restores plain channel `channel` from the deployment's record if this device is a
    /// member there; returns whether it is a member here now (within the channel bounds).
    pub(super) async fn recall_channel(&mut self, channel: u32) -> bool {
        let Some(cluster) = &self.m.cluster else {
            return false;
        };
        if self.m.hub.channels(|c| c.group_of(channel).is_some()) {
            return false;
        }
        let limits = self.m.settings.channel_limits();
        let members = match cluster.shared_members(channel, limits.members).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(channel, error = %e, "shared channel membership unavailable");
                return false;
            }
        };
        let Some(relay) = members
            .iter()
            .find(|(device, _)| *device == self.device_id)
            .map(|(_, relay)| *relay)
        else {
            return false;
        };
        let me = self.device_id.as_str();
        let others = members
            .iter()
            .map(|(device, _)| device.as_str())
            .filter(|device| *device != me);
        let restored = self
            .m
            .hub
            .channels(|c| c.join(channel, me, relay, others, limits));
        restored.is_ok()
    }
}
