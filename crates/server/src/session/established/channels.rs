//! JOIN, LEAVE, the relay of MSG / KEY_UPDATE / GROUP_EVENT / TYPING, and P2P candidates.

use std::collections::BTreeSet;

use commucat_ccp::control::{Join, Leave, PeerCandidate};
use commucat_ccp::{Frame, FrameType, Problem, ProblemKind};
use commucat_link::ByteStream;
use serde_json::{Map, Value};

use super::{End, SessionTask};
use crate::config::Bound;
use crate::router::channels::JoinRefused;
use crate::router::dedup;
use crate::router::groups::check_id;
use crate::router::notices::membership_notice;
use crate::router::relay::Targets;

impl<S: ByteStream> SessionTask<S> {
    pub(super) async fn join(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(join) = self.parsed::<Join>(frame).await? else {
            return Ok(());
        };
        let most = self.m.settings.bounds.declared_members_per_join;
        if u64::try_from(join.members.len()).unwrap_or(u64::MAX) > most {
            let detail = format!(
                "a JOIN declares at most {most} member ids, got {}",
                join.members.len()
            );
            return self
                .reject_bound(
                    frame,
                    Bound::DeclaredMembersPerJoin,
                    ProblemKind::MemberListTooLong,
                    detail,
                )
                .await;
        }
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
        let before = self.m.hub.channels(|c| {
            c.has_joined(channel, &me)
                .then(|| c.members_if_member(channel, &me))
                .flatten()
        });
        let (members, added, name) = match group_id.as_deref() {
            Some(group_id) => match self.join_group(frame, group_id, join.relay).await? {
                Some((members, name)) => {
                    let added = before.as_ref() != Some(&members);
                    (members, added, name)
                }
                None => return Ok(()),
            },
            None => {
                let declared: BTreeSet<String> =
                    join.members.iter().filter(|m| **m != me).cloned().collect();
                let Some(local) = self.local_members(frame, &declared).await? else {
                    return Ok(());
                };
                if !self.all_registered(frame, &local).await? {
                    return Ok(());
                }
                let limits = self.m.settings.channel_limits();
                let declared = declared.iter().map(String::as_str);
                match self
                    .m
                    .hub
                    .channels(|c| c.join(channel, &me, join.relay, declared, limits))
                {
                    Ok(joined) => {
                        let declared: Vec<String> =
                            join.members.iter().filter(|m| **m != me).cloned().collect();
                        // Members that joined on other nodes of the deployment count too; a
                        // repeated JOIN that adds nobody costs the deployment nothing.
                        let shared = if joined.added {
                            self.share_join(channel, join.relay, &declared).await
                        } else {
                            None
                        };
                        let members = shared.unwrap_or(joined.members);
                        (members, joined.added, join.name.clone())
                    }
                    Err(refused) => match self.join_refused(frame, refused).await? {
                        // Bound to a group between the check above and now.
                        Some(group_id) => {
                            match self.join_group(frame, &group_id, join.relay).await? {
                                Some((members, name)) => (members, true, name),
                                None => return Ok(()),
                            }
                        }
                        None => return Ok(()),
                    },
                }
            }
        };
        self.ack(frame).await?;
        // The joiner learns the member list (wire-compat §7.4a); the others only when the JOIN
        // added someone, so a repeated JOIN does not re-broadcast to everyone.
        let notice = membership_notice(&members, &me, join.relay, group_id, name);
        if added {
            let others: Vec<String> = members.iter().filter(|m| **m != me).cloned().collect();
            self.notify(FrameType::Join, channel, &notice, &others)
                .await?;
        }
        self.send_control(FrameType::Join, channel, &notice).await?;
        self.send_presence_of(&members).await?;
        if !join.relay {
            self.exchange_candidates(channel, &members).await?;
        }
        Ok(())
    }

    /// Reports a refused plain JOIN; returns the group whose channel it turned out to be.
    async fn join_refused(
        &mut self,
        frame: &Frame,
        refused: JoinRefused,
    ) -> Result<Option<String>, End> {
        let channel = frame.channel_id();
        match refused {
            JoinRefused::GroupChannel(group_id) => return Ok(Some(group_id)),
            JoinRefused::ChannelFull { limit } => {
                let detail = format!("channel {channel} has at most {limit} members");
                self.reject_bound(
                    frame,
                    Bound::ChannelMembers,
                    ProblemKind::ChannelFull,
                    detail,
                )
                .await?;
            }
            JoinRefused::ChannelLimit { limit } => {
                let detail = format!("a device is a member of at most {limit} channels at once");
                self.reject_bound(
                    frame,
                    Bound::ChannelsPerDevice,
                    ProblemKind::ChannelLimitReached,
                    detail,
                )
                .await?;
            }
        }
        Ok(None)
    }

