//! The key crate's integration tests, in one binary: agreement with the deployed client's
//! `commucat-crypto` 1.0.41 on device keys, certificates and proofs (`interop`) and on the
//! Noise handshakes (`noise_interop`); the post-quantum core against 1.0.41's `pq` vectors
//! (`pq_vectors`) and NIST's (`pq_nist`), and `pq_bundle` validation and the hybrid exchange
//! in memory (`pq_flow`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod interop;
mod noise_interop;
mod pq_flow;
mod pq_nist;
mod pq_vectors;
