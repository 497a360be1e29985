//! Which path carries which symbol: source symbols round-robin over the active paths, repair
//! symbols round-robin over the active non-primary paths (the primary only when it is alone).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::encoder::EncodedObject;
use crate::health::{HealthConfig, PathHealth, PathState};

/// A path of one session (assigned by the session, e.g. 0 for the `/connect` that did the
/// handshake, 1, 2, … for attached paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathId(pub u32);

/// Why symbols cannot be scheduled or a path not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Every path is stalled or dead.
    #[error("no active path")]
    NoActivePath,
    /// The session already has its maximum number of paths.
    #[error("at most {0} paths per session")]
    TooManyPaths(usize),
    /// A path with this id exists.
    #[error("path {0:?} already exists")]
    DuplicatePath(PathId),
}

/// The path of each symbol of one object, in the object's symbol order (source, then repair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `paths[i]` carries symbol `i` of [`EncodedObject::symbols`].
    pub paths: Vec<PathId>,
}

/// Striping state of one session.
#[derive(Debug, Clone)]
pub struct Scheduler {
    paths: BTreeMap<PathId, PathHealth>,
    primary: Option<PathId>,
    max_paths: usize,
    config: HealthConfig,
    source_cursor: usize,
    repair_cursor: usize,
}

impl Scheduler {
    /// A scheduler for at most `max_paths` paths.
    #[must_use]
    pub fn new(max_paths: usize, config: HealthConfig) -> Self {
        Self {
            paths: BTreeMap::new(),
            primary: None,
            max_paths: max_paths.max(1),
            config,
            source_cursor: 0,
            repair_cursor: 0,
        }
    }

    /// Adds a path; the first one added is the primary.
    ///
    /// # Errors
    /// [`ScheduleError::TooManyPaths`], [`ScheduleError::DuplicatePath`].
    pub fn add_path(&mut self, id: PathId, now: Instant) -> Result<(), ScheduleError> {
        if self.paths.contains_key(&id) {
            return Err(ScheduleError::DuplicatePath(id));
        }
        if self.paths.len() >= self.max_paths {
            return Err(ScheduleError::TooManyPaths(self.max_paths));
        }
        self.paths.insert(id, PathHealth::new(now, self.config));
        self.primary.get_or_insert(id);
        Ok(())
    }

    /// Removes a path for good (its transport will not come back).
    pub fn remove_path(&mut self, id: PathId) {
        self.paths.remove(&id);
        if self.primary == Some(id) {
            self.primary = self.paths.keys().next().copied();
        }
    }

    /// The primary path.
    #[must_use]
    pub const fn primary(&self) -> Option<PathId> {
        self.primary
    }

    /// The health of a path, to feed it events.
    pub fn path_mut(&mut self, id: PathId) -> Option<&mut PathHealth> {
        self.paths.get_mut(&id)
    }

    /// The health of a path.
    #[must_use]
    pub fn path(&self, id: PathId) -> Option<&PathHealth> {
        self.paths.get(&id)
    }

    /// Number of paths (any state).
    #[must_use]
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there is no path.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths in the stripe set at `now`.
    #[must_use]
    pub fn active_paths(&self, now: Instant) -> Vec<PathId> {
        self.paths
            .iter()
            .filter(|(_, h)| h.state(now) == PathState::Active)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Assigns every symbol of `object` to a path.
    ///
    /// # Errors
    /// [`ScheduleError::NoActivePath`] when no path is active.
    pub fn schedule(
        &mut self,
        now: Instant,
        object: &EncodedObject,
    ) -> Result<Schedule, ScheduleError> {
        let active = self.active_paths(now);
        if active.is_empty() {
            return Err(ScheduleError::NoActivePath);
        }
        let secondary: Vec<PathId> = active
            .iter()
            .copied()
            .filter(|p| Some(*p) != self.primary)
            .collect();
        let repair_set = if secondary.is_empty() {
            &active
        } else {
            &secondary
        };
        let mut paths = Vec::with_capacity(object.len());
        for _ in &object.source {
            paths.extend(active.get(self.source_cursor % active.len()));
            self.source_cursor = self.source_cursor.wrapping_add(1);
        }
        for _ in &object.repair {
            paths.extend(repair_set.get(self.repair_cursor % repair_set.len()));
            self.repair_cursor = self.repair_cursor.wrapping_add(1);
        }
        Ok(Schedule { paths })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::encoder::Encoder;
    use crate::params::FecParams;

    fn object(source: usize, repair: usize) -> EncodedObject {
        EncodedObject {
            object_id: 0,
            source: vec![Vec::new(); source],
            repair: vec![Vec::new(); repair],
        }
    }

    #[test]
    fn source_round_robin_repair_on_non_primary() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(4, HealthConfig::default());
        for id in 0..3 {
            s.add_path(PathId(id), t0).expect("add");
        }
        assert_eq!(s.primary(), Some(PathId(0)));
        let plan = s.schedule(t0, &object(4, 4)).expect("schedule");
        let p = |i| PathId(i);
        assert_eq!(
            plan.paths,
            vec![p(0), p(1), p(2), p(0), p(1), p(2), p(1), p(2)]
        );
        // The stripe continues where the previous object stopped.
        let plan = s.schedule(t0, &object(2, 1)).expect("schedule");
        assert_eq!(plan.paths, vec![p(1), p(2), p(1)]);
    }

    #[test]
    fn a_lone_primary_carries_repair_too() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(2, HealthConfig::default());
        s.add_path(PathId(7), t0).expect("add");
        let mut enc = Encoder::new(FecParams::default()).expect("params");
        let obj = enc.encode(&[0; 3000]).expect("encode");
        let plan = s.schedule(t0, &obj).expect("schedule");
        assert_eq!(plan.paths, vec![PathId(7); obj.len()]);
    }

    #[test]
    fn stalled_and_dead_paths_leave_the_stripe_and_come_back() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(2, HealthConfig::default());
        s.add_path(PathId(0), t0).expect("add");
        s.add_path(PathId(1), t0).expect("add");
        s.path_mut(PathId(1)).expect("path").on_sent(t0, 100);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(s.active_paths(later), vec![PathId(0)]);
        let plan = s.schedule(later, &object(2, 2)).expect("schedule");
        assert_eq!(plan.paths, vec![PathId(0); 4]);
        s.path_mut(PathId(1)).expect("path").on_received(later, 10);
        assert_eq!(s.active_paths(later), vec![PathId(0), PathId(1)]);
        s.path_mut(PathId(0)).expect("path").on_closed();
        s.path_mut(PathId(1)).expect("path").on_closed();
        assert_eq!(
            s.schedule(later, &object(1, 0)),
            Err(ScheduleError::NoActivePath)
        );
        s.path_mut(PathId(0)).expect("path").on_reopened(later);
        assert_eq!(s.active_paths(later), vec![PathId(0)]);
    }

    #[test]
    fn path_count_is_bounded() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(2, HealthConfig::default());
        s.add_path(PathId(0), t0).expect("add");
        assert_eq!(
            s.add_path(PathId(0), t0),
            Err(ScheduleError::DuplicatePath(PathId(0)))
        );
        s.add_path(PathId(1), t0).expect("add");
        assert_eq!(
            s.add_path(PathId(2), t0),
            Err(ScheduleError::TooManyPaths(2))
        );
        s.remove_path(PathId(0));
        assert_eq!(s.primary(), Some(PathId(1)));
        s.add_path(PathId(2), t0).expect("room again");
        assert_eq!(s.len(), 2);
    }
}
