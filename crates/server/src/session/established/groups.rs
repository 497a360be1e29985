//! GROUP_CREATE, GROUP_INVITE and JOIN of a group's channel, against the stored roster.

use std::collections::BTreeSet;

use commucat_ccp::control::{Ack, GroupCreate, GroupInvite};
use commucat_ccp::{Frame, FrameType, Problem, ProblemKind};
use commucat_link::ByteStream;
use commucat_store::{GroupMember, StoreError};

use super::{End, SessionTask, unix_now};
use crate::config::Bound;
use crate::registry::random_id;
use crate::router::channels::BindRefused;
use crate::router::groups::{
    RosterRefused, can_invite, check_id, create_notice, roster_for_create, to_store, to_wire,
};
use crate::router::notices::{fit_group_notice, membership_notice};
use crate::router::relay::RelayError;

impl<S: ByteStream> SessionTask<S> {
    /// JOIN of a channel governed by `group_id`: only roster members may join, and the
    /// channel's members become the roster. Returns the members and the group's name, or
    /// `None` after an ERROR to the sender.
    pub(super) async fn join_group(
        &mut self,
        frame: &Frame,
        group_id: &str,
        relay: bool,
    ) -> Result<Option<(Vec<String>, Option<String>)>, End> {
        let group = match self.m.store.group(group_id).await {
            Ok(Some(group)) => group,
            Ok(None) => {
                self.reject(
                    frame,
                    ProblemKind::UnknownGroup,
                    format!("no group {group_id}"),
                )
                .await?;
                return Ok(None);
            }
            Err(e) => {
                self.store_failed(frame, &e).await?;
                return Ok(None);
            }
        };
        let roster = match self.m.store.group_members(group_id).await {
            Ok(roster) => roster,
            Err(e) => {
                self.store_failed(frame, &e).await?;
                return Ok(None);
            }
        };
        if !roster.iter().any(|m| m.device_id == self.device_id) {
            self.reject(
                frame,
                ProblemKind::NotGroupMember,
                format!(
                    "{} is not on the roster of group {group_id}",
                    self.device_id
                ),
            )
            .await?;
            return Ok(None);
        }
        let devices: Vec<String> = roster.into_iter().map(|m| m.device_id).collect();
        // Revoked (or, in rosters stored before devices were checked, unknown) devices are
        // left out of the channel: nothing is queued for them.
        let devices = match self.m.store.active_devices_among(&devices).await {
            Ok(active) => active,
            Err(e) => {
                self.store_failed(frame, &e).await?;
                return Ok(None);
            }
        };
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let limits = self.m.settings.channel_limits();
        match self
            .m
            .hub
            .channels(|c| c.bind_group(channel, group_id, &devices, &me, relay, limits))
        {
            Ok(members) => Ok(Some((members, group.name))),
            Err(refused) => {
                self.bind_refused(frame, refused).await?;
                Ok(None)
            }
        }
    }

    async fn bind_refused(&mut self, frame: &Frame, refused: BindRefused) -> Result<(), End> {
        let channel = frame.channel_id();
        match refused {
            BindRefused::OtherGroup(group) => {
                self.reject(
                    frame,
                    ProblemKind::NotGroupMember,
                    format!("channel {channel} belongs to group {group}"),
                )
                .await
            }
            BindRefused::NotMember => {
                self.reject(
                    frame,
                    ProblemKind::NotChannelMember,
                    format!(
                        "channel {channel} is a conversation {} is not part of; use another channel",
                        self.device_id
                    ),
                )
                .await
            }
            BindRefused::WouldEvict(evicted) => {
                let problem = Problem::new(ProblemKind::GroupPermissionDenied)
                    .with_detail(format!(
                        "binding channel {channel} to a group would evict {} of its members; \
                         put every member on the roster or use another channel",
                        evicted.len()
                    ))
                    .with_extension("devices", evicted);
                self.reject_problem(frame, problem).await
            }
            BindRefused::ChannelLimit { limit } => {
                let detail = format!("a device is a member of at most {limit} channels at once");
                self.reject_bound(
                    frame,
                    Bound::ChannelsPerDevice,
                    ProblemKind::ChannelLimitReached,
                    detail,
                )
                .await
            }
        }
    }