    /// Whether every device of `devices` is a registered, active device of this server; if
    /// not, the sender got an ERROR (`Unknown Device`, or the store failure).
    pub(super) async fn all_registered(
        &mut self,
        frame: &Frame,
        devices: &BTreeSet<String>,
    ) -> Result<bool, End> {
        if devices.is_empty() {
            return Ok(true);
        }
        let asked: Vec<String> = devices.iter().cloned().collect();
        let known = match self.m.store.active_devices_among(&asked).await {
            Ok(known) => known,
            Err(e) => {
                self.store_failed(frame, &e).await?;
                return Ok(false);
            }
        };
        let known: BTreeSet<&str> = known.iter().map(String::as_str).collect();
        let unknown: Vec<String> = asked
            .into_iter()
            .filter(|d| !known.contains(d.as_str()))
            .collect();
        if unknown.is_empty() {
            return Ok(true);
        }
        let shown: Vec<&str> = unknown.iter().take(4).map(String::as_str).collect();
        let problem = Problem::new(ProblemKind::UnknownDevice)
            .with_detail(format!(
                "{} of the named devices are not registered devices of this server: {}{}",
                unknown.len(),
                shown.join(", "),
                if unknown.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ))
            .with_extension("devices", shown);
        self.reject_problem(frame, problem).await?;
        Ok(false)
    }

    pub(super) async fn leave(&mut self, frame: &Frame) -> Result<(), End> {
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let (plain, left) = self
            .m
            .hub
            .channels(|c| (c.group_of(channel).is_none(), c.leave(channel, &me)));
        match left {
            Some(remaining) => {
                self.m.hub.release_idle_channels(&me, Some(channel));
                self.ack(frame).await?;
                if plain {
                    self.share_leave(channel).await;
                }
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
        let targets = self.m.hub.targets_of(recipients);
        self.m.relay().live(&self.device_id, &notice, targets);
        Ok(())
    }

    /// The channel's members other than the sender with their mailboxes (one look-up in the
    /// hub), or `None` (after an ERROR to the sender) if the sender is not a member.
    async fn channel_targets(&mut self, frame: &Frame) -> Result<Option<Targets>, End> {
        let channel = frame.channel_id();
        let mut targets = self.m.hub.channel_targets(channel, &self.device_id);
        if targets.is_none() && self.recall_channel(channel).await {
            targets = self.m.hub.channel_targets(channel, &self.device_id);
        }
        if targets.is_none() {
            self.not_a_member(frame).await?;
        }
        Ok(targets)
    }

    async fn not_a_member(&mut self, frame: &Frame) -> Result<(), End> {
        let channel = frame.channel_id();
        self.reject(
            frame,
            ProblemKind::NotChannelMember,
            format!("JOIN channel {channel} before sending to it"),
        )
        .await
    }

    /// The channel's members other than the sender, or `None` (after an ERROR to the sender)
    /// if the sender is not a member.
    pub(super) async fn others_on(&mut self, frame: &Frame) -> Result<Option<Vec<String>>, End> {
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let mut members = self.m.hub.channels(|c| c.members_if_member(channel, &me));
        if members.is_none() && self.recall_channel(channel).await {
            members = self.m.hub.channels(|c| c.members_if_member(channel, &me));
        }
        let Some(members) = members else {
            self.not_a_member(frame).await?;
            return Ok(None);
        };
        Ok(Some(members.into_iter().filter(|m| *m != me).collect()))
    }

    /// MSG, KEY_UPDATE, GROUP_EVENT: relayed byte for byte, queued for members that are not
    /// connected, ACKed once that is durable. A resend of a frame already accepted (same
    /// channel, sequence and bytes within the idempotency window) is ACKed and not relayed.
    pub(super) async fn relay_envelope(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(mut targets) = self.channel_targets(frame).await? else {
            return Ok(());
        };
        let remote = self.remote_targets(&mut targets);
        let key = dedup::frame_key(frame);
        if !self.m.hub.dedup().claim(&self.device_id, &key) {
            tracing::debug!(device = %self.device_id, %key, "resend dropped");
            return self.ack(frame).await;
        }
        let routed = self
            .m
            .relay()
            .durable(&self.device_id, frame, targets, Some(&key))
            .await;
        match routed {
            Ok(routed) => {
                if !routed.refused.is_empty() {
                    self.reject_queue_full(frame, routed.refused).await?;
                }
                if !routed.duplicate {
                    self.federate(frame, &remote).await?;
                }
                self.ack(frame).await
            }
            Err(e) => {
                self.m.hub.dedup().release(&self.device_id, &key);
                self.relay_failed(frame, &e).await
            }
        }
    }

    /// TYPING: relayed live with the sender's `device` set, as deployed clients require. A
    /// sender key (`device`, `device_id`, `sender`) naming another device is refused.
    pub(super) async fn relay_typing(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(mut object) = self.parsed::<Map<String, Value>>(frame).await? else {
            return Ok(());
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
        let relayed = match Frame::control(FrameType::Typing, frame.channel_id(), 0, &object) {
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
        let Some(mut targets) = self.channel_targets(frame).await? else {
            return Ok(());
        };
        let remote = self.remote_targets(&mut targets);
        self.m.relay().live(&self.device_id, &relayed, targets);
        if !remote.is_empty() {
            // Across domains the sender is named `device@domain`.
            object.insert(
                "device".to_owned(),
                Value::String(format!("{}@{}", self.device_id, self.m.settings.domain)),
            );
            if let Ok(federated) = Frame::control(FrameType::Typing, frame.channel_id(), 0, &object)
            {
                self.federate(&federated, &remote).await?;
            }
        }
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
