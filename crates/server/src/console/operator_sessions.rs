//! The console's operator sessions: random ids held by the browser in a cookie, stored here
//! only as BLAKE3 hashes, each with its CSRF token and a server-side expiry. The table is
//! bounded: a new login first drops expired sessions, then the oldest one if it is still full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// How long an operator session lasts after login (no sliding renewal).
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Most operator sessions held at once.
pub(crate) const MAX_SESSIONS: usize = 32;

#[derive(Debug)]
struct Entry {
    csrf: Zeroizing<String>,
    opened: Instant,
    expires: Instant,
}

/// A freshly opened session: the cookie value and the CSRF token of its forms.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The session id (the cookie's value).
    pub id: Zeroizing<String>,
    /// The CSRF token every POST of this session must carry.
    pub csrf: Zeroizing<String>,
}

/// The operator session table.
#[derive(Debug, Default)]
pub(crate) struct OperatorSessions {
    entries: Mutex<HashMap<blake3::Hash, Entry>>,
}

fn key(id: &str) -> blake3::Hash {
    blake3::hash(id.as_bytes())
}

impl OperatorSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<blake3::Hash, Entry>> {
        // Every operation is a single insert or remove: a poisoned table is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session at `now`, evicting expired ones and, if still full, the oldest.
    pub(crate) fn open(&self, now: Instant) -> Opened {
        let opened = Opened {
            id: Zeroizing::new(crate::registry::random_id()),
            csrf: Zeroizing::new(crate::registry::random_id()),
        };
        let mut entries = self.lock();
        entries.retain(|_, e| e.expires > now);
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.opened)
                .map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
        entries.insert(
            key(&opened.id),
            Entry {
                csrf: opened.csrf.clone(),
                opened: now,
                expires: now + SESSION_TTL,
            },
        );
        opened
    }

    /// The CSRF token of session `id` if it exists and has not expired at `now` (an expired
    /// one is dropped).
    pub(crate) fn check(&self, id: &str, now: Instant) -> Option<Zeroizing<String>> {
        let k = key(id);
        let mut entries = self.lock();
        match entries.get(&k) {
            Some(e) if e.expires > now => Some(e.csrf.clone()),
            Some(_) => {
                entries.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends session `id`; whether it existed.
    pub(crate) fn close(&self, id: &str) -> bool {
        self.lock().remove(&key(id)).is_some()
    }

    /// Sessions held now (expired ones included until the next login drops them).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_on_the_server() {
        let table = OperatorSessions::default();
        let t0 = Instant::now();
        let s = table.open(t0);
        assert_eq!(s.id.len(), 64);
        assert_ne!(*s.id, *s.csrf);
        assert_eq!(table.check(&s.id, t0).as_deref(), Some(&*s.csrf));
        assert_eq!(table.check("not-a-session", t0), None);
        assert_eq!(table.check(&s.id, t0 + SESSION_TTL), None);
        // An expired session is forgotten.
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest() {
        let table = OperatorSessions::default();
        let t0 = Instant::now();
        let first = table.open(t0);
        for i in 1..=MAX_SESSIONS {
            let _ = table.open(t0 + Duration::from_secs(u64::try_from(i).unwrap()));
        }
        assert_eq!(table.len(), MAX_SESSIONS);
        assert_eq!(table.check(&first.id, t0), None);
    }

    #[test]
    fn logout_ends_the_session() {
        let table = OperatorSessions::default();
        let now = Instant::now();
        let s = table.open(now);
        assert!(table.close(&s.id));
        assert!(!table.close(&s.id));
        assert_eq!(table.check(&s.id, now), None);
    }
}
