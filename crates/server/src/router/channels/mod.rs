//! Channel membership: which devices belong to which channel, each with its `relay` flag, and
//! which channels a group's roster governs.
//!
//! Plain channels merge: every JOIN adds the sender (and any devices it declares) to the
//! current members. A channel bound to a group takes the group's roster as its members and
//! accepts no plain JOIN.
//!
//! The tables are bounded ([`ChannelLimits`]): members per channel, and channels a device joined
//! itself (devices declared by others do not use up their own allowance, so nobody can lock a
//! device out of channels by declaring it). A channel is forgotten, with its declared-only
//! members, once no connected member is left ([`Channels::release_idle`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One member of a channel.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// `false`: the member wants a direct path to its peers.
    relay: bool,
    /// The device joined itself (JOIN, group JOIN or GROUP_CREATE), rather than being declared
    /// or put on the channel by a roster.
    joined: bool,
}

/// One channel.
#[derive(Debug, Default)]
struct Channel {
    members: BTreeMap<String, Member>,
    /// Group whose roster governs the channel.
    group: Option<String>,
}

/// What the channel tables may hold (`bounds.channel_members`, `bounds.channels_per_device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Members of one channel.
    pub members: usize,
    /// Channels one device joined itself.
    pub per_device: usize,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            members: 1024,
            per_device: 256,
        }
    }
}

/// Why a plain JOIN was refused (nothing was applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// The channel belongs to this group: join it with the group's roster check.
    GroupChannel(String),
    /// The channel would have more than [`ChannelLimits::members`] members.
    ChannelFull {
        /// The bound.
        limit: usize,
    },
    /// The device already joined [`ChannelLimits::per_device`] channels.
    ChannelLimit {
        /// The bound.
        limit: usize,
    },
}

/// Why a channel could not be bound to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindRefused {
    /// The channel already belongs to this other group.
    OtherGroup(String),
    /// The channel is a plain conversation the device is not part of: binding it would evict
    /// its members.
    NotMember,
    /// These current members of the plain channel are not on the roster: binding it would
    /// evict them.
    WouldEvict(Vec<String>),
    /// The device already joined [`ChannelLimits::per_device`] channels.
    ChannelLimit {
        /// The bound.
        limit: usize,
    },
}

/// The outcome of an accepted JOIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The channel's members after the JOIN.
    pub members: Vec<String>,
    /// Whether the JOIN changed the membership: a new member, or a declared member joining
    /// itself (the others get the member list). A repeated JOIN that adds nobody is `false`.
    pub added: bool,
}

/// The channel tables.
#[derive(Debug, Default)]
pub struct Channels {
    channels: HashMap<u32, Channel>,
    /// Device → channels it is a member of.
    by_device: HashMap<String, BTreeSet<u32>>,
    /// Group → channels bound to it.
    by_group: HashMap<String, BTreeSet<u32>>,
}

impl Channels {
    fn add(&mut self, channel: u32, device: &str, member: Member) {
        self.channels
            .entry(channel)
            .or_default()
            .members
            .insert(device.to_owned(), member);
        self.by_device
            .entry(device.to_owned())
            .or_default()
            .insert(channel);
    }

    /// Adds `device` as a declared (relaying) member unless it is one already.
    fn add_declared(&mut self, channel: u32, device: &str) -> bool {
        if self.is_member(channel, device) {
            return false;
        }
        let declared = Member {
            relay: true,
            joined: false,
        };
        self.add(channel, device, declared);
        true
    }

    fn is_member(&self, channel: u32, device: &str) -> bool {
        self.channels
            .get(&channel)
            .is_some_and(|c| c.members.contains_key(device))
    }

    fn forget_device_channel(&mut self, device: &str, channel: u32) {
        if let Some(channels) = self.by_device.get_mut(device) {
            channels.remove(&channel);
            if channels.is_empty() {
                self.by_device.remove(device);
            }
        }
    }

    /// Removes the channel with every membership and its group binding.
    fn forget_channel(&mut self, channel: u32) {
        let Some(gone) = self.channels.remove(&channel) else {
            return;
        };
        for member in gone.members.keys() {
            self.forget_device_channel(member, channel);
        }
        if let Some(group) = gone.group
            && let Some(channels) = self.by_group.get_mut(&group)
        {
            channels.remove(&channel);
            if channels.is_empty() {
                self.by_group.remove(&group);
            }
        }
    }

