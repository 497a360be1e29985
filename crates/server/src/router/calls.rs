//! Call state: which calls run on which channel, who takes part, and whether they were
//! answered. Signaling payloads are validated and relayed by the session; this table decides
//! who receives them.
//!
//! What bounds the table: only an offer adds a call, and a device holds at most `limit` calls
//! it offered or accepted (`bounds.calls_per_session`), so the table holds at most that many
//! calls per connected device. Each call's participants are members of its channel
//! (`bounds.channel_members`). A ringing call ends at its ring deadline
//! (`bounds.call_ring_timeout`), every call of a device ends when it disconnects. Offers a
//! device receives do not count against its own limit: a flood of offers cannot stop it from
//! taking another caller's call.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Offered, nobody accepted yet.
    Ringing,
    /// At least one callee accepted.
    Active,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Channel the call's signaling and media travel on.
    pub channel: u32,
    /// The device that offered the call.
    pub initiator: String,
    /// Everyone in the call, the initiator included.
    pub participants: BTreeSet<String>,
    /// Callees that accepted.
    pub accepted: BTreeSet<String>,
    /// Where it stands.
    pub state: CallState,
    /// When a still ringing call ends as unanswered.
    pub rings_until: Instant,
}

/// Why a call operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No call with this id.
    Unknown,
    /// A call with this id already exists.
    Exists,
    /// The device is not a participant.
    NotParticipant,
    /// The frame travels on another channel than the call.
    WrongChannel(u32),
    /// The device already holds this many calls (offered or accepted).
    LimitReached(usize),
}

/// Who receives a call frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRoute {
    /// The call.
    pub call_id: String,
    /// Its channel.
    pub channel: u32,
    /// Participants other than the sender.
    pub others: Vec<String>,
}

/// The call table.
#[derive(Debug, Default)]
pub struct Calls {
    calls: HashMap<String, Call>,
    /// Device → calls it takes part in.
    by_device: HashMap<String, BTreeSet<String>>,
}

impl Calls {
    /// The call with this id.
    #[must_use]
    pub fn get(&self, call_id: &str) -> Option<&Call> {
        self.calls.get(call_id)
    }

    /// Number of running calls.
    #[must_use]
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call runs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Calls `device` holds: those it offered and those it accepted.
    #[must_use]
    pub fn held_by(&self, device: &str) -> usize {
        self.by_device.get(device).map_or(0, |ids| {
            ids.iter()
                .filter_map(|id| self.calls.get(id))
                .filter(|c| c.initiator == device || c.accepted.contains(device))
                .count()
        })
    }

    /// Records an offer from `initiator` to `callees` on `channel`, ringing until
    /// `rings_until`.
    ///
    /// # Errors
    /// [`CallError::Exists`] if the id is taken, [`CallError::LimitReached`] if the initiator
    /// already holds `limit` calls.
    pub fn offer(
        &mut self,
        call_id: &str,
        channel: u32,
        initiator: &str,
        callees: &[String],
        limit: usize,
        rings_until: Instant,
    ) -> Result<(), CallError> {
        if self.calls.contains_key(call_id) {
            return Err(CallError::Exists);
        }
        if self.held_by(initiator) >= limit {
            return Err(CallError::LimitReached(limit));
        }
        let mut participants: BTreeSet<String> = callees.iter().cloned().collect();
        participants.insert(initiator.to_owned());
        for device in &participants {
            self.by_device
                .entry(device.clone())
                .or_default()
                .insert(call_id.to_owned());
        }
        self.calls.insert(
            call_id.to_owned(),
            Call {
                channel,
                initiator: initiator.to_owned(),
                participants,
                accepted: BTreeSet::new(),
                state: CallState::Ringing,
                rings_until,
            },
        );
        Ok(())
    }

    /// The earliest ring deadline of the ringing calls `initiator` offered.
    #[must_use]
    pub fn next_ring_deadline(&self, initiator: &str) -> Option<Instant> {
        self.by_device
            .get(initiator)?
            .iter()
            .filter_map(|id| self.calls.get(id))
            .filter(|c| c.initiator == initiator && c.state == CallState::Ringing)
            .map(|c| c.rings_until)
            .min()
    }

