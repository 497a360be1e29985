//! Profile field lengths: a display name, avatar URL or friend entry is bounded where it is
//! set (`bounds.display_name_bytes`, `bounds.avatar_url_bytes`; handles by
//! [`crate::registry::valid_handle`]), and bounded again where it is sent, so a value
//! stored before the bound existed (or under a larger one) can never make handshake message 2
//! exceed the Noise message limit of 65,535 bytes and lock its account out.

use commucat_store::UserRecord;

use crate::config::{Bound, BoundSettings, as_usize};

/// The most bytes one profile field takes in a handshake message, JSON escaping included.
/// Two fields at this size leave message 2 far below the Noise limit.
pub const WIRE_FIELD_MAX: usize = 8 * 1024;

/// A bounded profile field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    /// `display_name`.
    DisplayName,
    /// `avatar_url`.
    AvatarUrl,
}

impl ProfileField {
    /// The wire name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::DisplayName => "display_name",
            Self::AvatarUrl => "avatar_url",
        }
    }

    /// The bound that limits it.
    #[must_use]
    pub const fn bound(self) -> Bound {
        match self {
            Self::DisplayName => Bound::DisplayNameBytes,
            Self::AvatarUrl => Bound::AvatarUrlBytes,
        }
    }
}

/// A profile field over its bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is {len} bytes; at most {max} are allowed (bounds.{})", .field.name(), .field.bound().name())]
pub struct TooLong {
    /// Which field.
    pub field: ProfileField,
    /// Its length in bytes.
    pub len: usize,
    /// The bound.
    pub max: usize,
}

/// The lengths profile fields may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileBounds {
    /// Bytes of a display name.
    pub display_name_bytes: usize,
    /// Bytes of an avatar URL.
    pub avatar_url_bytes: usize,
}

impl ProfileBounds {
    /// The bounds `bounds` sets.
    #[must_use]
    pub fn from_settings(bounds: &BoundSettings) -> Self {
        Self {
            display_name_bytes: as_usize(bounds.display_name_bytes),
            avatar_url_bytes: as_usize(bounds.avatar_url_bytes),
        }
    }

    /// The bound of `field`.
    #[must_use]
    pub const fn max(&self, field: ProfileField) -> usize {
        match field {
            ProfileField::DisplayName => self.display_name_bytes,
            ProfileField::AvatarUrl => self.avatar_url_bytes,
        }
    }

    /// Checks one value of `field`.
    ///
    /// # Errors
    /// [`TooLong`] if it exceeds the bound.
    pub fn check(&self, field: ProfileField, value: Option<&str>) -> Result<(), TooLong> {
        let max = self.max(field);
        match value {
            Some(value) if value.len() > max => Err(TooLong {
                field,
                len: value.len(),
                max,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a display name and an avatar URL; the first one over its bound is the error.
    ///
    /// # Errors
    /// [`TooLong`] for the first field over its bound.
    pub fn check_both(
        &self,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<(), TooLong> {
        self.check(ProfileField::DisplayName, display_name)?;
        self.check(ProfileField::AvatarUrl, avatar_url)
    }

    /// The profile as it may be sent: a display name cut (at a character boundary) to its
    /// bound and to [`WIRE_FIELD_MAX`] escaped bytes; an avatar URL that does not fit is left
    /// out (a cut URL would point elsewhere).
    #[must_use]
    pub fn for_wire(&self, user: UserRecord) -> UserRecord {
        let display_name = user
            .display_name
            .map(|name| cut(&name, self.display_name_bytes));
        let avatar_url = user
            .avatar_url
            .filter(|url| url.len() <= self.avatar_url_bytes && escaped_len(url) <= WIRE_FIELD_MAX);
        UserRecord {
            display_name,
            avatar_url,
            ..user
        }
    }
}

/// The longest prefix of `value` (at a character boundary) of at most `max` bytes whose JSON
/// string escaping takes at most [`WIRE_FIELD_MAX`] bytes.
fn cut(value: &str, max: usize) -> String {
    let (mut raw, mut escaped) = (0usize, 0usize);
    for (index, c) in value.char_indices() {
        let next_raw = raw + c.len_utf8();
        let next_escaped = escaped + escaped_char_len(c);
        if next_raw > max || next_escaped > WIRE_FIELD_MAX {
            return value[..index].to_owned();
        }
        (raw, escaped) = (next_raw, next_escaped);
    }
    value.to_owned()
}

/// Bytes of `value` inside a JSON string (without the quotes).
fn escaped_len(value: &str) -> usize {
    value.chars().map(escaped_char_len).sum()
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(display_name: Option<String>, avatar_url: Option<String>) -> UserRecord {
        UserRecord {
            user_id: "u".to_owned(),
            handle: "h".to_owned(),
            display_name,
            avatar_url,
            created_at: 0,
        }
    }

    const BOUNDS: ProfileBounds = ProfileBounds {
        display_name_bytes: 256,
        avatar_url_bytes: 2048,
    };

    #[test]
    fn values_at_the_bound_pass_and_longer_ones_are_named() {
        assert!(BOUNDS.check_both(Some(&"a".repeat(256)), None).is_ok());
        assert!(BOUNDS.check_both(None, Some(&"a".repeat(2048))).is_ok());
        let error = BOUNDS
            .check_both(Some(&"a".repeat(257)), None)
            .expect_err("257 > 256");
        assert_eq!(error.field, ProfileField::DisplayName);
        assert!(error.to_string().contains("bounds.display_name_bytes"));
        let error = BOUNDS
            .check_both(None, Some(&"a".repeat(2049)))
            .expect_err("2049 > 2048");
        assert_eq!(error.field, ProfileField::AvatarUrl);
    }

    #[test]
    fn the_wire_profile_is_cut_at_characters_and_escaped_size() {
        let sent = BOUNDS.for_wire(user(Some("é".repeat(200)), Some("x".repeat(2049))));
        assert_eq!(sent.display_name, Some("é".repeat(128)));
        assert_eq!(sent.avatar_url, None);
        let wide = ProfileBounds {
            display_name_bytes: 1 << 20,
            avatar_url_bytes: 1 << 20,
        };
        let sent = wide.for_wire(user(Some("\u{1}".repeat(70_000)), Some("y".repeat(9000))));
        let name = sent.display_name.unwrap_or_default();
        assert!(serde_json::to_string(&name).unwrap().len() <= WIRE_FIELD_MAX + 2);
        assert_eq!(name.len(), WIRE_FIELD_MAX / 6);
        assert_eq!(sent.avatar_url, None);
        let sent = BOUNDS.for_wire(user(Some("ok".to_owned()), Some("https://a".to_owned())));
        assert_eq!(sent.display_name.as_deref(), Some("ok"));
        assert_eq!(sent.avatar_url.as_deref(), Some("https://a"));
    }
}
