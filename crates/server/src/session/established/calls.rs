//! CALL_OFFER / CALL_ANSWER / CALL_END / CALL_STATS and VOICE_FRAME / VIDEO_FRAME.
//!
//! Signaling payloads are parsed with the specification's types and validated (a payload that
//! passes also parses in the deployed 1.0.41 structs); an invalid one gets an ERROR and is never
//! forwarded. Valid ones, and media frames, are relayed as the sender's bytes to the call's
//! other participants, live only.

use commucat_ccp::control::{Ack, CallAnswer, CallEnd, CallEndReason, CallOffer, CallStats};
use commucat_ccp::{Frame, FrameType, ProblemKind};
use commucat_link::ByteStream;
use serde::Serialize;
use serde_json::json;

use super::{End, Messaging, SessionTask};
use crate::config::{Bound, as_usize};
use crate::router::Hub;
use crate::router::calls::{CallError, CallRoute, Calls};
use crate::router::relay::Targets;

/// The wire spelling of a unit enum (`"busy"`, `"hangup"`, `"send"`, …).
fn spelling<T: Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

/// Whether a CALL_OFFER `to` entry names `device` (`device` or `device@domain`).
fn names_device(target: &str, device: &str) -> bool {
    target == device
        || target
            .strip_prefix(device)
            .is_some_and(|rest| rest.starts_with('@'))
}

/// Runs `decide` on the call table and looks up the mailboxes of the other participants of
/// the route it returns, in one acquisition of the hub's lock.
fn on_calls<T>(
    hub: &Hub,
    decide: impl FnOnce(&mut Calls) -> Result<(CallRoute, T), CallError>,
) -> Result<(CallRoute, T, Targets), CallError> {
    let (decided, targets) = hub.targets(|t| {
        let decided = decide(&mut t.calls);
        let others = decided
            .as_ref()
            .map(|(route, _)| route.others.clone())
            .unwrap_or_default();
        (decided, others)
    });
    decided.map(|(route, extra)| (route, extra, targets))
}

/// Ends every call of a device that disconnected: the other participants get a CALL_END with
/// reason `failure` and `metadata.system = true`.
pub(super) async fn end_calls_of(m: &Messaging, device: &str) {
    let routes = m.hub.calls(|c| c.drop_device(device));
    for route in routes {
        m.ledger.record("call", || {
            json!({"event": "end", "call_id": route.call_id, "channel": route.channel,
                   "device": device, "reason": "disconnect"})
        });
        let end = CallEnd {
            call_id: route.call_id.clone(),
            reason: CallEndReason::Failure,
            metadata: json!({"system": true, "cause": "disconnect", "device": device}),
        };
        match Frame::control(FrameType::CallEnd, route.channel, 0, &end) {
            Ok(frame) => {
                m.relay()
                    .live(device, &frame, m.hub.targets_of(&route.others));
            }
            Err(e) => tracing::warn!(error = %e, "synthesized CALL_END not sent"),
        }
    }
}

impl<S: ByteStream> SessionTask<S> {
    async fn reject_call(
        &mut self,
        frame: &Frame,
        call_id: &str,
        error: CallError,
    ) -> Result<(), End> {
        let (kind, detail) = match error {
            CallError::Unknown => (ProblemKind::UnknownCall, format!("no call {call_id}")),
            CallError::Exists => (
                ProblemKind::CallExists,
                format!("call {call_id} already exists"),
            ),
            CallError::NotParticipant => (
                ProblemKind::NotCallParticipant,
                format!("{} is not in call {call_id}", self.device_id),
            ),
            CallError::WrongChannel(channel) => (
                ProblemKind::UnknownCall,
                format!("call {call_id} runs on channel {channel}"),
            ),
            CallError::LimitReached(limit) => {
                let detail = format!(
                    "{} already takes part in {limit} calls (bounds.calls_per_session); end one \
                     first",
                    self.device_id
                );
                self.m
                    .refuse(Bound::CallsPerSession, &self.device_id, &detail);
                (ProblemKind::CallLimitReached, detail)
            }
        };
        self.reject(frame, kind, detail).await
    }

