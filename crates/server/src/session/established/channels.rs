//! JOIN, LEAVE, the relay of MSG / KEY_UPDATE / GROUP_EVENT / TYPING, and P2P candidates.

use ccp::control::{Join, Leave, PeerCandidate};
use ccp::{Frame, FrameType, ProblemKind};
use commucat_link::ByteStream;
use serde_json::Value;

use super::offline::{self, Offline};
use super::{End, SessionTask};
use crate::router::channels::JoinRefused;
use crate::router::dedup;
use crate::router::groups::check_id;

impl<S: ByteStream> SessionTask<S> {
    pub(super) async fn join(&mut self, frame: &Frame) -> Result<(), End> {
        let join: Join = match frame.parse_control() {
            Ok(join) => join,
            Err(e) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::InvalidControlPayload,
                        format!("JOIN: {e}"),
                    )
                    .await;
            }
        };
        if let Some(detail) = join
            .members
            .iter()
            .find_map(|m| check_id("member device id", m).err())
        {
            return self
                .reject(
                    frame,
                    ProblemKind::InvalidControlPayload,
                    format!("JOIN: {detail}"),
                )
                .await;
        }
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let bound = self
            .m
            .hub
            .channels(|c| c.group_of(channel).map(str::to_owned));
        let group_id = match (join.group_id.clone(), bound) {
            (Some(asked), Some(bound)) if asked != bound => {
                return self
                    .reject(
                        frame,
                        ProblemKind::NotGroupMember,
                        format!("channel {channel} belongs to group {bound}"),
                    )
                    .await;
            }
            (asked, bound) => asked.or(bound),
        };
        let (members, name) = match group_id.as_deref() {
            Some(group_id) => match self.join_group(frame, group_id, join.relay).await? {
                Some(joined) => joined,
                None => return Ok(()),
            },
            None => {
                let declared = join.members.iter().map(String::as_str);
                match self
                    .m
                    .hub
                    .channels(|c| c.join(channel, &me, join.relay, declared))
                {
                    Ok(members) => (members, join.name.clone()),
                    // Bound to a group between the check above and now.
                    Err(JoinRefused::GroupChannel(group_id)) => {
                        match self.join_group(frame, &group_id, join.relay).await? {
                            Some(joined) => joined,
                            None => return Ok(()),
                        }
                    }
                }
            }
        };
        self.ack(frame).await?;
        // Every member (the joiner included) learns the full member list (wire-compat §7.4a).
        let notice = Join {
            members: members.clone(),
            relay: join.relay,
            group_id,
            name,
        };
        let others: Vec<String> = members.iter().filter(|m| **m != me).cloned().collect();
        self.notify(FrameType::Join, channel, &notice, &others)
            .await?;
        self.send_control(FrameType::Join, channel, &notice).await?;
        self.send_presence_of(&members).await?;
        if !join.relay {
            self.exchange_candidates(channel, &members).await?;
        }
        Ok(())
    }

    pub(super) async fn leave(&mut self, frame: &Frame) -> Result<(), End> {
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        match self.m.hub.channels(|c| c.leave(channel, &me)) {
            Some(remaining) => {
                self.ack(frame).await?;
                let notice = Leave {
                    device: Some(me),
                    device_id: None,
                };
                self.notify(FrameType::Leave, channel, &notice, &remaining)
                    .await
            }
            None => {
                self.reject(
                    frame,
                    ProblemKind::NotChannelMember,
                    format!("not a member of channel {channel}"),
                )
                .await
            }
        }
    }

    /// Sends a server notice to `recipients` (live only).
    pub(super) async fn notify<T: serde::Serialize>(
        &mut self,
        frame_type: FrameType,
        channel: u32,
        value: &T,
        recipients: &[String],
    ) -> Result<(), End> {
        let notice =
            Frame::control(frame_type, channel, 0, value).map_err(|e| End::Conn(e.into()))?;
        // Live-only routing never touches the store.
        let _ = offline::route(&self.m, &self.device_id, &notice, recipients, Offline::Skip).await;
        Ok(())
    }

    /// The channel's members other than the sender, or `None` (after an ERROR to the sender)
    /// if the sender is not a member.
    pub(super) async fn others_on(&mut self, frame: &Frame) -> Result<Option<Vec<String>>, End> {
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let Some(members) = self.m.hub.channels(|c| c.members_if_member(channel, &me)) else {
            self.reject(
                frame,
                ProblemKind::NotChannelMember,
                format!("JOIN channel {channel} before sending to it"),
            )
            .await?;
            return Ok(None);
        };
        Ok(Some(members.into_iter().filter(|m| *m != me).collect()))
    }

    /// MSG, KEY_UPDATE, GROUP_EVENT: relayed byte for byte, queued for members that are not
    /// connected, ACKed once that is durable. A resend of a frame already accepted (same
    /// channel, sequence and bytes within the idempotency window) is ACKed and not relayed.
    pub(super) async fn relay_envelope(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(recipients) = self.others_on(frame).await? else {
            return Ok(());
        };
        let key = dedup::frame_key(frame);
        if !self.m.hub.dedup().claim(&self.device_id, &key) {
            tracing::debug!(device = %self.device_id, %key, "resend dropped");
            return self.ack(frame).await;
        }
        let routed = offline::route(
            &self.m,
            &self.device_id,
            frame,
            &recipients,
            Offline::Queue {
                idempotency: Some(&key),
            },
        )
        .await;
        match routed {
            Ok(routed) => {
                if !routed.refused.is_empty() {
                    self.reject_queue_full(frame, routed.refused).await?;
                }
                self.ack(frame).await
            }
            Err(e) => {
                self.m.hub.dedup().release(&self.device_id, &key);
                self.reject(
                    frame,
                    ProblemKind::ServiceUnavailable,
                    format!("the frame could not be queued for offline members: {e}"),
                )
                .await
            }
        }
    }

    /// TYPING: relayed live with the sender's `device` set, as deployed clients require. A
    /// sender key (`device`, `device_id`, `sender`) naming another device is refused.
    pub(super) async fn relay_typing(&mut self, frame: &Frame) -> Result<(), End> {
        let mut value: Value = match frame.parse_control() {
            Ok(value) => value,
            Err(e) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::InvalidControlPayload,
                        format!("TYPING: {e}"),
                    )
                    .await;
            }
        };
        let Some(object) = value.as_object_mut() else {
            return self
                .reject(
                    frame,
                    ProblemKind::InvalidControlPayload,
                    "TYPING payload must be a JSON object",
                )
                .await;
        };
        // One sender key on the way out: several (even agreeing) confuse alias-based parsers.
        for key in TYPING_SENDER_KEYS {
            if let Some(claimed) = object.remove(key) {
                let claimed = claimed.as_str().unwrap_or_default().to_owned();
                if !self.check_sender(frame, key, &claimed).await? {
                    return Ok(());
                }
            }
        }
        object.insert("device".to_owned(), Value::String(self.device_id.clone()));
        let relayed = match Frame::control(FrameType::Typing, frame.channel_id(), 0, &value) {
            Ok(relayed) => relayed,
            Err(e) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::InvalidControlPayload,
                        format!("TYPING: {e}"),
                    )
                    .await;
            }
        };
        let Some(recipients) = self.others_on(frame).await? else {
            return Ok(());
        };
        let _ = offline::route(
            &self.m,
            &self.device_id,
            &relayed,
            &recipients,
            Offline::Skip,
        )
        .await;
        self.ack(frame).await
    }

    /// `relay:false` JOIN: the joiner's observed address goes to the other members, and the
    /// joiner learns the addresses of members that asked for a direct path too.
    async fn exchange_candidates(&mut self, channel: u32, members: &[String]) -> Result<(), End> {
        let me = self.device_id.clone();
        if let Some(addr) = self.remote {
            let candidate = PeerCandidate {
                entity: me.clone(),
                channel: u64::from(channel),
                peer: me.clone(),
                candidate: addr.to_string(),
                state: None,
            };
            let others: Vec<String> = members.iter().filter(|m| **m != me).cloned().collect();
            self.notify(FrameType::Presence, channel, &candidate, &others)
                .await?;
        }
        let direct = self.m.hub.channels(|c| c.direct_peers(channel, &me));
        for peer in direct {
            if let Some(addr) = self.m.hub.address_of(&peer) {
                let candidate = PeerCandidate {
                    entity: peer.clone(),
                    channel: u64::from(channel),
                    peer,
                    candidate: addr.to_string(),
                    state: None,
                };
                self.send_control(FrameType::Presence, channel, &candidate)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The keys of a TYPING payload that name its sender.
const TYPING_SENDER_KEYS: [&str; 3] = ["device", "device_id", "sender"];
