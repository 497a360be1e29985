//! Channel membership: which devices belong to which channel, each with its `relay` flag, and
//! which channels a group's roster governs.
//!
//! Plain channels merge: every JOIN adds the sender (and any devices it declares) to the
//! current members. A channel bound to a group takes the group's roster as its members and
//! accepts no plain JOIN.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One channel.
#[derive(Debug, Default)]
struct Channel {
    /// Member device → `relay` flag (`false`: the member wants a direct path to its peers).
    members: BTreeMap<String, bool>,
    /// Group whose roster governs the channel.
    group: Option<String>,
}

/// Why a plain JOIN was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// The channel belongs to this group: join it with the group's roster check.
    GroupChannel(String),
}

/// Why a channel could not be bound to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindRefused {
    /// The channel already belongs to this other group.
    OtherGroup(String),
    /// The channel is a plain conversation the device is not part of: binding it would evict
    /// its members.
    NotMember,
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
    fn add(&mut self, channel: u32, device: &str, relay: bool) {
        self.channels
            .entry(channel)
            .or_default()
            .members
            .insert(device.to_owned(), relay);
        self.by_device
            .entry(device.to_owned())
            .or_default()
            .insert(channel);
    }

    fn forget_device_channel(&mut self, device: &str, channel: u32) {
        if let Some(channels) = self.by_device.get_mut(device) {
            channels.remove(&channel);
            if channels.is_empty() {
                self.by_device.remove(device);
            }
        }
    }

    fn member_list(&self, channel: u32) -> Vec<String> {
        self.channels
            .get(&channel)
            .map(|c| c.members.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The group bound to `channel`.
    #[must_use]
    pub fn group_of(&self, channel: u32) -> Option<&str> {
        self.channels.get(&channel)?.group.as_deref()
    }

    /// Plain JOIN: adds `device` with its `relay` flag and the `declared` devices (relaying,
    /// unless already members) to the channel, merging with the current members. Returns the
    /// resulting member list.
    ///
    /// # Errors
    /// [`JoinRefused::GroupChannel`] if a group's roster governs the channel.
    pub fn join<'a>(
        &mut self,
        channel: u32,
        device: &str,
        relay: bool,
        declared: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<String>, JoinRefused> {
        if let Some(group) = self.group_of(channel) {
            return Err(JoinRefused::GroupChannel(group.to_owned()));
        }
        self.add(channel, device, relay);
        for other in declared {
            let known = self
                .channels
                .get(&channel)
                .is_some_and(|c| c.members.contains_key(other));
            if !known {
                self.add(channel, other, true);
            }
        }
        Ok(self.member_list(channel))
    }

    /// Whether `device` may bind `channel` to `group` (see [`Channels::bind_group`]).
    ///
    /// # Errors
    /// Why not.
    pub fn check_bind(&self, channel: u32, group: &str, device: &str) -> Result<(), BindRefused> {
        let Some(current) = self.channels.get(&channel) else {
            return Ok(());
        };
        match &current.group {
            Some(bound) if bound != group => Err(BindRefused::OtherGroup(bound.clone())),
            Some(_) => Ok(()),
            None if !current.members.is_empty() && !current.members.contains_key(device) => {
                Err(BindRefused::NotMember)
            }
            None => Ok(()),
        }
    }

    /// Binds `channel` to `group` and makes `roster` its members (devices no longer on the
    /// roster leave). `device` joins with its `relay` flag; the others keep theirs (or relay).
    /// Returns the member list.
    ///
    /// # Errors
    /// A channel bound to another group is not rebound; a plain channel with members is bound
    /// only by one of them (so a stranger cannot evict a conversation's members).
    pub fn bind_group(
        &mut self,
        channel: u32,
        group: &str,
        roster: &[String],
        device: &str,
        relay: bool,
    ) -> Result<Vec<String>, BindRefused> {
        self.check_bind(channel, group, device)?;
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
            let known = self
                .channels
                .get(&channel)
                .is_some_and(|c| c.members.contains_key(*member));
            if !known {
                self.add(channel, member, true);
            }
        }
        if wanted.contains(device) {
            self.add(channel, device, relay);
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
                let known = self
                    .channels
                    .get(&channel)
                    .is_some_and(|c| c.members.contains_key(device));
                if !known {
                    self.add(channel, device, true);
                }
                (channel, self.member_list(channel))
            })
            .collect()
    }

    /// Removes `device` from the channel; returns the remaining members (the channel is
    /// forgotten once empty), or `None` if it was not a member.
    pub fn leave(&mut self, channel: u32, device: &str) -> Option<Vec<String>> {
        let entry = self.channels.get_mut(&channel)?;
        entry.members.remove(device)?;
        self.forget_device_channel(device, channel);
        let remaining = self.member_list(channel);
        if remaining.is_empty()
            && let Some(gone) = self.channels.remove(&channel)
            && let Some(group) = gone.group
            && let Some(channels) = self.by_group.get_mut(&group)
        {
            channels.remove(&channel);
            if channels.is_empty() {
                self.by_group.remove(&group);
            }
        }
        Some(remaining)
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
                    .filter(|(member, relay)| member.as_str() != device && !**relay)
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
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn join_merges_and_leave_removes_only_the_sender() {
        let mut c = Channels::default();
        assert_eq!(c.join(7, "a", true, []).unwrap(), ["a"]);
        assert_eq!(c.join(7, "b", true, []).unwrap(), ["a", "b"]);
        assert_eq!(c.join(7, "c", true, ["a"]).unwrap(), ["a", "b", "c"]);
        assert_eq!(c.leave(7, "b"), Some(strings(&["a", "c"])));
        assert_eq!(c.leave(7, "b"), None);
        assert_eq!(c.members_if_member(7, "b"), None);
        assert!(c.members_if_member(7, "a").is_some());
        c.leave(7, "a");
        c.leave(7, "c");
        assert_eq!(c.members_if_member(7, "a"), None);
        assert!(c.peers_of("a").is_empty());
    }

    #[test]
    fn relay_flags_are_per_member_and_declared_members_relay() {
        let mut c = Channels::default();
        c.join(7, "a", false, ["x"]).unwrap();
        c.join(7, "b", true, []).unwrap();
        // A later declaration does not reset a member's own flag.
        c.join(7, "b", true, ["a"]).unwrap();
        assert_eq!(c.direct_peers(7, "b"), ["a"]);
        assert!(c.direct_peers(7, "a").is_empty());
        c.join(7, "b", false, []).unwrap();
        assert_eq!(c.direct_peers(7, "a"), ["b"]);
    }

    #[test]
    fn peers_span_every_shared_channel() {
        let mut c = Channels::default();
        c.join(1, "a", true, ["b"]).unwrap();
        c.join(2, "a", true, ["c"]).unwrap();
        c.join(3, "d", true, ["e"]).unwrap();
        assert_eq!(c.peers_of("a"), ["b", "c"]);
        assert_eq!(c.peers_of("b"), ["a"]);
        assert_eq!(c.peers_of("e"), ["d"]);
        assert!(c.peers_of("z").is_empty());
    }

    #[test]
    fn group_channels_take_the_roster_and_refuse_plain_joins() {
        let mut c = Channels::default();
        c.join(9, "stranger", true, []).unwrap();
        // A stranger's conversation cannot be taken over by binding it to a group...
        assert_eq!(
            c.bind_group(9, "g1", &strings(&["a", "b"]), "a", false),
            Err(BindRefused::NotMember)
        );
        // ...but a member may turn it into the group's channel.
        c.join(9, "a", true, []).unwrap();
        let members = c
            .bind_group(9, "g1", &strings(&["a", "b"]), "a", false)
            .unwrap();
        assert_eq!(members, ["a", "b"]);
        assert_eq!(c.members_if_member(9, "stranger"), None);
        assert!(c.peers_of("stranger").is_empty());
        assert_eq!(c.group_of(9), Some("g1"));
        assert_eq!(c.direct_peers(9, "b"), ["a"]);
        assert_eq!(
            c.join(9, "x", true, []),
            Err(JoinRefused::GroupChannel("g1".to_owned()))
        );
        // A bound channel keeps its group.
        assert_eq!(
            c.bind_group(9, "g2", &strings(&["a"]), "a", true),
            Err(BindRefused::OtherGroup("g1".to_owned()))
        );
        assert_eq!(
            c.bind_group(9, "g1", &strings(&["a", "b"]), "b", true),
            Ok(strings(&["a", "b"]))
        );
        // An invite reaches every channel of the group.
        c.bind_group(10, "g1", &strings(&["a", "b"]), "b", true)
            .unwrap();
        let updated = c.add_to_group("g1", "c");
        assert_eq!(
            updated,
            [
                (9, strings(&["a", "b", "c"])),
                (10, strings(&["a", "b", "c"]))
            ]
        );
        assert!(c.add_to_group("g2", "c").is_empty());
        // Leaving the last member forgets the binding.
        for m in ["a", "b", "c"] {
            c.leave(9, m);
        }
        assert_eq!(c.group_of(9), None);
        assert_eq!(
            c.add_to_group("g1", "d"),
            [(10, strings(&["a", "b", "c", "d"]))]
        );
    }
}
