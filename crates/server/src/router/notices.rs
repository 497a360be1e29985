//! Membership notices (server → client JOIN) that always fit a control payload.
//!
//! The deployed terminal client replaces its member list with a JOIN's `members`
//! (wire-compat §7.4a), so a notice carries the whole list while it fits in
//! [`NOTICE_BUDGET`] bytes. A larger channel's notice lists the joiner first and then as many
//! members as fit, and says how many members the channel has in `member_count`; the display
//! name is left out if it alone would not leave room for the list. GROUP_CREATE notices are
//! fitted the same way ([`fit_group_notice`]).

use commucat_ccp::MAX_CONTROL_JSON_LEN;
use commucat_ccp::control::{GroupCreate, GroupRole, Join};

/// Most bytes of a membership notice's JSON: half the control-payload limit, so a notice never
/// comes near the limit whatever the member ids, name or group id.
pub const NOTICE_BUDGET: usize = MAX_CONTROL_JSON_LEN / 2;

/// JSON length of one string (quotes and escapes included).
fn json_len(value: &str) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |s| s.len())
}

/// The JOIN notice about `members` after `joiner` joined, within [`NOTICE_BUDGET`].
#[must_use]
pub fn membership_notice(
    members: &[String],
    joiner: &str,
    relay: bool,
    group_id: Option<String>,
    name: Option<String>,
) -> Join {
    let mut notice = Join {
        members: Vec::new(),
        relay,
        group_id,
        name,
        member_count: None,
    };
    // `{"members":[],"relay":false,"member_count":18446744073709551615}` plus the group id and
    // the name with their keys.
    let fixed = |notice: &Join| {
        64 + notice.group_id.as_deref().map_or(0, |g| json_len(g) + 12)
            + notice.name.as_deref().map_or(0, |n| json_len(n) + 8)
    };
    if fixed(&notice) > NOTICE_BUDGET / 2 {
        notice.name = None;
    }
    let room = NOTICE_BUDGET.saturating_sub(fixed(&notice));
    let whole: usize = members.iter().map(|m| json_len(m) + 1).sum();
    if whole <= room {
        notice.members = members.to_vec();
        return notice;
    }
    let mut used = 0usize;
    let ordered = members
        .iter()
        .filter(|m| *m == joiner)
        .chain(members.iter().filter(|m| *m != joiner));
    for member in ordered {
        let len = json_len(member) + 1;
        if used + len > room {
            break;
        }
        used += len;
        notice.members.push(member.clone());
    }
    notice.member_count = Some(u64::try_from(members.len()).unwrap_or(u64::MAX));
    notice
}

fn json_size<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// A GROUP_CREATE notice within [`NOTICE_BUDGET`]: if the whole roster does not fit, `roles`
/// keeps only owners and admins (unlisted members are `member`), then a name that alone would
/// not leave room is left out, then `members` lists the owner first and as many as fit.
#[must_use]
pub fn fit_group_notice(mut notice: GroupCreate) -> GroupCreate {
    if json_size(&notice) <= NOTICE_BUDGET {
        return notice;
    }
    notice.roles.retain(|_, role| *role != GroupRole::Member);
    if notice.name.as_deref().map_or(0, json_len) > NOTICE_BUDGET / 4 {
        notice.name = None;
    }
    let mut size = json_size(&notice);
    if size <= NOTICE_BUDGET {
        return notice;
    }
    let owner = notice.owner.clone().unwrap_or_default();
    let mut members = std::mem::take(&mut notice.members);
    if let Some(at) = members.iter().position(|m| *m == owner) {
        members.swap(0, at);
    }
    size = json_size(&notice);
    for member in members {
        let len = json_len(&member) + 1;
        if size + len > NOTICE_BUDGET {
            break;
        }
        size += len;
        notice.members.push(member);
    }
    notice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size<T: serde::Serialize>(notice: &T) -> usize {
        serde_json::to_vec(notice).expect("serializes").len()
    }

    #[test]
    fn small_channels_get_the_whole_list() {
        let members = vec!["a".to_owned(), "b".to_owned()];
        let notice = membership_notice(&members, "b", true, Some("g".into()), Some("n".into()));
        assert_eq!(notice.members, members);
        assert_eq!(notice.member_count, None);
        assert_eq!(notice.name.as_deref(), Some("n"));
    }

    #[test]
    fn a_list_past_the_control_limit_is_capped_with_a_count() {
        // ~2,300 ids of 128 characters: about 300 KB as a plain list.
        let members: Vec<String> = (0..2300)
            .map(|i| format!("{i:06}{}", "x".repeat(122)))
            .collect();
        let full = Join {
            members: members.clone(),
            relay: true,
            group_id: None,
            name: None,
            member_count: None,
        };
        assert!(size(&full) > MAX_CONTROL_JSON_LEN);
        let joiner = members[1500].clone();
        let notice = membership_notice(&members, &joiner, true, None, None);
        assert!(size(&notice) <= NOTICE_BUDGET, "{}", size(&notice));
        assert_eq!(notice.members[0], joiner);
        assert!(notice.members.len() > 900);
        assert_eq!(notice.member_count, Some(2300));
        assert!(
            commucat_ccp::Frame::control(commucat_ccp::FrameType::Join, 7, 1, &notice).is_ok(),
            "the notice encodes"
        );
    }

    #[test]
    fn a_huge_name_is_dropped_rather_than_the_list() {
        let members = vec!["a".to_owned()];
        let name = "n".repeat(MAX_CONTROL_JSON_LEN);
        let notice = membership_notice(&members, "a", false, None, Some(name));
        assert_eq!(notice.name, None);
        assert_eq!(notice.members, members);
        assert!(size(&notice) <= NOTICE_BUDGET);
    }

    #[test]
    fn a_large_roster_notice_keeps_owners_and_admins_and_fits() {
        let members: Vec<String> = (0..1024)
            .map(|i| format!("{i:06}{}", "y".repeat(122)))
            .collect();
        let mut roles: std::collections::BTreeMap<String, GroupRole> = members
            .iter()
            .map(|m| (m.clone(), GroupRole::Member))
            .collect();
        roles.insert(members[700].clone(), GroupRole::Owner);
        roles.insert(members[3].clone(), GroupRole::Admin);
        let notice = GroupCreate {
            group_id: Some("g".into()),
            members: members.clone(),
            roles,
            relay: true,
            name: Some("n".repeat(100_000)),
            owner: Some(members[700].clone()),
        };
        assert!(size(&notice) > MAX_CONTROL_JSON_LEN);
        let fitted = fit_group_notice(notice);
        assert!(size(&fitted) <= NOTICE_BUDGET, "{}", size(&fitted));
        assert_eq!(fitted.members[0], members[700]);
        assert_eq!(fitted.roles.len(), 2);
        assert_eq!(fitted.name, None);
        assert!(fitted.members.len() > 900);
        // A small one is untouched.
        let small = GroupCreate {
            members: vec!["a".into()],
            roles: [("a".to_owned(), GroupRole::Member)].into(),
            name: Some("team".into()),
            ..fitted
        };
        assert_eq!(fit_group_notice(small.clone()), small);
    }
}
