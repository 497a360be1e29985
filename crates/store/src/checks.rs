//! Argument checks every backend applies before touching the database.

use std::collections::HashSet;

use crate::error::{Result, StoreError};
use crate::model::{GroupMember, GroupRecord, GroupRole};

/// Checks the roster of a new group: every member belongs to it, no device twice, exactly one
/// owner and it is the group's `owner_device`.
pub(crate) fn check_roster(group: &GroupRecord, members: &[GroupMember]) -> Result<()> {
    let mut seen = HashSet::new();
    let mut owners = 0;
    for member in members {
        if member.group_id != group.group_id {
            return Err(StoreError::Invalid(format!(
                "member {} names group {}, not {}",
                member.device_id, member.group_id, group.group_id
            )));
        }
        if !seen.insert(member.device_id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "device {} listed twice",
                member.device_id
            )));
        }
        if member.role == GroupRole::Owner {
            if member.device_id != group.owner_device {
                return Err(StoreError::Invalid(format!(
                    "only the owner device {} may have the owner role",
                    group.owner_device
                )));
            }
            owners += 1;
        }
    }
    if owners != 1 {
        return Err(StoreError::Invalid(format!(
            "the roster must list the owner {} with the owner role",
            group.owner_device
        )));
    }
    Ok(())
}