    /// Relays the frame verbatim to `targets`, then ACKs with `ack` naming `call_id`.
    async fn relay_call(
        &mut self,
        frame: &Frame,
        call_id: &str,
        targets: Targets,
        ack: Ack,
    ) -> Result<(), End> {
        self.m.relay().live(&self.device_id, frame, targets);
        self.ack_with(
            frame,
            Ack {
                call_id: Some(call_id.to_owned()),
                ..ack
            },
        )
        .await
    }

    pub(super) async fn call_offer(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(offer) = self.parsed_valid(frame, CallOffer::validate).await? else {
            return Ok(());
        };
        if !self.check_sender(frame, "from", &offer.from).await?
            || !self.check_not_system(frame, &offer.metadata).await?
        {
            return Ok(());
        }
        let Some(others) = self.others_on(frame).await? else {
            return Ok(());
        };
        let mut callees: Vec<String> = others
            .iter()
            .filter(|m| offer.to.iter().any(|t| names_device(t, m)))
            .cloned()
            .collect();
        if callees.is_empty() {
            callees = others;
        }
        if callees.is_empty() {
            return self
                .reject(
                    frame,
                    ProblemKind::InvalidControlPayload,
                    format!(
                        "CALL_OFFER: nobody else is a member of channel {}",
                        frame.channel_id()
                    ),
                )
                .await;
        }
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let limit = as_usize(self.m.settings.bounds.calls_per_session);
        let rings_until = tokio::time::Instant::now() + self.m.settings.bounds.call_ring_timeout;
        let offered = on_calls(&self.m.hub, |c| {
            c.offer(
                &offer.call_id,
                channel,
                &me,
                &callees,
                limit,
                rings_until.into_std(),
            )
            .map(|()| {
                let route = CallRoute {
                    call_id: offer.call_id.clone(),
                    channel,
                    others: callees.clone(),
                };
                (route, ())
            })
        });
        let targets = match offered {
            Ok((_, (), targets)) => targets,
            Err(error) => return self.reject_call(frame, &offer.call_id, error).await,
        };
        self.ring_deadline = Some(
            self.ring_deadline
                .map_or(rings_until, |d| d.min(rings_until)),
        );
        self.m.ledger.record("call", || {
            json!({"event": "start", "call_id": offer.call_id, "channel": channel,
                   "device": me, "callees": callees})
        });
        self.relay_call(frame, &offer.call_id, targets, Ack::default())
            .await
    }

    pub(super) async fn call_answer(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(answer) = self.parsed_valid(frame, CallAnswer::validate).await? else {
            return Ok(());
        };
        if !self.check_not_system(frame, &answer.metadata).await? {
            return Ok(());
        }
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let limit = as_usize(self.m.settings.bounds.calls_per_session);
        match on_calls(&self.m.hub, |c| {
            c.answer(&answer.call_id, channel, &me, answer.accept, limit)
                .map(|route| (route, c.get(&answer.call_id).is_none()))
        }) {
            Ok((route, ended, targets)) => {
                if ended {
                    self.m.ledger.record("call", || {
                        json!({"event": "end", "call_id": answer.call_id, "channel": channel,
                               "device": me, "reason": "declined"})
                    });
                }
                let ack = Ack {
                    accept: Some(answer.accept),
                    reason: answer.reason.as_ref().and_then(spelling),
                    ..Ack::default()
                };
                self.relay_call(frame, &route.call_id, targets, ack).await
            }
            Err(error) => self.reject_call(frame, &answer.call_id, error).await,
        }
    }

    pub(super) async fn call_end(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(end) = self.parsed_valid(frame, CallEnd::validate).await? else {
            return Ok(());
        };
        if !self.check_not_system(frame, &end.metadata).await? {
            return Ok(());
        }
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        match on_calls(&self.m.hub, |c| {
            c.end(&end.call_id, channel, &me).map(|r| (r, ()))
        }) {
            Ok((route, (), targets)) => {
                self.m.ledger.record("call", || {
                    json!({"event": "end", "call_id": end.call_id, "channel": channel,
                           "device": me, "reason": spelling(&end.reason)})
                });
                let ack = Ack {
                    reason: spelling(&end.reason),
                    ..Ack::default()
                };
                self.relay_call(frame, &route.call_id, targets, ack).await
            }
            Err(error) => self.reject_call(frame, &end.call_id, error).await,
        }
    }

