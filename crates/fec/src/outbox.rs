//! Sender side: encoded objects kept until the receiver confirms them, so the symbols a dead
//! path swallowed can be sent again over the surviving paths.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::encoder::EncodedObject;
use crate::scheduler::{PathId, Schedule, ScheduleError, Scheduler};

/// The outbox is full: the caller must wait for acknowledgements (back-pressure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("FEC outbox full ({objects} objects, {bytes} bytes unacknowledged)")]
pub struct OutboxFull {
    /// Objects held.
    pub objects: usize,
    /// Symbol bytes held.
    pub bytes: usize,
}

#[derive(Debug)]
struct Sent {
    object: EncodedObject,
    paths: Vec<PathId>,
    bytes: usize,
}

/// Unacknowledged objects of one session, bounded in count and bytes.
#[derive(Debug)]
pub struct Outbox {
    objects: BTreeMap<u64, Sent>,
    max_objects: usize,
    max_bytes: usize,
    bytes: usize,
}

impl Outbox {
    /// An outbox holding at most `max_objects` objects and `max_bytes` symbol bytes.
    #[must_use]
    pub fn new(max_objects: usize, max_bytes: usize) -> Self {
        Self {
            objects: BTreeMap::new(),
            max_objects: max_objects.max(1),
            max_bytes,
            bytes: 0,
        }
    }

    /// Objects awaiting acknowledgement.
    #[must_use]
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether nothing awaits acknowledgement.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Symbol bytes held.
    #[must_use]
    pub const fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records an object sent along `schedule`.
    ///
    /// # Errors
    /// [`OutboxFull`] when holding it would exceed a bound; nothing is recorded.
    pub fn push(&mut self, object: EncodedObject, schedule: Schedule) -> Result<(), OutboxFull> {
        let bytes: usize = object.symbols().map(<[u8]>::len).sum();
        if self.objects.len() >= self.max_objects || self.bytes + bytes > self.max_bytes {
            return Err(OutboxFull {
                objects: self.objects.len(),
                bytes: self.bytes,
            });
        }
        self.bytes += bytes;
        self.objects.insert(
            object.object_id,
            Sent {
                object,
                paths: schedule.paths,
                bytes,
            },
        );
        Ok(())
    }

    /// The receiver confirmed `object_id`; returns whether it was held.
    pub fn ack(&mut self, object_id: u64) -> bool {
        match self.objects.remove(&object_id) {
            Some(sent) => {
                self.bytes -= sent.bytes;
                true
            }
            None => false,
        }
    }

    /// `dead` stopped carrying traffic: every held symbol it was given is reassigned round-robin
    /// to the active paths. Returns `(path, symbol)` pairs to send, oldest object first.
    ///
    /// # Errors
    /// [`ScheduleError::NoActivePath`] when no other path is active (nothing is reassigned).
    pub fn reroute(
        &mut self,
        dead: PathId,
        now: Instant,
        scheduler: &Scheduler,
    ) -> Result<Vec<(PathId, Vec<u8>)>, ScheduleError> {
        let active: Vec<PathId> = scheduler
            .active_paths(now)
            .into_iter()
            .filter(|p| *p != dead)
            .collect();
        if active.is_empty() {
            return Err(ScheduleError::NoActivePath);
        }
        let mut out = Vec::new();
        let mut cursor = 0usize;
        for sent in self.objects.values_mut() {
            let symbols = sent.object.source.iter().chain(&sent.object.repair);
            for (path, symbol) in sent.paths.iter_mut().zip(symbols) {
                if *path == dead
                    && let Some(next) = active.get(cursor % active.len())
                {
                    *path = *next;
                    cursor += 1;
                    out.push((*next, symbol.clone()));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::Encoder;
    use crate::health::HealthConfig;
    use crate::params::FecParams;

    #[test]
    fn bounded_by_count_and_bytes_and_freed_by_acks() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(2, HealthConfig::default());
        s.add_path(PathId(0), t0).expect("add");
        let mut enc = Encoder::new(FecParams::default()).expect("params");
        let mut outbox = Outbox::new(2, 1 << 20);
        for _ in 0..2 {
            let obj = enc.encode(b"hello").expect("encode");
            let plan = s.schedule(t0, &obj).expect("schedule");
            outbox.push(obj, plan).expect("room");
        }
        let obj = enc.encode(b"hello").expect("encode");
        let plan = s.schedule(t0, &obj).expect("schedule");
        assert!(outbox.push(obj.clone(), plan.clone()).is_err());
        assert!(outbox.ack(0));
        assert!(!outbox.ack(0));
        outbox.push(obj, plan).expect("room after ack");
        assert_eq!(outbox.len(), 2);

        let mut tiny = Outbox::new(10, 1000);
        let obj = enc.encode(b"x").expect("encode");
        let plan = s.schedule(t0, &obj).expect("schedule");
        // One 1,152-byte source symbol plus one repair symbol exceed 1,000 bytes.
        assert!(tiny.push(obj, plan).is_err());
        assert_eq!(tiny.bytes(), 0);
    }

    #[test]
    fn symbols_of_a_dead_path_move_to_the_survivors() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(2, HealthConfig::default());
        s.add_path(PathId(0), t0).expect("add");
        s.add_path(PathId(1), t0).expect("add");
        let mut enc = Encoder::new(FecParams::default()).expect("params");
        let mut outbox = Outbox::new(8, 1 << 20);
        let obj = enc.encode(&[5u8; 4000]).expect("encode");
        let plan = s.schedule(t0, &obj).expect("schedule");
        let on_dead = plan.paths.iter().filter(|p| **p == PathId(1)).count();
        outbox.push(obj, plan).expect("room");
        s.path_mut(PathId(1)).expect("path").on_closed();
        let resend = outbox.reroute(PathId(1), t0, &s).expect("reroute");
        assert_eq!(resend.len(), on_dead);
        assert!(resend.iter().all(|(p, _)| *p == PathId(0)));
        // Already moved: a second reroute has nothing left to move.
        assert!(
            outbox
                .reroute(PathId(1), t0, &s)
                .expect("reroute")
                .is_empty()
        );
        s.path_mut(PathId(0)).expect("path").on_closed();
        assert_eq!(
            outbox.reroute(PathId(0), t0, &s),
            Err(ScheduleError::NoActivePath)
        );
    }
}
