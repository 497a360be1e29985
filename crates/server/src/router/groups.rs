//! Group roster rules, without I/O: the roster a GROUP_CREATE stores, who may invite, and the
//! notices members receive.

use std::collections::BTreeMap;

use commucat_ccp::control::{GroupCreate, GroupRole as WireRole};
use commucat_store::{GroupMember, GroupRecord, GroupRole};

/// Longest accepted group id.
pub const MAX_GROUP_ID_LEN: usize = 128;

/// Why a GROUP_CREATE's roster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterRefused {
    /// A group or device id is malformed.
    #[error(transparent)]
    InvalidId(InvalidId),
    /// More devices than a channel may hold (`bounds.channel_members`).
    #[error("a group has at most {limit} members, got {got}")]
    TooLong {
        /// The bound.
        limit: usize,
        /// Devices the roster would have.
        got: usize,
    },
}

/// Why a client-chosen id was refused; names what the id was for (`group_id`, `device`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// Empty or longer than [`MAX_GROUP_ID_LEN`].
    #[error("{what} must be 1 to {MAX_GROUP_ID_LEN} bytes, got {len}")]
    Length {
        /// What the id names.
        what: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Holds something else than printable ASCII (a space, a control or non-ASCII character).
    #[error("{what} must be printable ASCII without spaces")]
    Characters {
        /// What the id names.
        what: String,
    },
}

/// The stored role for a wire role.
#[must_use]
pub const fn to_store(role: WireRole) -> GroupRole {
    match role {
        WireRole::Owner => GroupRole::Owner,
        WireRole::Admin => GroupRole::Admin,
        WireRole::Member => GroupRole::Member,
    }
}

/// The wire role for a stored role.
#[must_use]
pub const fn to_wire(role: GroupRole) -> WireRole {
    match role {
        GroupRole::Owner => WireRole::Owner,
        GroupRole::Admin => WireRole::Admin,
        GroupRole::Member => WireRole::Member,
    }
}

/// Whether `role` may invite members.
#[must_use]
pub const fn can_invite(role: GroupRole) -> bool {
    to_wire(role).can_invite()
}

/// Checks a client-chosen group id or device id: 1 to 128 printable ASCII characters.
///
/// # Errors
/// What is wrong with the id.
pub fn check_id(what: &str, id: &str) -> Result<(), InvalidId> {
    if id.is_empty() || id.len() > MAX_GROUP_ID_LEN {
        return Err(InvalidId::Length {
            what: what.to_owned(),
            len: id.len(),
        });
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidId::Characters {
            what: what.to_owned(),
        });
    }
    Ok(())
}

/// The group and roster a GROUP_CREATE from `owner` stores: the sender is the only owner;
/// listed members and devices named in `roles` join with their role (a requested `owner`
/// becomes `admin`, unlisted roles are `member`).
///
/// # Errors
/// An id that fails [`check_id`], or more than `max_roster` devices.
pub fn roster_for_create(
    create: &GroupCreate,
    group_id: &str,
    owner: &str,
    now: i64,
    max_roster: usize,
) -> Result<(GroupRecord, Vec<GroupMember>), RosterRefused> {
    check_id("group_id", group_id).map_err(RosterRefused::InvalidId)?;
    let mut roles: BTreeMap<&str, GroupRole> = BTreeMap::new();
    for device in create
        .members
        .iter()
        .map(String::as_str)
        .chain(create.roles.keys().map(String::as_str))
    {
        check_id("member device id", device).map_err(RosterRefused::InvalidId)?;
        let role = create
            .roles
            .get(device)
            .map_or(GroupRole::Member, |r| to_store(r.normalized_for_invite()));
        roles.insert(device, role);
    }
    roles.insert(owner, GroupRole::Owner);
    if roles.len() > max_roster {
        return Err(RosterRefused::TooLong {
            limit: max_roster,
            got: roles.len(),
        });
    }
    let group = GroupRecord {
        group_id: group_id.to_owned(),
        owner_device: owner.to_owned(),
        name: create.name.clone(),
        relay: create.relay,
        created_at: now,
    };
    let members = roles
        .into_iter()
        .map(|(device, role)| GroupMember {
            group_id: group_id.to_owned(),
            device_id: device.to_owned(),
            role,
            joined_at: now,
        })
        .collect();
    Ok((group, members))
}

/// The GROUP_CREATE members receive: the resolved id, the whole roster with roles, and the
/// owner.
#[must_use]
pub fn create_notice(group: &GroupRecord, roster: &[GroupMember]) -> GroupCreate {
    GroupCreate {
        group_id: Some(group.group_id.clone()),
        members: roster.iter().map(|m| m.device_id.clone()).collect(),
        roles: roster
            .iter()
            .map(|m| (m.device_id.clone(), to_wire(m.role)))
            .collect(),
        relay: group.relay,
        name: group.name.clone(),
        owner: Some(group.owner_device.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(members: &[&str], roles: &[(&str, WireRole)]) -> GroupCreate {
        GroupCreate {
            group_id: None,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            roles: roles.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect(),
            relay: true,
            name: Some("team".to_owned()),
            owner: Some("ignored".to_owned()),
        }
    }

    #[test]
    fn the_sender_owns_and_requested_owners_become_admins() {
        let request = create(
            &["alice", "bob", "carol"],
            &[("bob", WireRole::Owner), ("dave", WireRole::Admin)],
        );
        let (group, roster) = roster_for_create(&request, "grp-1", "alice", 50, 1024).unwrap();
        assert_eq!(group.owner_device, "alice");
        assert_eq!(group.name.as_deref(), Some("team"));
        let roles: Vec<_> = roster
            .iter()
            .map(|m| (m.device_id.as_str(), m.role))
            .collect();
        assert_eq!(
            roles,
            [
                ("alice", GroupRole::Owner),
                ("bob", GroupRole::Admin),
                ("carol", GroupRole::Member),
                ("dave", GroupRole::Admin),
            ]
        );
        // The sender is the owner even when not listed.
        let (_, roster) = roster_for_create(&create(&["bob"], &[]), "g", "zed", 1, 1024).unwrap();
        assert!(
            roster
                .iter()
                .any(|m| m.device_id == "zed" && m.role == GroupRole::Owner)
        );
        let notice = create_notice(
            &group,
            &roster_for_create(&request, "grp-1", "alice", 50, 1024)
                .unwrap()
                .1,
        );
        assert_eq!(notice.owner.as_deref(), Some("alice"));
        assert_eq!(notice.group_id.as_deref(), Some("grp-1"));
        assert_eq!(notice.roles.get("bob"), Some(&WireRole::Admin));
        assert_eq!(notice.members.len(), 4);
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("group_id", "grp-1").is_ok());
        assert!(check_id("group_id", "").is_err());
        assert!(check_id("group_id", "a b").is_err());
        assert!(check_id("group_id", &"x".repeat(129)).is_err());
        assert!(matches!(
            roster_for_create(&create(&["bad id"], &[]), "g", "a", 1, 1024),
            Err(RosterRefused::InvalidId(_))
        ));
        // The sender counts: two listed devices and the owner do not fit in two places.
        assert_eq!(
            roster_for_create(&create(&["b", "c"], &[]), "g", "a", 1, 2),
            Err(RosterRefused::TooLong { limit: 2, got: 3 })
        );
        assert!(can_invite(GroupRole::Owner));
        assert!(can_invite(GroupRole::Admin));
        assert!(!can_invite(GroupRole::Member));
    }
}
