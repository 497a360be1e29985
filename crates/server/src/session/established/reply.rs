//! Answers to the client about one of its frames: ERROR frames (the session goes on), the one
//! way to parse a control payload or refuse it, and the report of recipients an offline quota
//! refused.

use std::fmt::Display;

use commucat_ccp::{Frame, Problem, ProblemKind};
use commucat_link::ByteStream;
use commucat_store::{QuotaLimit, Refusal, StoreError};
use serde::de::DeserializeOwned;

use super::{End, SessionTask};
use crate::config::Bound;
use crate::router::relay::{RelayError, bound_of};

impl<S: ByteStream> SessionTask<S> {
    /// The frame's control payload as `T`, or `None` after an `Invalid Control Payload` ERROR
    /// to the sender (`<FRAME_TYPE>: <why>`).
    pub(super) async fn parsed<T: DeserializeOwned>(
        &mut self,
        frame: &Frame,
    ) -> Result<Option<T>, End> {
        self.parsed_valid(frame, |_: &T| Ok::<(), std::convert::Infallible>(()))
            .await
    }

    /// [`Self::parsed`], and `validate` accepts the value (its error is the ERROR's reason).
    pub(super) async fn parsed_valid<T: DeserializeOwned, E: Display>(
        &mut self,
        frame: &Frame,
        validate: impl FnOnce(&T) -> Result<(), E>,
    ) -> Result<Option<T>, End> {
        let why = match frame.parse_control::<T>() {
            Ok(value) => match validate(&value) {
                Ok(()) => return Ok(Some(value)),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        let detail = format!("{}: {why}", frame.frame_type());
        self.reject(frame, ProblemKind::InvalidControlPayload, detail)
            .await?;
        Ok(None)
    }

    /// Reports a problem with one frame and keeps the session.
    pub(super) async fn reject(
        &mut self,
        frame: &Frame,
        kind: ProblemKind,
        detail: impl Into<String>,
    ) -> Result<(), End> {
        self.reject_problem(frame, Problem::new(kind).with_detail(detail))
            .await
    }

    pub(super) async fn reject_problem(
        &mut self,
        frame: &Frame,
        problem: Problem,
    ) -> Result<(), End> {
        let problem = problem
            .with_extension("sequence", frame.sequence())
            .with_extension("channel", frame.channel_id())
            .with_extension("frame_type", frame.frame_type().label());
        self.send_control(commucat_ccp::FrameType::Error, frame.channel_id(), &problem)
            .await
    }

    /// Refuses `frame` because it would exceed `bound`: counted, recorded in the ledger, and
    /// reported to the sender with an ERROR of `kind`; the session goes on.
    pub(super) async fn reject_bound(
        &mut self,
        frame: &Frame,
        bound: Bound,
        kind: ProblemKind,
        detail: String,
    ) -> Result<(), End> {
        self.m.refuse(bound, &self.device_id, &detail);
        self.reject(frame, kind, detail).await
    }

    pub(super) async fn store_failed(
        &mut self,
        frame: &Frame,
        error: &StoreError,
    ) -> Result<(), End> {
        tracing::warn!(device = %self.device_id, %error, "store failure");
        self.reject(
            frame,
            ProblemKind::ServiceUnavailable,
            format!("storage unavailable: {error}"),
        )
        .await
    }

    /// A relay that failed: logged, and `Service Unavailable` to the sender.
    pub(super) async fn relay_failed(
        &mut self,
        frame: &Frame,
        error: &RelayError,
    ) -> Result<(), End> {
        tracing::warn!(device = %self.device_id, %error, "relay failure");
        self.reject(frame, ProblemKind::ServiceUnavailable, error.to_string())
            .await
    }

    /// Reports recipients a frame was not stored for: one ERROR per title, `Offline Queue
    /// Full` for the frame count of a recipient, `Offline Quota Exceeded` for bytes and the
    /// sender's and total quotas (the refusals were counted when the store refused them).
    pub(super) async fn reject_queue_full(
        &mut self,
        frame: &Frame,
        refused: Vec<Refusal>,
    ) -> Result<(), End> {
        let (full, over): (Vec<_>, Vec<_>) = refused
            .into_iter()
            .partition(|r| r.limit == QuotaLimit::RecipientFrames);
        if !full.is_empty() {
            let recipients: Vec<String> = full.into_iter().map(|r| r.recipient).collect();
            let problem = Problem::new(ProblemKind::OfflineQueueFull)
                .with_detail(format!(
                    "the offline queue of {} is full ({} frames); the frame was not stored for them",
                    recipients.join(", "),
                    self.m.queue_policy().limits.frames_per_recipient
                ))
                .with_extension("recipients", recipients);
            self.reject_problem(frame, problem).await?;
        }
        if let Some(first) = over.first() {
            let bound = bound_of(first.limit);
            let recipients: Vec<String> = over.into_iter().map(|r| r.recipient).collect();
            let problem = Problem::new(ProblemKind::OfflineQuotaExceeded)
                .with_detail(format!(
                    "storing the frame for {} would exceed bounds.{}; it was not stored for them",
                    recipients.join(", "),
                    bound.name()
                ))
                .with_extension("recipients", recipients)
                .with_extension("bound", bound.name());
            self.reject_problem(frame, problem).await?;
        }
        Ok(())
    }
}
