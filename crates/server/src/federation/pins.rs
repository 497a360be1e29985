//! The keys accepted from each peer: the key pinned in its configuration until the peer
//! rotates; then the new key (learned from the peer's published [`Rotation`], verified with
//! the key pinned before) and the previous key until the end of its grace period.
//!
//! Bounded: only configured peers have an entry, each holds at most two keys; refreshes are
//! throttled per peer ([`REFRESH_INTERVAL`]), so forged events cannot make this server fetch a
//! peer's well-known document more than once per interval.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use commucat_keys::VerifyingKey;

use crate::keys::federation::{Rotation, RotationError};

/// Least time between two fetches of one peer's well-known document.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// A key accepted from a peer, until `until` (unix seconds) if set.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    /// The key.
    pub key: VerifyingKey,
    /// End of its grace period, if it was rotated out.
    pub until: Option<i64>,
}

/// Learned keys and refresh times per peer.
#[derive(Debug, Default)]
pub struct Pins {
    learned: RwLock<HashMap<String, [Option<Pin>; 2]>>,
    refreshed: Mutex<HashMap<String, Instant>>,
}

impl Pins {
    /// The keys accepted from `domain` at `now`: the learned ones if it rotated, else
    /// `configured`.
    #[must_use]
    pub fn accepted(
        &self,
        domain: &str,
        configured: Option<VerifyingKey>,
        now: i64,
    ) -> Vec<VerifyingKey> {
        let learned = self.learned.read().unwrap_or_else(PoisonError::into_inner);
        match learned.get(domain) {
            Some(pins) => pins
                .iter()
                .flatten()
                .filter(|p| p.until.is_none_or(|until| until > now))
                .map(|p| p.key)
                .collect(),
            None => configured.into_iter().collect(),
        }
    }

    /// Accepts the new key of `rotation` for `domain` if one of `accepted` signed it (the
    /// previous key stays accepted until `rotation.valid_until`). `Ok(false)`: already known.
    ///
    /// # Errors
    /// No accepted key signed the rotation.
    pub fn learn(
        &self,
        domain: &str,
        accepted: &[VerifyingKey],
        rotation: &Rotation,
    ) -> Result<bool, RotationError> {
        let mut last = RotationError::NotPinned;
        for pinned in accepted {
            match rotation.verify(domain, pinned) {
                Ok(new_key) => {
                    if accepted.contains(&new_key) {
                        return Ok(false);
                    }
                    let pins = [
                        Some(Pin {
                            key: new_key,
                            until: None,
                        }),
                        Some(Pin {
                            key: *pinned,
                            until: Some(rotation.valid_until),
                        }),
                    ];
                    self.learned
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(domain.to_owned(), pins);
                    return Ok(true);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether `domain`'s well-known document may be fetched now (at most once per
    /// [`REFRESH_INTERVAL`]); taking the turn when it may.
    pub fn may_refresh(&self, domain: &str, now: Instant) -> bool {
        let mut refreshed = self
            .refreshed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match refreshed.get(domain) {
            Some(last) if now.duration_since(*last) < REFRESH_INTERVAL => false,
            _ => {
                refreshed.insert(domain.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use commucat_keys::DeviceKeyPair;

    use super::*;

    #[test]
    fn a_rotation_signed_by_the_pinned_key_adds_the_new_key_and_expires_the_old() {
        let data = tempfile::tempdir().unwrap();
        let old = crate::keys::federation::load_or_generate(data.path()).unwrap();
        let (new, rotation) =
            crate::keys::federation::rotate(data.path(), "a.test", 100, 1_000).unwrap();
        let pins = Pins::default();
        let configured = Some(old.verifying_key());
        assert_eq!(
            pins.accepted("a.test", configured, 1_000),
            vec![old.verifying_key()]
        );
        // Signed by another key: refused, nothing learned.
        let stranger = DeviceKeyPair::generate().verifying_key();
        assert!(pins.learn("a.test", &[stranger], &rotation).is_err());
        assert_eq!(pins.accepted("a.test", configured, 1_000).len(), 1);
        // Signed by the pinned key: both accepted until the grace ends, then the new one.
        let accepted = pins.accepted("a.test", configured, 1_000);
        assert_eq!(pins.learn("a.test", &accepted, &rotation), Ok(true));
        let now = pins.accepted("a.test", configured, 1_050);
        assert!(now.contains(&new.verifying_key()) && now.contains(&old.verifying_key()));
        assert_eq!(
            pins.accepted("a.test", configured, 1_100),
            vec![new.verifying_key()]
        );
        let accepted = pins.accepted("a.test", configured, 1_050);
        assert_eq!(pins.learn("a.test", &accepted, &rotation), Ok(false));
    }

    #[test]
    fn refreshes_are_throttled_per_peer() {
        let pins = Pins::default();
        let start = Instant::now();
        assert!(pins.may_refresh("a.test", start));
        assert!(!pins.may_refresh("a.test", start + Duration::from_secs(1)));
        assert!(pins.may_refresh("b.test", start));
        assert!(pins.may_refresh("a.test", start + REFRESH_INTERVAL));
    }
}