    /// Ends the calls `initiator` offered that still ring at `now` past their deadline;
    /// returns them, each with every participant but the initiator as `others`.
    pub fn expire_ringing(&mut self, initiator: &str, now: Instant) -> Vec<CallRoute> {
        let expired: Vec<String> = self
            .by_device
            .get(initiator)
            .map(|ids| {
                ids.iter()
                    .filter(|id| {
                        self.calls.get(*id).is_some_and(|c| {
                            c.initiator == initiator
                                && c.state == CallState::Ringing
                                && c.rings_until <= now
                        })
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        expired
            .into_iter()
            .filter_map(|call_id| {
                let channel = self.calls.get(&call_id)?.channel;
                let route = self.route(&call_id, channel, initiator).ok()?;
                self.release(&call_id);
                Some(route)
            })
            .collect()
    }

    /// The other participants, if `device` takes part in the call and `channel` is its channel.
    ///
    /// # Errors
    /// Unknown call, not a participant, or another channel.
    pub fn route(&self, call_id: &str, channel: u32, device: &str) -> Result<CallRoute, CallError> {
        let call = self.calls.get(call_id).ok_or(CallError::Unknown)?;
        if !call.participants.contains(device) {
            return Err(CallError::NotParticipant);
        }
        if call.channel != channel {
            return Err(CallError::WrongChannel(call.channel));
        }
        Ok(CallRoute {
            call_id: call_id.to_owned(),
            channel,
            others: call
                .participants
                .iter()
                .filter(|p| *p != device)
                .cloned()
                .collect(),
        })
    }

    /// An answer from `device`: accepting makes the call active; declining removes the device,
    /// and the call ends once only the initiator is left. Returns who receives the answer
    /// (every participant before the change, but the sender).
    ///
    /// # Errors
    /// As [`Calls::route`]; [`CallError::LimitReached`] if accepting would make `device` hold
    /// more than `limit` calls.
    pub fn answer(
        &mut self,
        call_id: &str,
        channel: u32,
        device: &str,
        accept: bool,
        limit: usize,
    ) -> Result<CallRoute, CallError> {
        let route = self.route(call_id, channel, device)?;
        if accept {
            let holds = self
                .calls
                .get(call_id)
                .is_some_and(|c| c.initiator == device || c.accepted.contains(device));
            if !holds && self.held_by(device) >= limit {
                return Err(CallError::LimitReached(limit));
            }
            if let Some(call) = self.calls.get_mut(call_id) {
                call.state = CallState::Active;
                call.accepted.insert(device.to_owned());
            }
        } else {
            self.remove_participant(call_id, device);
        }
        Ok(route)
    }

    /// Ends the call; returns who receives the CALL_END.
    ///
    /// # Errors
    /// As [`Calls::route`].
    pub fn end(
        &mut self,
        call_id: &str,
        channel: u32,
        device: &str,
    ) -> Result<CallRoute, CallError> {
        let route = self.route(call_id, channel, device)?;
        self.release(call_id);
        Ok(route)
    }

    /// Where a media frame from `device` on `channel` goes: the call on that channel the
    /// device takes part in (if several, the last by call id).
    #[must_use]
    pub fn media_route(&self, channel: u32, device: &str) -> Option<CallRoute> {
        self.by_device
            .get(device)?
            .iter()
            .rev()
            .find_map(|call_id| self.route(call_id, channel, device).ok())
    }

    /// Ends every call `device` takes part in (it disconnected); returns who must be told.
    pub fn drop_device(&mut self, device: &str) -> Vec<CallRoute> {
        let call_ids: Vec<String> = self
            .by_device
            .get(device)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        call_ids
            .into_iter()
            .filter_map(|call_id| {
                let channel = self.calls.get(&call_id)?.channel;
                let route = self.route(&call_id, channel, device).ok()?;
                self.release(&call_id);
                Some(route)
            })
            .collect()
    }

    fn remove_participant(&mut self, call_id: &str, device: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.participants.remove(device);
        call.accepted.remove(device);
        let only_initiator = call.participants.len() <= 1;
        self.forget(device, call_id);
        if only_initiator {
            self.release(call_id);
        }
    }

    fn release(&mut self, call_id: &str) {
        if let Some(call) = self.calls.remove(call_id) {
            for device in &call.participants {
                self.forget(device, call_id);
            }
        }
    }

    fn forget(&mut self, device: &str, call_id: &str) {
        if let Some(ids) = self.by_device.get_mut(device) {
            ids.remove(call_id);
            if ids.is_empty() {
                self.by_device.remove(device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    fn callees(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn offer_answer_media_end() {
        let mut calls = Calls::default();
        calls
            .offer("call-0001", 7, "a", &callees(&["b"]), 8, later())
            .unwrap();
        assert_eq!(
            calls.offer("call-0001", 7, "c", &callees(&["d"]), 8, later()),
            Err(CallError::Exists)
        );
        assert_eq!(calls.get("call-0001").unwrap().state, CallState::Ringing);
        let route = calls.answer("call-0001", 7, "b", true, 8).unwrap();
        assert_eq!(route.others, ["a"]);
        assert_eq!(calls.get("call-0001").unwrap().state, CallState::Active);
        assert_eq!(calls.media_route(7, "a").unwrap().others, ["b"]);
        assert_eq!(calls.media_route(8, "a"), None);
        assert_eq!(calls.media_route(7, "c"), None);
        assert_eq!(
            calls.route("call-0001", 7, "c"),
            Err(CallError::NotParticipant)
        );
        assert_eq!(
            calls.route("call-0001", 8, "a"),
            Err(CallError::WrongChannel(7))
        );
        assert_eq!(calls.route("nope-0001", 7, "a"), Err(CallError::Unknown));
        let end = calls.end("call-0001", 7, "b").unwrap();
        assert_eq!(end.others, ["a"]);
        assert!(calls.is_empty());
        assert_eq!(calls.media_route(7, "a"), None);
        assert!(calls.by_device.is_empty());
    }

    #[test]
    fn declines_remove_callees_until_only_the_caller_is_left() {
        let mut calls = Calls::default();
        calls
            .offer("call-0002", 3, "a", &callees(&["b", "c"]), 8, later())
            .unwrap();
        let route = calls.answer("call-0002", 3, "b", false, 8).unwrap();
        assert_eq!(route.others, ["a", "c"]);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls.route("call-0002", 3, "b"),
            Err(CallError::NotParticipant)
        );
        calls.answer("call-0002", 3, "c", false, 8).unwrap();
        assert!(calls.is_empty());
        assert!(calls.by_device.is_empty());
    }

    #[test]
    fn a_disconnect_ends_the_devices_calls() {
        let mut calls = Calls::default();
        calls
            .offer("call-0003", 1, "a", &callees(&["b"]), 8, later())
            .unwrap();
        calls
            .offer("call-0004", 2, "c", &callees(&["a"]), 8, later())
            .unwrap();
        calls
            .offer("call-0005", 3, "c", &callees(&["d"]), 8, later())
            .unwrap();
        let mut dropped = calls.drop_device("a");
        dropped.sort_by(|x, y| x.call_id.cmp(&y.call_id));
        assert_eq!(dropped.len(), 2);
        assert_eq!(
            (dropped[0].channel, &dropped[0].others),
            (1, &callees(&["b"]))
        );
        assert_eq!(
            (dropped[1].channel, &dropped[1].others),
            (2, &callees(&["c"]))
        );
        assert_eq!(calls.len(), 1);
        assert!(calls.drop_device("a").is_empty());
        assert!(calls.get("call-0005").is_some());
    }

    #[test]
    fn a_device_holds_at_most_limit_calls_it_offered_or_accepted() {
        let mut calls = Calls::default();
        let t = later();
        calls
            .offer("call-0010", 1, "a", &callees(&["b"]), 2, t)
            .unwrap();
        calls
            .offer("call-0011", 1, "a", &callees(&["b"]), 2, t)
            .unwrap();
        assert_eq!(
            calls.offer("call-0012", 1, "a", &callees(&["b"]), 2, t),
            Err(CallError::LimitReached(2))
        );
        // b only rings: its own offers and answers are not blocked by a's flood.
        assert_eq!(calls.held_by("b"), 0);
        calls
            .offer("call-0013", 1, "c", &callees(&["b"]), 2, t)
            .unwrap();
        calls.answer("call-0013", 1, "b", true, 2).unwrap();
        calls.answer("call-0010", 1, "b", true, 2).unwrap();
        assert_eq!(calls.held_by("b"), 2);
        // Accepting twice is not a second call; a third is refused.
        calls.answer("call-0010", 1, "b", true, 2).unwrap();
        assert_eq!(
            calls.answer("call-0011", 1, "b", true, 2),
            Err(CallError::LimitReached(2))
        );
        calls.end("call-0010", 1, "a").unwrap();
        calls
            .offer("call-0014", 1, "a", &callees(&["b"]), 2, t)
            .unwrap();
        assert_eq!(calls.len(), 3);
    }

    #[test]
    fn ringing_calls_expire_at_their_deadline_and_answered_ones_do_not() {
        let mut calls = Calls::default();
        let t0 = Instant::now();
        let s = std::time::Duration::from_secs;
        calls
            .offer("call-0020", 1, "a", &callees(&["b", "c"]), 8, t0 + s(10))
            .unwrap();
        calls
            .offer("call-0021", 2, "a", &callees(&["b"]), 8, t0 + s(5))
            .unwrap();
        calls
            .offer("call-0022", 2, "a", &callees(&["b"]), 8, t0 + s(7))
            .unwrap();
        calls
            .offer("call-0023", 2, "b", &callees(&["a"]), 8, t0 + s(1))
            .unwrap();
        calls.answer("call-0022", 2, "b", true, 8).unwrap();
        assert_eq!(calls.next_ring_deadline("a"), Some(t0 + s(5)));
        assert!(calls.expire_ringing("a", t0 + s(4)).is_empty());
        let expired = calls.expire_ringing("a", t0 + s(5));
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].call_id.as_str(), &expired[0].others),
            ("call-0021", &callees(&["b"]))
        );
        assert_eq!(calls.next_ring_deadline("a"), Some(t0 + s(10)));
        let expired = calls.expire_ringing("a", t0 + s(60));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].others, callees(&["b", "c"]));
        // Only a's own ringing offers: b's offer to a and the answered call remain.
        assert_eq!(calls.next_ring_deadline("a"), None);
        assert_eq!(calls.len(), 2);
        assert!(calls.get("call-0022").is_some());
        assert_eq!(calls.next_ring_deadline("b"), Some(t0 + s(1)));
    }
}
