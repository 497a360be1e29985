//! GROUP_CREATE and GROUP_INVITE.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    /// Created the group; may invite and change roles.
    Owner,
    /// May invite.
    Admin,
    /// May read and write.
    Member,
}

impl GroupRole {
    /// Whether this role may invite members.
    #[must_use]
    pub const fn can_invite(self) -> bool {
        matches!(self, GroupRole::Owner | GroupRole::Admin)
    }

    /// The role granted for a request: a group has one owner, so a requested `owner` becomes
    /// `admin`.
    #[must_use]
    pub const fn normalized_for_invite(self) -> Self {
        match self {
            GroupRole::Owner => GroupRole::Admin,
            other => other,
        }
    }
}

const fn default_true() -> bool {
    true
}

/// GROUP_CREATE: a new group with a persistent roster; the sender becomes its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreate {
    /// Client-chosen group id; the server generates one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Member device ids.
    #[serde(default)]
    pub members: Vec<String>,
    /// Roles by device id; unlisted members are `member`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, GroupRole>,
    /// Server fan-out (default `true`).
    #[serde(default = "default_true")]
    pub relay: bool,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner device (set by the server on fan-out; ignored from clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// GROUP_INVITE: adds a device to a group (owners and admins only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInvite {
    /// Target group.
    pub group_id: String,
    /// Invited device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Alias of `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Requested role (default `member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<GroupRole>,
}

impl GroupInvite {
    /// The invited device, from `device` or `member`.
    #[must_use]
    pub fn resolved_device(&self) -> Option<&str> {
        self.device.as_deref().or(self.member.as_deref())
    }

    /// The role to grant: the requested one normalized, or `member`.
    #[must_use]
    pub fn granted_role(&self) -> GroupRole {
        self.role
            .map_or(GroupRole::Member, GroupRole::normalized_for_invite)
    }
}
