//! [`Live`]: a value a reload replaces while its readers keep the one they loaded.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// A shared, replaceable value; clones share the cell. Reading takes a read lock only long
/// enough to clone an [`Arc`], so readers never wait on each other and a reader holding a
/// loaded value is unaffected by a later [`Live::store`].
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Live<T> {
    /// A cell holding `value`.
    #[must_use]
    pub fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value in force now.
    #[must_use]
    pub fn load(&self) -> Arc<T> {
        // A writer panicking mid-store cannot leave a half-written `Arc` behind.
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the value for every later [`Live::load`].
    pub fn store(&self, value: T) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: fmt::Debug> fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Live").field(&self.load()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_value_survives_a_store_and_clones_share_the_cell() {
        let cell = Live::new(1);
        let shared = cell.clone();
        let before = cell.load();
        shared.store(2);
        assert_eq!(*before, 1);
        assert_eq!(*cell.load(), 2);
    }
}
