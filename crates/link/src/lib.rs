//! A CCP-1 frame link over any byte stream.
//!
//! Both ends of a `/connect` session — the server's session task and the client SDK — speak
//! frames over some byte transport (an HTTP/2 body, a WebSocket, …). This crate holds what they
//! share and nothing else:
//!
//! - [`ByteStream`]: the transport as seen by the session (read chunks, write chunks);
//! - [`SessionCodec`]: sans-IO framing state (frame decoder, optional Noise transport records,
//!   outgoing sequence numbers);
//! - [`Connection`]: the two together, with `recv` / `send`;
//! - [`obf`]: `adaptive-obf` packet wrapping, sans-IO;
//! - FEC framing ([`SessionCodec::enable_fec`], capability `fec`): frames as RaptorQ symbols;
//! - [`memory`]: an in-memory stream pair for tests without sockets.

#![forbid(unsafe_code)]

mod codec;
mod conn;
mod fec;
pub mod memory;
pub mod obf;
pub mod ratchet;
#[cfg(test)]
mod ratchet_tests;

pub use codec::{SequenceExhausted, SessionCodec, StreamError};
pub use commucat_fec::FecParams;
pub use conn::{ByteStream, ConnError, Connection, SHARE_PAYLOAD_FROM};
pub use fec::{FecCounters, FecError};
pub use ratchet::{RatchetError, RatchetPolicy};
