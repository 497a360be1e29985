//! Wrong pairing guesses, counted per client address and per account.
//!
//! Every claim counts as a guess when it is checked (under the same lock as the cap, so claims
//! sent in parallel cannot all pass), and a claim that redeems its code gives its count back: so
//! what stays counted are the wrong guesses. A claim is a wrong guess when it names an unknown
//! code, or a code that is expired, already redeemed or blocked. Each one counts against the client's address (IPv6: its /64) and, when
//! the code exists, against the account that issued it. Once either count reaches its cap
//! (`bounds.pairing_guesses_per_ip`, `bounds.pairing_guesses_per_account`) within the current
//! window (`bounds.pairing_guess_window`), further claims from that address or for that
//! account's codes are refused with 429 until the window ends. The store counts the third cap,
//! failed claims per code (`bounds.pairing_guesses_per_code`), durably.
//!
//! Windows are fixed: a window opens at a key's first wrong guess and the count restarts when
//! it has passed. Each table holds at most `bounds.pairing_guess_table` keys: when full, keys
//! whose window has passed go first, then the key with the fewest guesses (never one at its
//! cap while another is below it).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::rate_limit::client_key;
use crate::config::{BoundSettings, as_usize};

/// One key's wrong guesses in its current window.
#[derive(Debug, Clone, Copy)]
struct Count {
    guesses: u64,
    since: Instant,
}

