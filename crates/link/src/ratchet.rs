//! The in-band signal of a `pq-hybrid` session's `HybridRatchet` (see `docs/pq-hybrid.md`,
//! "Ratchet in live sessions").
//!
//! Both messages are KEY_UPDATE frames on channel 0 whose payload is JSON; they exist only
//! inside a `pq-hybrid` session (which a deployed 1.0.41 client never negotiates) and never
//! leave the link layer: the codec consumes them, nothing above it sees them.
//!
//! - server → client `{"type":"pq-ratchet","epoch":n,"index":i,"ciphertext":base64}`: the last
//!   record the server seals under its old sending key; every later server record uses the
//!   new one;
//! - client → server `{"type":"pq-ratchet-ack","epoch":n}`: the last record the client seals
//!   under its old sending key; every later client record uses the new one.
//!
//! Each message must end its record: bytes after it in the same record were opened under the
//! old key and are refused.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use commucat_ccp::{Frame, FrameType};
use commucat_keys::pq::{PqError, RatchetStep};
use serde::{Deserialize, Serialize};

/// `type` of the server's step message.
pub const STEP_TYPE: &str = "pq-ratchet";
/// `type` of the client's acknowledgement.
pub const ACK_TYPE: &str = "pq-ratchet-ack";

/// Why a ratchet message or step failed. Terminal for the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatchetError {
    /// Every one-time key the client announced is spent (server side).
    #[error("all one-time ML-KEM keys of this session are spent")]
    Exhausted,
    /// A step was started while the previous one waits for its acknowledgement.
    #[error("a ratchet step is already waiting for its acknowledgement")]
    Pending,
    /// The session has no ratchet (not `pq-hybrid`).
    #[error("this session has no hybrid ratchet")]
    NotHybrid,
    /// A malformed or unexpected ratchet message.
    #[error("ratchet message: {0}")]
    Message(String),
    /// The cryptographic step failed (unknown or spent one-time key, bad ciphertext).
    #[error("ratchet step: {0}")]
    Crypto(PqError),
    /// Frame bytes followed a ratchet message inside the same record.
    #[error("bytes follow a ratchet message in its record")]
    NotAtRecordEnd,
    /// No sequence number left for the acknowledgement.
    #[error("no sequence number left for the ratchet acknowledgement")]
    SequenceExhausted,
}

/// When the server starts a step: after `messages` frames (both directions) or `interval`,
/// whichever comes first, since the handshake or the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatchetPolicy {
    /// Frames sealed or opened under one epoch's keys.
    pub messages: u64,
    /// Time under one epoch's keys.
    pub interval: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Signal {
    #[serde(rename = "type")]
    kind: String,
    epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
}

/// Whether `frame` is a ratchet message (only asked inside a `pq-hybrid` session).
pub(crate) fn is_signal(frame: &Frame) -> bool {
    frame.frame_type() == FrameType::KeyUpdate && frame.channel_id() == 0
}

fn parse(frame: &Frame) -> Result<Signal, RatchetError> {
    serde_json::from_slice(frame.payload()).map_err(|e| RatchetError::Message(e.to_string()))
}

fn build(signal: &Signal, sequence: u32) -> Result<Frame, RatchetError> {
    let json = serde_json::to_vec(signal).map_err(|e| RatchetError::Message(e.to_string()))?;
    Frame::new(FrameType::KeyUpdate, 0, sequence, json)
        .map_err(|e| RatchetError::Message(e.to_string()))
}

/// The step message for `step` of `epoch`.
pub(crate) fn step_frame(
    epoch: u64,
    step: &RatchetStep,
    sequence: u32,
) -> Result<Frame, RatchetError> {
    build(
        &Signal {
            kind: STEP_TYPE.to_owned(),
            epoch,
            index: Some(step.index),
            ciphertext: Some(BASE64.encode(&step.ciphertext)),
        },
        sequence,
    )
}

/// The acknowledgement of `epoch`.
pub(crate) fn ack_frame(epoch: u64, sequence: u32) -> Result<Frame, RatchetError> {
    build(
        &Signal {
            kind: ACK_TYPE.to_owned(),
            epoch,
            index: None,
            ciphertext: None,
        },
        sequence,
    )
}

/// A step message received by the client: its epoch and step.
pub(crate) fn parse_step(frame: &Frame) -> Result<(u64, RatchetStep), RatchetError> {
    let signal = parse(frame)?;
    let bad = |what: &str| RatchetError::Message(what.to_owned());
    if signal.kind != STEP_TYPE {
        return Err(bad("expected a pq-ratchet step"));
    }
    let index = signal
        .index
        .ok_or_else(|| bad("pq-ratchet without index"))?;
    let ciphertext = signal
        .ciphertext
        .ok_or_else(|| bad("pq-ratchet without ciphertext"))?;
    let ciphertext = BASE64
        .decode(ciphertext)
        .map_err(|_| bad("pq-ratchet ciphertext is not base64"))?;
    Ok((signal.epoch, RatchetStep { index, ciphertext }))
}

/// An acknowledgement received by the server: its epoch.
pub(crate) fn parse_ack(frame: &Frame) -> Result<u64, RatchetError> {
    let signal = parse(frame)?;
    if signal.kind != ACK_TYPE {
        return Err(RatchetError::Message(
            "expected a pq-ratchet-ack".to_owned(),
        ));
    }
    Ok(signal.epoch)
}

/// The server's schedule: frames and time under the current epoch.
#[derive(Debug)]
pub(crate) struct Schedule {
    pub(crate) policy: RatchetPolicy,
    /// Frames under the current epoch.
    pub(crate) frames: u64,
    /// When the current epoch began.
    pub(crate) since: Instant,
}

impl Schedule {
    pub(crate) fn new(policy: RatchetPolicy, now: Instant) -> Self {
        Self {
            policy,
            frames: 0,
            since: now,
        }
    }

    /// When the interval runs out.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.checked_add(self.policy.interval)
    }

    pub(crate) fn due(&self, now: Instant) -> bool {
        self.frames >= self.policy.messages
            || now.saturating_duration_since(self.since) >= self.policy.interval
    }

    pub(crate) fn restart(&mut self, now: Instant) {
        self.frames = 0;
        self.since = now;
    }
}