    fn member_list(&self, channel: u32) -> Vec<String> {
        self.channels
            .get(&channel)
            .map(|c| c.members.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Channels `device` joined itself, other than `except`.
    fn joined_elsewhere(&self, device: &str, except: u32) -> usize {
        self.by_device.get(device).map_or(0, |channels| {
            channels
                .iter()
                .filter(|c| **c != except)
                .filter(|c| {
                    self.channels
                        .get(c)
                        .and_then(|c| c.members.get(device))
                        .is_some_and(|m| m.joined)
                })
                .count()
        })
    }

    /// Whether `device` may join one more channel (`channel` itself does not count).
    fn may_join(&self, channel: u32, device: &str, limits: ChannelLimits) -> bool {
        self.has_joined(channel, device)
            || self.joined_elsewhere(device, channel) < limits.per_device
    }

    /// Whether `device` joined `channel` itself (rather than being declared or on a roster).
    #[must_use]
    pub fn has_joined(&self, channel: u32, device: &str) -> bool {
        self.channels
            .get(&channel)
            .and_then(|c| c.members.get(device))
            .is_some_and(|m| m.joined)
    }

    /// Number of channels held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether no channel is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The group bound to `channel`.
    #[must_use]
    pub fn group_of(&self, channel: u32) -> Option<&str> {
        self.channels.get(&channel)?.group.as_deref()
    }

    /// Plain JOIN: adds `device` with its `relay` flag and the `declared` devices (relaying,
    /// unless already members) to the channel, merging with the current members.
    ///
    /// # Errors
    /// [`JoinRefused::GroupChannel`] if a group's roster governs the channel; the bounds of
    /// `limits` (nothing is applied then).
    pub fn join<'a>(
        &mut self,
        channel: u32,
        device: &str,
        relay: bool,
        declared: impl IntoIterator<Item = &'a str>,
        limits: ChannelLimits,
    ) -> Result<Joined, JoinRefused> {
        if let Some(group) = self.group_of(channel) {
            return Err(JoinRefused::GroupChannel(group.to_owned()));
        }
        if !self.may_join(channel, device, limits) {
            return Err(JoinRefused::ChannelLimit {
                limit: limits.per_device,
            });
        }
        let newcomers: BTreeSet<&str> = declared
            .into_iter()
            .filter(|d| *d != device && !self.is_member(channel, d))
            .collect();
        let joiner_new = usize::from(!self.is_member(channel, device));
        let current = self.channels.get(&channel).map_or(0, |c| c.members.len());
        if current.saturating_add(newcomers.len() + joiner_new) > limits.members {
            return Err(JoinRefused::ChannelFull {
                limit: limits.members,
            });
        }
        let added = !self.has_joined(channel, device) || !newcomers.is_empty();
        self.add(
            channel,
            device,
            Member {
                relay,
                joined: true,
            },
        );
        for other in newcomers {
            self.add_declared(channel, other);
        }
        Ok(Joined {
            members: self.member_list(channel),
            added,
        })
    }

    /// Whether `device` may bind `channel` to `group` with `roster` (see
    /// [`Channels::bind_group`]).
    ///
    /// # Errors
    /// Why not.
    pub fn check_bind(
        &self,
        channel: u32,
        group: &str,
        roster: &[String],
        device: &str,
        limits: ChannelLimits,
    ) -> Result<(), BindRefused> {
        if roster.iter().any(|m| m == device) && !self.may_join(channel, device, limits) {
            return Err(BindRefused::ChannelLimit {
                limit: limits.per_device,
            });
        }
        let Some(current) = self.channels.get(&channel) else {
            return Ok(());
        };
        match &current.group {
            Some(bound) if bound != group => Err(BindRefused::OtherGroup(bound.clone())),
            Some(_) => Ok(()),
            None if current.members.is_empty() => Ok(()),
            None if !current.members.contains_key(device) => Err(BindRefused::NotMember),
            None => {
                let evicted: Vec<String> = current
                    .members
                    .keys()
                    .filter(|m| !roster.contains(m))
                    .cloned()
                    .collect();
                if evicted.is_empty() {
                    Ok(())
                } else {
                    Err(BindRefused::WouldEvict(evicted))
                }
            }
        }
    }

    /// Binds `channel` to `group` and makes `roster` its members (devices no longer on the
    /// roster leave a channel already bound to the group). `device` joins with its `relay`
    /// flag; the others keep theirs (or relay). Returns the member list.
    ///
    /// # Errors
    /// A channel bound to another group is not rebound; a plain channel with members is bound
    /// only by one of them and only with all of them on the roster (so nobody can evict a
    /// conversation's members); `device` within its channel allowance.
    pub fn bind_group(
        &mut self,
        channel: u32,
        group: &str,
        roster: &[String],
        device: &str,
        relay: bool,
        limits: ChannelLimits,
    ) -> Result<Vec<String>, BindRefused> {
        self.check_bind(channel, group, roster, device, limits)?;
        let wanted: BTreeSet<&str> = roster.iter().map(String::as_str).collect();
        let stale: Vec<String> = self
            .channels
            .get(&channel)
            .map(|c| {
                c.members
                    .keys()
                    .filter(|m| !wanted.contains(m.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for member in stale {
            if let Some(c) = self.channels.get_mut(&channel) {
                c.members.remove(&member);
            }
            self.forget_device_channel(&member, channel);
        }
        for member in &wanted {
            self.add_declared(channel, member);
        }
        if wanted.contains(device) {
            self.add(
                channel,
                device,
                Member {
                    relay,
                    joined: true,
                },
            );
        }
        self.channels.entry(channel).or_default().group = Some(group.to_owned());
        self.by_group
            .entry(group.to_owned())
            .or_default()
            .insert(channel);
        Ok(self.member_list(channel))
    }

    /// Adds `device` to every channel bound to `group`; returns each channel with its new
    /// member list.
    pub fn add_to_group(&mut self, group: &str, device: &str) -> Vec<(u32, Vec<String>)> {
        let channels: Vec<u32> = self
            .by_group
            .get(group)
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default();
        channels
            .into_iter()
            .map(|channel| {
                self.add_declared(channel, device);
                (channel, self.member_list(channel))
            })
            .collect()
    }

    /// Adds `devices`, which joined `channel` on another node of the deployment, as declared
    /// members, if this node holds the channel (a member is here) and it is not a group's
    /// channel; as many as [`ChannelLimits::members`] allows. Announcements from other nodes
    /// never create a channel here. Returns how many were added.
    pub fn merge_remote<'a>(
        &mut self,
        channel: u32,
        devices: impl IntoIterator<Item = &'a str>,
        limits: ChannelLimits,
    ) -> usize {
        if self
            .channels
            .get(&channel)
            .is_none_or(|c| c.group.is_some())
        {
            return 0;
        }
        let mut added = 0;
        for device in devices {
            let full = self
                .channels
                .get(&channel)
                .is_none_or(|c| c.members.len() >= limits.members);
            if full {
                break;
            }
            if self.add_declared(channel, device) {
                added += 1;
            }
        }
        added
    }

    /// Removes `device` from the channel; returns the remaining members, or `None` if it was
    /// not a member. The channel is forgotten once no member that joined it itself is left:
    /// declared-only members never count against anyone's `channels_per_device`, so a channel
    /// kept for them alone would let a device declare, leave and repeat without bound.
    pub fn leave(&mut self, channel: u32, device: &str) -> Option<Vec<String>> {
        let entry = self.channels.get_mut(&channel)?;
        entry.members.remove(device)?;
        self.forget_device_channel(device, channel);
        let remaining = self.member_list(channel);
        if !self.any_joined(channel, |_| true) {
            self.forget_channel(channel);
        }
        Some(remaining)
    }

    /// Whether a member of `channel` that joined it itself satisfies `keep`.
    fn any_joined(&self, channel: u32, keep: impl Fn(&str) -> bool) -> bool {
        self.channels
            .get(&channel)
            .is_some_and(|c| c.members.iter().any(|(member, m)| m.joined && keep(member)))
    }

    /// Forgets every channel of `device` (or only `channel`, if given) that has no member
    /// that joined it itself `connected` any more, with its declared-only members (for the
    /// reason given at [`Self::leave`]). Returns how many were forgotten.
    pub fn release_idle(
        &mut self,
        device: &str,
        channel: Option<u32>,
        connected: impl Fn(&str) -> bool,
    ) -> usize {
        let candidates: Vec<u32> = match channel {
            Some(channel) => vec![channel],
            None => self
                .by_device
                .get(device)
                .map(|c| c.iter().copied().collect())
                .unwrap_or_default(),
        };
        let idle: Vec<u32> = candidates
            .into_iter()
            .filter(|&c| self.channels.contains_key(&c) && !self.any_joined(c, &connected))
            .collect();
        for channel in &idle {
            self.forget_channel(*channel);
        }
        idle.len()
    }

    /// The channel's members, if `device` is one of them.
    #[must_use]
    pub fn members_if_member(&self, channel: u32, device: &str) -> Option<Vec<String>> {
        let members = &self.channels.get(&channel)?.members;
        members
            .contains_key(device)
            .then(|| members.keys().cloned().collect())
    }

    /// Members of `channel` other than `device` that asked for a direct path (`relay:false`).
    #[must_use]
    pub fn direct_peers(&self, channel: u32, device: &str) -> Vec<String> {
        self.channels
            .get(&channel)
            .map(|c| {
                c.members
                    .iter()
                    .filter(|(member, m)| member.as_str() != device && !m.relay)
                    .map(|(member, _)| member.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every device sharing at least one channel with `device` (not `device` itself).
    #[must_use]
    pub fn peers_of(&self, device: &str) -> Vec<String> {
        let mut peers = BTreeSet::new();
        for channel in self.by_device.get(device).into_iter().flatten() {
            if let Some(c) = self.channels.get(channel) {
                peers.extend(c.members.keys().filter(|m| *m != device).cloned());
            }
        }
        peers.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
