//! What nodes tell each other over Redis pub/sub, and its bounds (sans-IO).
//!
//! Every message is one JSON object tagged by `t`. A node publishes to the channel of the node
//! serving a device (`<prefix>node:<id>`) or to every node (`<prefix>nodes`). Messages carry no
//! secret beyond what the relayed frame itself carries; only nodes with access to the
//! deployment's Redis can publish them. A receiver refuses a message longer than its bound or
//! naming more devices than [`MAX_DEVICES`] before acting on it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// Most devices one message names; longer lists are split into several messages.
pub const MAX_DEVICES: usize = 256;

/// Bytes a message may take besides the frame it carries (device ids, sender, tags).
pub const OVERHEAD_BYTES: usize = 64 * 1024;

/// One message between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Message {
    /// Frames were committed to the offline queue for these devices: their sessions replay.
    Replay {
        /// Devices the receiving node serves.
        devices: Vec<String>,
    },
    /// A live-only frame for these devices (not kept if they are not connected).
    Frame {
        /// Devices the receiving node serves.
        devices: Vec<String>,
        /// The sending device.
        sender: String,
        /// The frame's relay stamp (Unix microseconds on the sender's node).
        stamp: i64,
        /// The encoded frame (sequence 0), base64.
        frame: String,
    },
    /// `device` connected to node `origin` at `since` (Unix microseconds): a session of it
    /// that started earlier on another node ends.
    Moved {
        /// The device.
        device: String,
        /// The node now serving it.
        origin: String,
        /// When its new session started.
        since: i64,
    },
    /// Membership of plain channel `channel` changed on another node: devices that joined it
    /// (or were declared), and devices that left it.
    Members {
        /// The channel.
        channel: u32,
        /// Devices now members.
        joined: Vec<String>,
        /// Devices no longer members.
        left: Vec<String>,
    },
    /// `device` was revoked or its key changed: every node ends its session with an ERROR.
    Ended {
        /// The device.
        device: String,
        /// Why (the closing ERROR's title).
        reason: EndReason,
        /// The closing ERROR's detail.
        detail: String,
    },
}

/// Why every session of a device ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The device was revoked (`Device Revoked`).
    Revoked,
    /// The device's key was rotated (`Device Key Mismatch`).
    KeyRotated,
}

impl EndReason {
    /// The closing ERROR's kind.
    #[must_use]
    pub const fn problem_kind(self) -> commucat_ccp::ProblemKind {
        match self {
            Self::Revoked => commucat_ccp::ProblemKind::DeviceRevoked,
            Self::KeyRotated => commucat_ccp::ProblemKind::DeviceKeyMismatch,
        }
    }
}

/// Why a received message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Longer than the receiver's bound.
    #[error("message of {0} bytes exceeds the bound")]
    TooLong(usize),
    /// Not a message of this version.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Names more than [`MAX_DEVICES`] devices.
    #[error("message names {0} devices")]
    TooManyDevices(usize),
}

impl Message {
    /// A frame message for `devices` (at most [`MAX_DEVICES`]).
    #[must_use]
    pub fn frame(devices: Vec<String>, sender: &str, stamp: i64, encoded: &[u8]) -> Self {
        Self::Frame {
            devices,
            sender: sender.to_owned(),
            stamp,
            frame: BASE64.encode(encoded),
        }
    }

    /// The message as published.
    ///
    /// # Errors
    /// Serialization failed (it does not for these types).
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        serde_json::to_vec(self).map_err(|e| MessageError::Malformed(e.to_string()))
    }

    /// A received message, refused when longer than `max_bytes` or naming too many devices.
    ///
    /// # Errors
    /// [`MessageError`] naming why.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self, MessageError> {
        if bytes.len() > max_bytes {
            return Err(MessageError::TooLong(bytes.len()));
        }
        let message: Self =
            serde_json::from_slice(bytes).map_err(|e| MessageError::Malformed(e.to_string()))?;
        match &message {
            Self::Replay { devices } | Self::Frame { devices, .. }
                if devices.len() > MAX_DEVICES =>
            {
                Err(MessageError::TooManyDevices(devices.len()))
            }
            Self::Members { joined, left, .. } if joined.len() + left.len() > MAX_DEVICES => {
                Err(MessageError::TooManyDevices(joined.len() + left.len()))
            }
            _ => Ok(message),
        }
    }

    /// The encoded frame a [`Message::Frame`] carries.
    ///
    /// # Errors
    /// The base64 text is invalid.
    pub fn frame_bytes(frame: &str) -> Result<Vec<u8>, MessageError> {
        BASE64
            .decode(frame)
            .map_err(|e| MessageError::Malformed(format!("frame: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_within_their_bounds() {
        let messages = [
            Message::Replay {
                devices: vec!["a".into(), "b".into()],
            },
            Message::frame(vec!["a".into()], "s", 7, b"\x01\x02"),
            Message::Moved {
                device: "a".into(),
                origin: "node-1".into(),
                since: 5,
            },
            Message::Members {
                channel: 7,
                joined: vec!["a".into()],
                left: vec!["b".into()],
            },
            Message::Ended {
                device: "a".into(),
                reason: EndReason::KeyRotated,
                detail: "gone".into(),
            },
        ];
        for message in messages {
            let bytes = message.encode().unwrap();
            assert_eq!(Message::decode(&bytes, 1024).unwrap(), message);
            assert_eq!(
                Message::decode(&bytes, bytes.len() - 1),
                Err(MessageError::TooLong(bytes.len()))
            );
        }
        let Message::Frame { frame, .. } = Message::frame(vec![], "s", 1, b"xyz") else {
            unreachable!()
        };
        assert_eq!(Message::frame_bytes(&frame).unwrap(), b"xyz");
        assert!(Message::frame_bytes("*").is_err());
    }

    #[test]
    fn oversized_or_foreign_messages_are_refused() {
        let many = Message::Replay {
            devices: (0..=MAX_DEVICES).map(|i| i.to_string()).collect(),
        };
        let bytes = many.encode().unwrap();
        assert_eq!(
            Message::decode(&bytes, usize::MAX),
            Err(MessageError::TooManyDevices(MAX_DEVICES + 1))
        );
        for foreign in [&b"{}"[..], b"{\"t\":\"launch\"}", b"not json", b"[1]"] {
            assert!(matches!(
                Message::decode(foreign, 1024),
                Err(MessageError::Malformed(_))
            ));
        }
    }
}
