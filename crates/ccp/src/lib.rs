//! # CCP-1 wire format
//!
//! The byte-level protocol spoken on CommuCat's `/connect` stream, with no I/O of its own:
//! feed bytes in, take [`Frame`]s out, encode frames into any [`bytes::BufMut`].
//!
//! ```text
//! frame = varint(L) type:u8 varint(channel_id) varint(sequence) varint(P) payload[P]
//! ```
//!
//! - [`varint`]: LEB128 encoding with the 10-byte / 64-bit bounds.
//! - [`Frame`]: a validated frame; encoding cannot fail, payloads are shared [`bytes::Bytes`].
//! - [`FrameDecoder`]: streaming decoder that tells "need more bytes" from "malformed".
//! - [`CodecError`] / [`ProblemKind`] / [`Problem`]: errors mapped onto the specification's
//!   diagnostic titles and RFC 9457 ERROR payloads.
//! - [`control`]: typed control payloads accepting both specification and deployed key names.
//!
//! ```
//! use commucat_ccp::{Frame, FrameDecoder, FrameType};
//!
//! let frame = Frame::new(FrameType::Msg, 5, 3, &b"hi"[..]).unwrap();
//! assert_eq!(frame.to_bytes().as_ref(), [0x06, 0x05, 0x05, 0x03, 0x02, b'h', b'i']);
//!
//! let mut decoder = FrameDecoder::new();
//! decoder.extend(&[0x06, 0x05, 0x05]);
//! assert_eq!(decoder.next_frame().unwrap(), None); // need more bytes
//! decoder.extend(&[0x03, 0x02, b'h', b'i']);
//! assert_eq!(decoder.next_frame().unwrap(), Some(frame));
//! ```

#![forbid(unsafe_code)]

pub mod control;
mod decoder;
mod error;
mod frame;
mod frame_type;
mod problem;
pub mod varint;
mod version;

pub use decoder::FrameDecoder;
pub use error::{CodecError, Identifier, ProblemKind, Truncation};
pub use frame::{Frame, validate_control_json};
pub use frame_type::{FrameType, PayloadKind};
pub use problem::Problem;
pub use version::{PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, negotiate};

/// Largest frame body (`L`) and payload (`P`): 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Largest control JSON payload: 256 KiB.
pub const MAX_CONTROL_JSON_LEN: usize = 256 * 1024;
/// Largest `channel_id`.
pub const MAX_CHANNEL_ID: u32 = u32::MAX;
/// Largest `sequence`.
pub const MAX_SEQUENCE: u32 = u32::MAX;
