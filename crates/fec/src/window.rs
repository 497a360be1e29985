//! The set of object ids already delivered (or given up on), in bounded memory.

use std::collections::BTreeSet;

/// Ids below `floor` are all finished; ids at or above it are finished when in `above`.
/// At most `capacity` ids are remembered above the floor: when more are delivered, the floor
/// moves up past the oldest, so a symbol of an object that old is treated as stale.
#[derive(Debug, Clone)]
pub(crate) struct DeliveredWindow {
    floor: u64,
    above: BTreeSet<u64>,
    capacity: usize,
}

impl DeliveredWindow {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            floor: 0,
            above: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `id` was delivered or is older than the window.
    pub(crate) fn contains(&self, id: u64) -> bool {
        id < self.floor || self.above.contains(&id)
    }

    /// Whether `id` is older than the window (finished or not).
    #[cfg(test)]
    pub(crate) fn is_below(&self, id: u64) -> bool {
        id < self.floor
    }

    /// Records `id` as finished.
    pub(crate) fn insert(&mut self, id: u64) {
        if id < self.floor {
            return;
        }
        self.above.insert(id);
        while self.above.len() > self.capacity {
            if let Some(oldest) = self.above.pop_first() {
                self.floor = self.floor.max(oldest.saturating_add(1));
            }
        }
        while self.above.first() == Some(&self.floor) {
            self.above.pop_first();
            self.floor = self.floor.saturating_add(1);
        }
    }

    /// Ids remembered above the floor.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.above.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ids_collapse_into_the_floor() {
        let mut w = DeliveredWindow::new(4);
        for id in 0..100 {
            w.insert(id);
        }
        assert_eq!(w.remembered(), 0);
        assert!(w.contains(99));
        assert!(!w.contains(100));
    }

    #[test]
    fn gaps_are_remembered_up_to_capacity() {
        let mut w = DeliveredWindow::new(3);
        for id in [2, 4, 6] {
            w.insert(id);
        }
        assert_eq!(w.remembered(), 3);
        assert!(!w.contains(0) && w.contains(2) && !w.contains(3));
        w.insert(8);
        // The oldest remembered id (2) is pushed below the floor; 0..=2 count as finished.
        assert_eq!(w.remembered(), 3);
        assert!(w.is_below(1) && w.contains(2) && !w.contains(3));
        w.insert(1); // below the floor: no growth
        assert_eq!(w.remembered(), 3);
    }
}
