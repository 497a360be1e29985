//! The key crate's integration tests, in one binary: agreement with the deployed client's
//! `commucat-crypto` 1.0.41 on device keys, certificates and proofs (`interop`) and on the
//! Noise handshakes (`noise_interop`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod interop;
mod noise_interop;
