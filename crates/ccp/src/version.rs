//! Protocol version negotiation.

/// The CCP-1 protocol version.
pub const PROTOCOL_VERSION: u16 = 1;

/// Versions this implementation speaks, ascending.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[u16] = &[PROTOCOL_VERSION];

/// Picks the highest version present in both `offered` and `supported`.
///
/// `offered` is as wide as the JSON allows, so an out-of-range announcement is simply not
/// matched rather than rejected.
///
/// A client that announces nothing (`offered` empty) is a v1 client: the specification says to
/// fall back to v1 for clients lacking the version fields, so callers pass `&[1]` in that case
/// (see [`crate::control::Hello::offered_versions`]).
#[must_use]
pub fn negotiate(offered: &[u64], supported: &[u16]) -> Option<u16> {
    supported
        .iter()
        .copied()
        .filter(|v| offered.contains(&u64::from(*v)))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_common_version_wins() {
        assert_eq!(negotiate(&[1, 2, 3], &[1, 2]), Some(2));
        assert_eq!(negotiate(&[3, 1], &[1, 2, 3]), Some(3));
        assert_eq!(negotiate(&[0, 1, 2], SUPPORTED_PROTOCOL_VERSIONS), Some(1));
    }

    #[test]
    fn disjoint_sets_do_not_negotiate() {
        assert_eq!(negotiate(&[2, 3], SUPPORTED_PROTOCOL_VERSIONS), None);
        assert_eq!(negotiate(&[], SUPPORTED_PROTOCOL_VERSIONS), None);
    }
}