/// Wrong guesses per key in fixed windows, in a bounded table.
#[derive(Debug)]
struct Table<K> {
    cap: u64,
    max_keys: usize,
    counts: Mutex<HashMap<K, Count>>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(cap: u64, max_keys: usize) -> Self {
        Self {
            cap,
            max_keys: max_keys.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Count>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one claim against `key`, under the same lock as the cap check, so claims sent in
    /// parallel cannot all pass it; `Err(wait)` (nothing counted) while `key` is at its cap: how
    /// long until its window ends. A claim that turns out right gives its count back
    /// ([`Table::release`]).
    fn check(&self, key: &K, now: Instant, window: Duration) -> Result<(), Duration> {
        let mut counts = self.lock();
        if let Some(count) = counts.get(key)
            && count.guesses >= self.cap
        {
            let ends = count.since + window;
            if now < ends {
                return Err(ends.saturating_duration_since(now));
            }
        }
        self.record_locked(&mut counts, key.clone(), now, window);
        Ok(())
    }

    /// Gives back the count of a claim that was right.
    fn release(&self, key: &K) {
        if let Some(count) = self.lock().get_mut(key) {
            count.guesses = count.guesses.saturating_sub(1);
        }
    }

    fn record_locked(
        &self,
        counts: &mut HashMap<K, Count>,
        key: K,
        now: Instant,
        window: Duration,
    ) {
        if counts.len() >= self.max_keys && !counts.contains_key(&key) {
            counts.retain(|_, c| now.saturating_duration_since(c.since) < window);
            if counts.len() >= self.max_keys
                && let Some(fewest) = counts
                    .iter()
                    .min_by_key(|(_, c)| (c.guesses, c.since))
                    .map(|(k, _)| k.clone())
            {
                counts.remove(&fewest);
            }
        }
        let count = counts.entry(key).or_insert(Count {
            guesses: 0,
            since: now,
        });
        if now.saturating_duration_since(count.since) >= window {
            *count = Count {
                guesses: 0,
                since: now,
            };
        }
        count.guesses = count.guesses.saturating_add(1);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Which cap refused a claim, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The client's address reached `bounds.pairing_guesses_per_ip`.
    Address(Duration),
    /// The code's account reached `bounds.pairing_guesses_per_account`.
    Account(Duration),
}

/// The per-address and per-account tables of wrong pairing guesses.
#[derive(Debug)]
pub(crate) struct PairingGuard {
    window: Duration,
    by_address: Table<IpAddr>,
    by_account: Table<String>,
}

impl PairingGuard {
    /// Caps, window and table size from `[bounds]`.
    #[must_use]
    pub(crate) fn new(bounds: &BoundSettings) -> Self {
        let max_keys = as_usize(bounds.pairing_guess_table);
        Self {
            window: bounds.pairing_guess_window,
            by_address: Table::new(bounds.pairing_guesses_per_ip, max_keys),
            by_account: Table::new(bounds.pairing_guesses_per_account, max_keys),
        }
    }

    /// Whether a claim from `address` may be looked at (`None`: address unknown, not limited);
    /// counts it as a guess until [`PairingGuard::right_guess`] gives it back.
    ///
    /// # Errors
    /// The address is at its cap.
    pub(crate) fn check_address(
        &self,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Refusal> {
        match address {
            Some(ip) => self
                .by_address
                .check(&client_key(ip), now, self.window)
                .map_err(Refusal::Address),
            None => Ok(()),
        }
    }

    /// Whether a claim for a code of `user_id` may be tried; counts it as a guess until
    /// [`PairingGuard::right_guess`] gives it back.
    ///
    /// # Errors
    /// The account is at its cap.
    pub(crate) fn check_account(&self, user_id: &str, now: Instant) -> Result<(), Refusal> {
        self.by_account
            .check(&user_id.to_owned(), now, self.window)
            .map_err(Refusal::Account)
    }

    /// Gives back the counts of a claim that was right: from `address`, for a code of `user_id`.
    pub(crate) fn right_guess(&self, address: Option<IpAddr>, user_id: &str) {
        if let Some(ip) = address {
            self.by_address.release(&client_key(ip));
        }
        self.by_account.release(&user_id.to_owned());
    }

    /// Addresses and accounts tracked now.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn tracked(&self) -> (usize, usize) {
        (self.by_address.len(), self.by_account.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn guard(per_ip: u64, per_account: u64, table: u64) -> PairingGuard {
        PairingGuard::new(&BoundSettings {
            pairing_guesses_per_ip: per_ip,
            pairing_guesses_per_account: per_account,
            pairing_guess_table: table,
            pairing_guess_window: Duration::from_secs(60),
            ..BoundSettings::default()
        })
    }

    #[test]
    fn an_address_at_its_cap_waits_for_the_window_to_end() {
        let guard = guard(3, 100, 16);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(guard.check_address(Some(A), t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            guard.check_address(Some(A), later),
            Err(Refusal::Address(Duration::from_secs(40)))
        );
        assert_eq!(guard.check_address(Some(B), later), Ok(()));
        assert_eq!(guard.check_address(None, later), Ok(()));
        let next_window = t0 + Duration::from_secs(60);
        assert_eq!(guard.check_address(Some(A), next_window), Ok(()));
        assert_eq!(guard.check_address(Some(A), next_window), Ok(()));
    }

    #[test]
    fn parallel_claims_cannot_pass_the_cap_together_and_a_right_one_gives_its_count_back() {
        let guard = guard(2, 100, 16);
        let t0 = Instant::now();
        // Two claims in flight at once use up the cap before either is answered.
        assert_eq!(guard.check_address(Some(A), t0), Ok(()));
        assert_eq!(guard.check_address(Some(A), t0), Ok(()));
        assert!(guard.check_address(Some(A), t0).is_err());
        // One of them was right: its count comes back.
        guard.right_guess(Some(A), "alice");
        assert_eq!(guard.check_address(Some(A), t0), Ok(()));
    }

    #[test]
    fn an_account_counts_guesses_from_every_address() {
        let guard = guard(100, 2, 16);
        let t0 = Instant::now();
        assert_eq!(guard.check_account("alice", t0), Ok(()));
        assert_eq!(guard.check_account("alice", t0), Ok(()));
        assert!(matches!(
            guard.check_account("alice", t0),
            Err(Refusal::Account(_))
        ));
        assert_eq!(guard.check_account("bob", t0), Ok(()));
    }

    #[test]
    fn a_full_table_drops_the_least_suspicious_key_first() {
        let guard = guard(3, 100, 2);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(guard.check_address(Some(A), t0), Ok(()));
        }
        assert_eq!(guard.check_address(Some(B), t0), Ok(()));
        let c = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3));
        assert_eq!(guard.check_address(Some(c), t0), Ok(()));
        assert_eq!(guard.tracked().0, 2);
        // A, at its cap, was kept; B (one guess) made room.
        assert!(guard.check_address(Some(A), t0).is_err());
    }
}
