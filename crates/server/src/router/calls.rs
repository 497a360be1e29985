//! Call state: which calls run on which channel, who takes part, and whether they were
//! answered. Signaling payloads are validated and relayed by the session; this table decides
//! who receives them.

use std::collections::{BTreeSet, HashMap};

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
    /// Where it stands.
    pub state: CallState,
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

    /// Records an offer from `initiator` to `callees` on `channel`.
    ///
    /// # Errors
    /// [`CallError::Exists`] if the id is taken.
    pub fn offer(
        &mut self,
        call_id: &str,
        channel: u32,
        initiator: &str,
        callees: &[String],
    ) -> Result<(), CallError> {
        if self.calls.contains_key(call_id) {
            return Err(CallError::Exists);
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
                state: CallState::Ringing,
            },
        );
        Ok(())
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
    /// As [`Calls::route`].
    pub fn answer(
        &mut self,
        call_id: &str,
        channel: u32,
        device: &str,
        accept: bool,
    ) -> Result<CallRoute, CallError> {
        let route = self.route(call_id, channel, device)?;
        if accept {
            if let Some(call) = self.calls.get_mut(call_id) {
                call.state = CallState::Active;
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

    fn callees(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn offer_answer_media_end() {
        let mut calls = Calls::default();
        calls.offer("call-0001", 7, "a", &callees(&["b"])).unwrap();
        assert_eq!(
            calls.offer("call-0001", 7, "c", &callees(&["d"])),
            Err(CallError::Exists)
        );
        assert_eq!(calls.get("call-0001").unwrap().state, CallState::Ringing);
        let route = calls.answer("call-0001", 7, "b", true).unwrap();
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
            .offer("call-0002", 3, "a", &callees(&["b", "c"]))
            .unwrap();
        let route = calls.answer("call-0002", 3, "b", false).unwrap();
        assert_eq!(route.others, ["a", "c"]);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls.route("call-0002", 3, "b"),
            Err(CallError::NotParticipant)
        );
        calls.answer("call-0002", 3, "c", false).unwrap();
        assert!(calls.is_empty());
        assert!(calls.by_device.is_empty());
    }

    #[test]
    fn a_disconnect_ends_the_devices_calls() {
        let mut calls = Calls::default();
        calls.offer("call-0003", 1, "a", &callees(&["b"])).unwrap();
        calls.offer("call-0004", 2, "c", &callees(&["a"])).unwrap();
        calls.offer("call-0005", 3, "c", &callees(&["d"])).unwrap();
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
}
