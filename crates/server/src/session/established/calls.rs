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
use serde::de::DeserializeOwned;
use serde_json::json;

use super::offline::{self, Offline};
use super::{End, Messaging, SessionTask};
use crate::config::{Bound, as_usize};
use crate::router::calls::{CallError, CallRoute};

/// A payload parsed and validated, or why not.
fn parse_call<T: DeserializeOwned>(
    frame: &Frame,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, String> {
    let value: T = frame
        .parse_control()
        .map_err(|e| format!("{}: {e}", frame.frame_type()))?;
    validate(&value).map_err(|e| format!("{}: {e}", frame.frame_type()))?;
    Ok(value)
}

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
                let _ = offline::route(m, device, &frame, &route.others, Offline::Skip).await;
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

    /// Relays the frame verbatim to the route, then ACKs with `ack`.
    async fn relay_call(&mut self, frame: &Frame, route: &CallRoute, ack: Ack) -> Result<(), End> {
        let _ = offline::route(
            &self.m,
            &self.device_id,
            frame,
            &route.others,
            Offline::Skip,
        )
        .await;
        self.ack_with(
            frame,
            Ack {
                call_id: Some(route.call_id.clone()),
                ..ack
            },
        )
        .await
    }

    pub(super) async fn call_offer(&mut self, frame: &Frame) -> Result<(), End> {
        let offer: CallOffer = match parse_call(frame, CallOffer::validate) {
            Ok(offer) => offer,
            Err(detail) => {
                return self
                    .reject(frame, ProblemKind::InvalidControlPayload, detail)
                    .await;
            }
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
        if let Err(error) = self.m.hub.calls(|c| {
            c.offer(
                &offer.call_id,
                channel,
                &me,
                &callees,
                limit,
                rings_until.into_std(),
            )
        }) {
            return self.reject_call(frame, &offer.call_id, error).await;
        }
        self.ring_deadline = Some(
            self.ring_deadline
                .map_or(rings_until, |d| d.min(rings_until)),
        );
        self.m.ledger.record("call", || {
            json!({"event": "start", "call_id": offer.call_id, "channel": channel,
                   "device": me, "callees": callees})
        });
        let route = CallRoute {
            call_id: offer.call_id,
            channel,
            others: callees,
        };
        self.relay_call(frame, &route, Ack::default()).await
    }

    pub(super) async fn call_answer(&mut self, frame: &Frame) -> Result<(), End> {
        let answer: CallAnswer = match parse_call(frame, CallAnswer::validate) {
            Ok(answer) => answer,
            Err(detail) => {
                return self
                    .reject(frame, ProblemKind::InvalidControlPayload, detail)
                    .await;
            }
        };
        if !self.check_not_system(frame, &answer.metadata).await? {
            return Ok(());
        }
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        let limit = as_usize(self.m.settings.bounds.calls_per_session);
        match self.m.hub.calls(|c| {
            c.answer(&answer.call_id, channel, &me, answer.accept, limit)
                .map(|route| (route, c.get(&answer.call_id).is_none()))
        }) {
            Ok((route, ended)) => {
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
                self.relay_call(frame, &route, ack).await
            }
            Err(error) => self.reject_call(frame, &answer.call_id, error).await,
        }
    }

    pub(super) async fn call_end(&mut self, frame: &Frame) -> Result<(), End> {
        let end: CallEnd = match parse_call(frame, CallEnd::validate) {
            Ok(end) => end,
            Err(detail) => {
                return self
                    .reject(frame, ProblemKind::InvalidControlPayload, detail)
                    .await;
            }
        };
        if !self.check_not_system(frame, &end.metadata).await? {
            return Ok(());
        }
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        match self.m.hub.calls(|c| c.end(&end.call_id, channel, &me)) {
            Ok(route) => {
                self.m.ledger.record("call", || {
                    json!({"event": "end", "call_id": end.call_id, "channel": channel,
                           "device": me, "reason": spelling(&end.reason)})
                });
                let ack = Ack {
                    reason: spelling(&end.reason),
                    ..Ack::default()
                };
                self.relay_call(frame, &route, ack).await
            }
            Err(error) => self.reject_call(frame, &end.call_id, error).await,
        }
    }

    pub(super) async fn call_stats(&mut self, frame: &Frame) -> Result<(), End> {
        let stats: CallStats = match parse_call(frame, CallStats::validate) {
            Ok(stats) => stats,
            Err(detail) => {
                return self
                    .reject(frame, ProblemKind::InvalidControlPayload, detail)
                    .await;
            }
        };
        let channel = frame.channel_id();
        let me = self.device_id.clone();
        match self.m.hub.calls(|c| c.route(&stats.call_id, channel, &me)) {
            Ok(route) => {
                let ack = Ack {
                    direction: spelling(&stats.direction),
                    ..Ack::default()
                };
                self.relay_call(frame, &route, ack).await
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
            self.m
                .hub
                .metrics
                .calls_unanswered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            let _ = offline::route(&self.m, &me, &frame, &route.others, Offline::Skip).await;
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
        match self.m.hub.calls(|c| c.media_route(channel, &me)) {
            Some(route) => self.relay_call(frame, &route, Ack::default()).await,
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
