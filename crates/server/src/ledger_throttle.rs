//! A per-second budget for ledger records that clients can provoke at will.
//!
//! Refusals by a bound are counted in full by the metrics; the ledger records them too, but a
//! client that floods refusals (a JOIN flood, say) must not be able to grow the ledger at the
//! rate it sends. [`Throttle`] lets at most `per_second` records through per wall-clock second
//! and tells the next record that gets through how many were left out before it.

use std::sync::Mutex;

/// At most `per_second` records per second; the rest are counted as suppressed.
#[derive(Debug)]
pub(crate) struct Throttle {
    per_second: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    second: i64,
    used: u32,
    suppressed: u64,
}

impl Throttle {
    /// A budget of `per_second` records per second.
    #[must_use]
    pub(crate) const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            state: Mutex::new(State {
                second: 0,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(suppressed)` when a record may be written at `now` (unix seconds), with the number
    /// left out since the last one written; `None` when this one must be left out.
    pub(crate) fn admit(&self, now: i64) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.second != now {
            state.second = now;
            state.used = 0;
        }
        if state.used >= self.per_second {
            state.suppressed = state.suppressed.saturating_add(1);
            return None;
        }
        state.used += 1;
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn admits_the_budget_then_reports_what_it_left_out() {
        let throttle = Throttle::new(2);
        assert_eq!(throttle.admit(10), Some(0));
        assert_eq!(throttle.admit(10), Some(0));
        assert_eq!(throttle.admit(10), None);
        assert_eq!(throttle.admit(10), None);
        assert_eq!(throttle.admit(11), Some(2));
        assert_eq!(throttle.admit(11), Some(0));
        assert_eq!(throttle.admit(11), None);
        assert_eq!(throttle.admit(12), Some(1));
    }
}
