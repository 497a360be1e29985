//! Unit tests of the channel tables.

use super::*;

const L: ChannelLimits = ChannelLimits {
    members: 1024,
    per_device: 256,
};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn join<'a>(
    c: &mut Channels,
    channel: u32,
    device: &str,
    relay: bool,
    declared: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    c.join(channel, device, relay, declared, L).unwrap().members
}

#[test]
fn join_merges_and_leave_removes_only_the_sender() {
    let mut c = Channels::default();
    assert_eq!(join(&mut c, 7, "a", true, []), ["a"]);
    assert_eq!(join(&mut c, 7, "b", true, []), ["a", "b"]);
    assert_eq!(join(&mut c, 7, "c", true, ["a"]), ["a", "b", "c"]);
    assert_eq!(c.leave(7, "b"), Some(strings(&["a", "c"])));
    assert_eq!(c.leave(7, "b"), None);
    assert_eq!(c.members_if_member(7, "b"), None);
    assert!(c.members_if_member(7, "a").is_some());
    c.leave(7, "a");
    c.leave(7, "c");
    assert_eq!(c.members_if_member(7, "a"), None);
    assert!(c.peers_of("a").is_empty());
    assert!(c.is_empty());
}

#[test]
fn a_join_that_adds_nobody_says_so() {
    let mut c = Channels::default();
    assert!(c.join(7, "a", true, [], L).unwrap().added);
    assert!(!c.join(7, "a", true, ["a"], L).unwrap().added);
    assert!(c.join(7, "a", true, ["b"], L).unwrap().added);
    // b was declared: its own first JOIN is news to the others, a second one is not.
    assert!(c.join(7, "b", false, [], L).unwrap().added);
    assert!(!c.join(7, "b", false, [], L).unwrap().added);
    assert_eq!(c.direct_peers(7, "a"), ["b"]);
}

#[test]
fn members_per_channel_are_bounded_and_nothing_is_applied_past_them() {
    let mut c = Channels::default();
    let small = ChannelLimits {
        members: 3,
        per_device: 8,
    };
    c.join(1, "a", true, ["b"], small).unwrap();
    assert_eq!(
        c.join(1, "c", true, ["d"], small),
        Err(JoinRefused::ChannelFull { limit: 3 })
    );
    assert_eq!(c.members_if_member(1, "a"), Some(strings(&["a", "b"])));
    assert!(c.peers_of("c").is_empty());
    // Members already in do not count twice.
    c.join(1, "c", true, ["a", "b"], small).unwrap();
    c.join(1, "a", true, ["b", "c"], small).unwrap();
    assert_eq!(
        c.join(1, "d", true, [], small),
        Err(JoinRefused::ChannelFull { limit: 3 })
    );
}

#[test]
fn channels_per_device_count_only_channels_it_joined_itself() {
    let mut c = Channels::default();
    let small = ChannelLimits {
        members: 8,
        per_device: 2,
    };
    c.join(1, "a", true, ["victim"], small).unwrap();
    c.join(2, "a", true, ["victim"], small).unwrap();
    assert_eq!(
        c.join(3, "a", true, [], small),
        Err(JoinRefused::ChannelLimit { limit: 2 })
    );
    assert_eq!(c.len(), 2);
    // Joining again a channel it is in is no new channel.
    c.join(2, "a", false, [], small).unwrap();
    // Being declared into two channels does not use up the victim's own allowance...
    c.join(4, "victim", true, [], small).unwrap();
    // ...but joining one it was declared into does.
    c.join(1, "victim", true, [], small).unwrap();
    assert_eq!(
        c.join(5, "victim", true, [], small),
        Err(JoinRefused::ChannelLimit { limit: 2 })
    );
    // Leaving frees a place.
    c.leave(1, "a");
    c.join(3, "a", true, [], small).unwrap();
}

#[test]
fn idle_channels_are_released_with_their_declared_members() {
    let mut c = Channels::default();
    join(&mut c, 1, "a", true, ["x", "y"]);
    join(&mut c, 2, "a", true, []);
    join(&mut c, 2, "b", true, []);
    c.bind_group(3, "g", &strings(&["a", "z"]), "a", true, L)
        .unwrap();
    // a disconnects while b is still connected: channel 2 stays, 1 and 3 go.
    assert_eq!(c.release_idle("a", None, |d| d == "b"), 2);
    assert_eq!(c.len(), 1);
    assert!(c.peers_of("x").is_empty());
    assert!(c.peers_of("z").is_empty());
    assert!(c.add_to_group("g", "w").is_empty());
    assert_eq!(c.members_if_member(2, "a"), Some(strings(&["a", "b"])));
    // Only the named channel is looked at when one is given.
    join(&mut c, 4, "b", true, []);
    assert_eq!(c.release_idle("b", Some(2), |_| false), 1);
    assert_eq!(c.len(), 1);
    assert_eq!(c.release_idle("b", None, |_| false), 1);
    assert!(c.is_empty());
    assert!(c.peers_of("b").is_empty());
}

