//! # CommuCat client SDK
//!
//! Connects a device to a CommuCat server: TLS (trusting a given CA certificate or pinning the
//! server certificate's SHA-256 fingerprint), an HTTP/2 `POST /connect` stream, the Noise XK or
//! IK device handshake with its Schnorr proof, and then a [`Session`] that sends and receives
//! CCP-1 frames, plain or as Noise transport records (`noise-transport`), optionally keyed from
//! a post-quantum hybrid exchange (`pq-hybrid`: [`HandshakeOptions::with_pq_hybrid`]).
//!
//! [`ReconnectingSession`] reconnects by itself (backoff with jitter, over several node
//! addresses), JOINs its channels again and resends unacknowledged frames.
//!
//! [`rotate_device_key`] replaces a device's key over REST with a proof by its current key.
//!
//! The handshake itself ([`handshake()`]) runs over any [`commucat_link::ByteStream`], so tests can
//! drive it in memory.

#![forbid(unsafe_code)]

mod error;
pub mod handshake;
mod profile;
pub mod reconnect;
pub mod rotate;
mod session;
pub mod tls;
pub mod transport;

pub use error::ClientError;
pub use handshake::{
    DeviceIdentity, HandshakeOptions, PqDeviceKeys, ServerParams, SessionInfo, handshake,
};
pub use reconnect::{Backoff, ReconnectOptions, ReconnectingSession};
pub use rotate::{RestTarget, RotatedKey, rotate_device_key};
pub use session::{Session, connect};
pub use tls::TlsTrust;