    /// GROUP_CREATE: stores the group (the sender owns it) with its roster, binds the frame's
    /// channel to it, sends the members GROUP_CREATE with the resolved id, roles and `owner`
    /// (queued for those not connected), then ACKs `{"ack","group_id"}`.
    pub(super) async fn group_create(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(create) = self.parsed::<GroupCreate>(frame).await? else {
            return Ok(());
        };
        if let Some(owner) = create.owner.as_deref()
            && !self.check_sender(frame, "owner", owner).await?
        {
            return Ok(());
        }
        let group_id = create.group_id.clone().unwrap_or_else(random_id);
        let limits = self.m.settings.channel_limits();
        let created = roster_for_create(
            &create,
            &group_id,
            &self.device_id,
            unix_now(),
            limits.members,
        );
        let (group, roster) = match created {
            Ok(created) => created,
            Err(RosterRefused::InvalidId(detail)) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::InvalidControlPayload,
                        format!("GROUP_CREATE: {detail}"),
                    )
                    .await;
            }
            Err(too_long @ RosterRefused::TooLong { .. }) => {
                return self
                    .reject_bound(
                        frame,
                        Bound::ChannelMembers,
                        ProblemKind::MemberListTooLong,
                        too_long.to_string(),
                    )
                    .await;
            }
        };
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let others: BTreeSet<String> = roster
            .iter()
            .map(|m| m.device_id.clone())
            .filter(|d| *d != me)
            .collect();
        if !self.all_registered(frame, &others).await? {
            return Ok(());
        }
        let devices: Vec<String> = roster.iter().map(|m| m.device_id.clone()).collect();
        // Checked before the group is stored, and again (atomically) when binding.
        if let Err(refused) = self
            .m
            .hub
            .channels(|c| c.check_bind(channel, &group_id, &devices, &me, limits))
        {
            return self.bind_refused(frame, refused).await;
        }
        match self
            .m
            .store
            .create_group(
                group.clone(),
                roster.clone(),
                self.m.settings.bounds.groups_per_device,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::GroupLimit { limit, .. }) => {
                return self
                    .reject_bound(
                        frame,
                        Bound::GroupsPerDevice,
                        ProblemKind::GroupLimitReached,
                        format!(
                            "this device already owns {limit} groups (bounds.groups_per_device)"
                        ),
                    )
                    .await;
            }
            Err(StoreError::Conflict(_)) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::GroupExists,
                        format!("group {group_id} already exists"),
                    )
                    .await;
            }
            Err(e) => return self.store_failed(frame, &e).await,
        }
        self.m.ledger.record("group", || {
            serde_json::json!({"event": "create", "group_id": group_id, "device": me,
                               "members": devices})
        });
        if let Err(refused) = self
            .m
            .hub
            .channels(|c| c.bind_group(channel, &group_id, &devices, &me, create.relay, limits))
        {
            // Taken meanwhile: the group exists; its members join a channel with its id.
            self.bind_refused(frame, refused).await?;
        }
        let notice = Frame::control(
            FrameType::GroupCreate,
            channel,
            0,
            &fit_group_notice(create_notice(&group, &roster)),
        )
        .map_err(|e| End::Conn(e.into()))?;
        let others: Vec<String> = devices.into_iter().filter(|d| *d != me).collect();
        self.route_durable(frame, &notice, &others).await?;
        self.ack_with(
            frame,
            Ack {
                group_id: Some(group_id),
                ..Ack::default()
            },
        )
        .await
    }

    /// GROUP_INVITE: owners and admins add a device (a requested `owner` becomes `admin`);
    /// channels of the group take it in; the group's members and the invitee receive the
    /// invite (queued for those not connected); the ACK echoes `group_id` and `device`.
    pub(super) async fn group_invite(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(invite) = self.parsed::<GroupInvite>(frame).await? else {
            return Ok(());
        };
        let Some(device) = invite.resolved_device().map(str::to_owned) else {
            return self
                .reject(
                    frame,
                    ProblemKind::InvalidControlPayload,
                    "GROUP_INVITE needs `device` (or `member`)",
                )
                .await;
        };
        if let Some(detail) = check_id("device", &device).err() {
            return self
                .reject(
                    frame,
                    ProblemKind::InvalidControlPayload,
                    format!("GROUP_INVITE: {detail}"),
                )
                .await;
        }
        if !self
            .all_registered(frame, &BTreeSet::from([device.clone()]))
            .await?
        {
            return Ok(());
        }
        let group_id = invite.group_id.clone();
        let group = match self.m.store.group(&group_id).await {
            Ok(Some(group)) => group,
            Ok(None) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::UnknownGroup,
                        format!("no group {group_id}"),
                    )
                    .await;
            }
            Err(e) => return self.store_failed(frame, &e).await,
        };
        let roster = match self.m.store.group_members(&group_id).await {
            Ok(roster) => roster,
            Err(e) => return self.store_failed(frame, &e).await,
        };
        match roster.iter().find(|m| m.device_id == self.device_id) {
            None => {
                return self
                    .reject(
                        frame,
                        ProblemKind::NotGroupMember,
                        format!(
                            "{} is not on the roster of group {group_id}",
                            self.device_id
                        ),
                    )
                    .await;
            }
            Some(me) if !can_invite(me.role) => {
                return self
                    .reject(
                        frame,
                        ProblemKind::GroupPermissionDenied,
                        format!(
                            "only owners and admins invite; {} is a {}",
                            self.device_id,
                            me.role.as_str()
                        ),
                    )
                    .await;
            }
            Some(_) => {}
        }
        let limit = self.m.settings.channel_limits().members;
        if roster.len() >= limit && !roster.iter().any(|m| m.device_id == device) {
            let detail = format!("group {group_id} has {limit} members, as many as a channel may");
            return self
                .reject_bound(
                    frame,
                    Bound::ChannelMembers,
                    ProblemKind::ChannelFull,
                    detail,
                )
                .await;
        }
        let stored = match self
            .m
            .store
            .upsert_group_member(GroupMember {
                group_id: group_id.clone(),
                device_id: device.clone(),
                role: to_store(invite.granted_role()),
                joined_at: unix_now(),
            })
            .await
        {
            Ok(stored) => stored,
            Err(e) => return self.store_failed(frame, &e).await,
        };
        self.m.ledger.record("group", || {
            serde_json::json!({"event": "invite", "group_id": group_id, "device": self.device_id,
                               "member": device, "role": stored.role.as_str()})
        });
        let updated = self.m.hub.channels(|c| c.add_to_group(&group_id, &device));
        for (channel, members) in updated {
            let notice = membership_notice(
                &members,
                &device,
                group.relay,
                Some(group_id.clone()),
                group.name.clone(),
            );
            self.notify(FrameType::Join, channel, &notice, &members)
                .await?;
        }
        let notice = GroupInvite {
            group_id: group_id.clone(),
            device: Some(device.clone()),
            member: None,
            role: Some(to_wire(stored.role)),
        };
        let notice = Frame::control(FrameType::GroupInvite, frame.channel_id(), 0, &notice)
            .map_err(|e| End::Conn(e.into()))?;
        let mut recipients: Vec<String> = roster
            .into_iter()
            .map(|m| m.device_id)
            .filter(|d| *d != self.device_id && *d != device)
            .collect();
        if device != self.device_id {
            recipients.push(device.clone());
        }
        self.route_durable(frame, &notice, &recipients).await?;
        self.ack_with(
            frame,
            Ack {
                group_id: Some(group_id),
                device: Some(device),
                ..Ack::default()
            },
        )
        .await
    }

    /// Routes a server-built notice about `frame` with the offline queue, reporting full
    /// queues and store failures to the sender (the operation itself already succeeded).
    async fn route_durable(
        &mut self,
        frame: &Frame,
        notice: &Frame,
        recipients: &[String],
    ) -> Result<(), End> {
        let targets = self.m.hub.targets_of(recipients);
        let routed = self
            .m
            .relay()
            .durable(&self.device_id, notice, targets, None)
            .await;
        match routed {
            Ok(routed) if routed.refused.is_empty() => Ok(()),
            Ok(routed) => self.reject_queue_full(frame, routed.refused).await,
            Err(RelayError::Queue(e)) => self.store_failed(frame, &e).await,
        }
    }
}