#[test]
fn relay_flags_are_per_member_and_declared_members_relay() {
    let mut c = Channels::default();
    join(&mut c, 7, "a", false, ["x"]);
    join(&mut c, 7, "b", true, []);
    // A later declaration does not reset a member's own flag.
    join(&mut c, 7, "b", true, ["a"]);
    assert_eq!(c.direct_peers(7, "b"), ["a"]);
    assert!(c.direct_peers(7, "a").is_empty());
    join(&mut c, 7, "b", false, []);
    assert_eq!(c.direct_peers(7, "a"), ["b"]);
}

#[test]
fn peers_span_every_shared_channel() {
    let mut c = Channels::default();
    join(&mut c, 1, "a", true, ["b"]);
    join(&mut c, 2, "a", true, ["c"]);
    join(&mut c, 3, "d", true, ["e"]);
    assert_eq!(c.peers_of("a"), ["b", "c"]);
    assert_eq!(c.peers_of("b"), ["a"]);
    assert_eq!(c.peers_of("e"), ["d"]);
    assert!(c.peers_of("z").is_empty());
}

#[test]
fn a_group_binds_a_conversation_only_with_every_member_on_its_roster() {
    let mut c = Channels::default();
    join(&mut c, 9, "stranger", true, []);
    // A stranger's conversation cannot be taken over by binding it to a group...
    assert_eq!(
        c.bind_group(9, "g1", &strings(&["a", "b"]), "a", false, L),
        Err(BindRefused::NotMember)
    );
    // ...nor by a member whose roster leaves someone out...
    join(&mut c, 9, "a", true, []);
    assert_eq!(
        c.bind_group(9, "g1", &strings(&["a", "b"]), "a", false, L),
        Err(BindRefused::WouldEvict(strings(&["stranger"])))
    );
    assert_eq!(c.group_of(9), None);
    // ...but a member may turn it into the group's channel with everyone on the roster.
    let members = c
        .bind_group(9, "g1", &strings(&["a", "b", "stranger"]), "a", false, L)
        .unwrap();
    assert_eq!(members, ["a", "b", "stranger"]);
    assert_eq!(c.group_of(9), Some("g1"));
    assert_eq!(c.direct_peers(9, "b"), ["a"]);
    assert_eq!(
        c.join(9, "x", true, [], L),
        Err(JoinRefused::GroupChannel("g1".to_owned()))
    );
    // A bound channel keeps its group; its roster governs who stays.
    assert_eq!(
        c.bind_group(9, "g2", &strings(&["a"]), "a", true, L),
        Err(BindRefused::OtherGroup("g1".to_owned()))
    );
    assert_eq!(
        c.bind_group(9, "g1", &strings(&["a", "b"]), "b", true, L),
        Ok(strings(&["a", "b"]))
    );
    assert!(c.peers_of("stranger").is_empty());
    // An invite reaches every channel of the group.
    c.bind_group(10, "g1", &strings(&["a", "b"]), "b", true, L)
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
    // Binding counts against the binder's channel allowance.
    let one = ChannelLimits {
        members: 8,
        per_device: 1,
    };
    join(&mut c, 11, "e", true, []);
    assert_eq!(
        c.bind_group(12, "g3", &strings(&["e"]), "e", true, one),
        Err(BindRefused::ChannelLimit { limit: 1 })
    );
}

/// Declaring a connected device and leaving must not leave the channel behind for it: the
/// declared device never joined, so the channel counts against nobody's allowance.
#[test]
fn declare_then_leave_leaves_nothing_behind() {
    let mut c = Channels::default();
    for channel in 0..1000 {
        join(&mut c, channel, "a", true, ["b"]);
        c.leave(channel, "a");
    }
    assert!(c.is_empty(), "{} channels held for b", c.len());

    // The same when the declaring device disconnects while b stays connected.
    join(&mut c, 5, "a", true, ["b"]);
    assert_eq!(c.release_idle("a", None, |d| d == "b"), 1);
    assert!(c.is_empty());
    // A channel b joined itself stays while b is connected.
    join(&mut c, 6, "a", true, ["b"]);
    join(&mut c, 6, "b", true, []);
    assert_eq!(c.release_idle("a", None, |d| d == "b"), 0);
    assert_eq!(c.len(), 1);
}

/// Members that joined on other nodes are merged into channels this node holds, within the
/// member bound; they never create a channel here nor touch a group's channel.
#[test]
fn remote_members_merge_only_into_held_plain_channels() {
    let mut c = Channels::default();
    let limits = ChannelLimits {
        members: 3,
        per_device: 8,
    };
    assert_eq!(c.merge_remote(1, ["x"], limits), 0);
    assert!(c.is_empty());
    join(&mut c, 1, "a", true, []);
    assert_eq!(c.merge_remote(1, ["x", "a", "y", "z"], limits), 2);
    assert_eq!(c.members_if_member(1, "a").unwrap(), ["a", "x", "y"]);
    c.bind_group(2, "g", &strings(&["a"]), "a", true, limits)
        .unwrap();
    assert_eq!(c.merge_remote(2, ["x"], limits), 0);
}