    pub(super) async fn call_stats(&mut self, frame: &Frame) -> Result<(), End> {
        let Some(stats) = self.parsed_valid(frame, CallStats::validate).await? else {
            return Ok(());
        };
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        match on_calls(&self.m.hub, |c| {
            c.route(&stats.call_id, channel, &me).map(|r| (r, ()))
        }) {
            Ok((route, (), targets)) => {
                let ack = Ack {
                    direction: spelling(&stats.direction),
                    ..Ack::default()
                };
                self.relay_call(frame, &route.call_id, targets, ack).await
            }
            Err(error) => self.reject_call(frame, &stats.call_id, error).await,
        }
    }

    /// Ends the calls this device offered that rang past `bounds.call_ring_timeout`: every
    /// participant, the caller included, gets CALL_END `timeout` with `metadata.system = true`
    /// (a reason the deployed 1.0.41 client parses). Counted in
    /// `commucat_calls_unanswered_total` and ledgered.
    pub(super) async fn expire_rings(&mut self) -> Result<(), End> {
        let me = self.device_id.clone();
        let now = tokio::time::Instant::now().into_std();
        let (expired, next) = self
            .m
            .hub
            .calls(|c| (c.expire_ringing(&me, now), c.next_ring_deadline(&me)));
        self.ring_deadline = next.map(tokio::time::Instant::from_std);
        for route in expired {
            self.m.hub.metrics.calls_unanswered.inc();
            self.m.ledger.record("call", || {
                json!({"event": "end", "call_id": route.call_id, "channel": route.channel,
                       "device": me, "reason": "timeout", "callees": route.others})
            });
            let end = CallEnd {
                call_id: route.call_id.clone(),
                reason: CallEndReason::Timeout,
                metadata: json!({"system": true, "cause": "ring_timeout"}),
            };
            let frame = Frame::control(FrameType::CallEnd, route.channel, 0, &end)
                .map_err(|e| End::Conn(e.into()))?;
            let targets = self.m.hub.targets_of(&route.others);
            self.m.relay().live(&me, &frame, targets);
            self.send_control(FrameType::CallEnd, route.channel, &end)
                .await?;
        }
        Ok(())
    }

    /// VOICE_FRAME / VIDEO_FRAME: relayed verbatim to the other participants of the sender's
    /// call on the frame's channel; never queued.
    pub(super) async fn media(&mut self, frame: &Frame) -> Result<(), End> {
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        // The call's route and its participants' mailboxes in one look-up.
        let (call_id, targets) = self
            .m
            .hub
            .targets(|t| match t.calls.media_route(channel, &me) {
                Some(route) => (Some(route.call_id), route.others),
                None => (None, Vec::new()),
            });
        match call_id {
            Some(call_id) => {
                self.relay_call(frame, &call_id, targets, Ack::default())
                    .await
            }
            None => {
                self.reject(
                    frame,
                    ProblemKind::UnknownCall,
                    format!("{} is in no call on channel {channel}", self.device_id),
                )
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_targets_match_bare_and_qualified_device_ids() {
        assert!(names_device("bob-1", "bob-1"));
        assert!(names_device("bob-1@chat.example", "bob-1"));
        assert!(!names_device("bob-10", "bob-1"));
        assert!(!names_device("bob", "bob-1"));
    }

    #[test]
    fn enum_spellings_are_the_wire_names() {
        assert_eq!(
            spelling(&commucat_ccp::control::CallRejectReason::Busy).as_deref(),
            Some("busy")
        );
        assert_eq!(spelling(&CallEndReason::Hangup).as_deref(), Some("hangup"));
        assert_eq!(
            spelling(&commucat_ccp::control::CallMediaDirection::Receive).as_deref(),
            Some("receive")
        );
    }
}
